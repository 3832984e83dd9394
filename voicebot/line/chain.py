"""`simulate`: a caller's audio as it arrives at the bot over a `LineConfig`'s line, at 8 kHz.

The chain follows the call's path: the talker's level drifts (at the mouth), background noise joins at the
phone's microphone, the whole line's level changes and an overdriven input clips, the telephone band filter,
the codecs in order, then the network loses or delays 20 ms frames and the receiver conceals them.

The noise is scaled so that the talker's active level (`channel.active_power`) over the noise's mean level,
both in the band the line passes, is `snr_db`; over silence it is scaled against a nominal -26 dBov talker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from voicebot.audio import from_float, resample, to_float
from voicebot.frames import PCM
from voicebot.line.channel import FRAME, RATE, active_power, band_filter, clip, drift_gain
from voicebot.line.codecs import code, codec_tool
from voicebot.line.config import PRESETS, LineConfig, line_config
from voicebot.line.noise import make_noise
from voicebot.line.packets import conceal, late_frames, lost_frames

NOMINAL_SPEECH = 10 ** (-26 / 10)  # -26 dBov, the nominal active speech level: the reference for silence
_NOISE, _LOSS, _JITTER, _DRIFT = range(4)  # each impairment draws from its own stream of the seed


@dataclass(frozen=True)
class LineRun:
    """What a line did to one signal: the audio at 8 kHz, which 20 ms frames were lost or late, and the
    gain the noise was mixed at (0.0: no noise)."""

    pcm: PCM
    lost: np.ndarray
    late: np.ndarray
    noise_gain: float = 0.0

    @property
    def missing(self) -> np.ndarray:
        return np.asarray(self.lost | self.late)


def check_line(config: LineConfig) -> None:
    """LineError, naming the missing tool, when a codec of the line cannot run on this machine."""
    for codec in config.codec:
        codec_tool(codec)


def run_line(pcm: PCM, rate: int, line: LineConfig | str | Mapping[str, Any]) -> LineRun:
    """`pcm` at `rate` through `line` (a LineConfig, a preset name or a mapping of fields); see the module
    docstring for the order. The same input, line and seed always give the same output."""
    config = line_config(line)
    check_line(config)

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([config.seed, stream])

    x = to_float(resample(pcm, rate, RATE)).astype(np.float64)
    if config.drift_db:
        x = x * drift_gain(x.size, config.drift_db, config.drift_period_s, rng(_DRIFT).uniform(0, 2 * np.pi))
    noise_gain = 0.0
    if config.noise != "none" and x.size:
        noise = make_noise(config.noise, x.size, rng(_NOISE))
        speech = active_power(band_filter(x, config.band)) or NOMINAL_SPEECH
        heard = float(np.mean(band_filter(noise, config.band) ** 2))  # SNR in the band the line passes
        noise_gain = float(np.sqrt(speech / (heard * 10 ** (config.snr_db / 10)))) if heard > 0 else 0.0
        x = x + noise_gain * noise
    if config.gain_db:
        x = x * 10 ** (config.gain_db / 20)
    if config.clip_dbfs is not None:
        x = clip(x, config.clip_dbfs)
    out = from_float(band_filter(x, config.band))
    for codec in config.codec:
        out = code(out, codec, config.amr_kbps)
    frames = -(-out.size // FRAME)
    lost = lost_frames(frames, config.loss_pct, config.loss_burst, rng(_LOSS))
    late = late_frames(frames, config.jitter_ms, config.playout_ms, rng(_JITTER))
    if (lost | late).any():
        out = from_float(conceal(to_float(out), lost | late, config.concealment))
    return LineRun(out, lost, late, noise_gain)


def simulate(pcm: PCM, rate: int, line: LineConfig | str | Mapping[str, Any]) -> PCM:
    """`pcm` (int16 at `rate`) as it arrives over `line`: int16 at 8 kHz, as long as the input."""
    return run_line(pcm, rate, line).pcm


def through_line(pcm: PCM, rate: int, line: LineConfig, seed_offset: int = 0) -> PCM:
    """`pcm` over `line` and back at `rate` (what a pipeline at that channel rate receives); `seed_offset`
    is added to the line's seed, so the turns of one call get different noise and losses."""
    if seed_offset:
        line = line.model_copy(update={"seed": line.seed + seed_offset})
    return resample(simulate(pcm, rate, line), RATE, rate)


def telephone(pcm: PCM, rate: int, hard: bool = False) -> PCM:
    """The benchmarks' G.711 phone line: to 8 kHz, the telephone band filter (`hard`: brick wall), μ-law."""
    return simulate(pcm, rate, PRESETS["hard-g711"] if hard else LineConfig())
