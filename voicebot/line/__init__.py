"""A phone-line simulator: what a caller's audio goes through before it reaches the bot.

μ-law and A-law, GSM 06.10 and AMR-NB (through sox or ffmpeg where they can), 20 ms frames lost or late
with G.711 Appendix I concealment, background noise at a given SNR (babble, street, office, white; made
procedurally), clipping, level changes and drift, and the telephone band filter. Deterministic for a
seed, numpy throughout except the GSM and AMR-NB codecs. `simulate(pcm, rate, line)` gives the audio at
8 kHz; a line is a `LineConfig`, a preset name (`PRESETS`, listed in the README) or a mapping of fields.

- `config`: `LineConfig`, the presets, `line_config` (name or mapping to a config), `LineError`;
- `channel`: the band filter, active speech level, level drift, clipping;
- `noise`: the noise generators; `codecs`: the codecs and which tool runs each; `packets`: loss, jitter and
  concealment; `chain`: `simulate` and the order of the impairments; `cli`: `voicebot line`.
"""

from voicebot.line.chain import LineRun, check_line, run_line, simulate, telephone, through_line
from voicebot.line.codecs import available, codec_tool
from voicebot.line.config import PRESETS, LineConfig, LineError, LineField, line_config, preset

__all__ = [
    "PRESETS",
    "LineConfig",
    "LineError",
    "LineField",
    "LineRun",
    "available",
    "check_line",
    "codec_tool",
    "line_config",
    "preset",
    "run_line",
    "simulate",
    "telephone",
    "through_line",
]
