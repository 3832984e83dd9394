"""`voicebot line IN... --out DIR`: audio files through a simulated phone line, written as 8 kHz WAVs.

Also `line_option`, the `--line PRESET` argument type `voicebot test` and `voicebot call` share.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio import read_audio, write_wav
from voicebot.line.chain import check_line, run_line
from voicebot.line.channel import RATE
from voicebot.line.config import PRESETS, LineConfig, LineError, line_config, preset

# (flag, LineConfig field, type, help): every field can be set from the command line
_FIELDS: list[tuple[str, str, Any, str]] = [
    ("--codec", "codec", str, "codecs in order: ulaw, alaw, gsm, amr-nb, joined by + (gsm+ulaw), or none"),
    ("--amr-kbps", "amr_kbps", float, "AMR-NB mode in kbit/s (4.75 … 12.2)"),
    ("--band", "band", str, "channel filter: phone (300-3400 Hz), brickwall or none"),
    ("--loss", "loss_pct", float, "20 ms frames lost, in %"),
    ("--loss-burst", "loss_burst", float, "mean frames per loss burst (1: independent losses)"),
    ("--jitter", "jitter_ms", float, "mean extra network delay of a frame, ms"),
    ("--playout", "playout_ms", float, "jitter buffer depth, ms: frames later than this are dropped"),
    ("--concealment", "concealment", str, "lost frames: plc (G.711 Appendix I) or zero"),
    ("--noise", "noise", str, "background noise: babble, street, office, white or none"),
    ("--snr", "snr_db", float, "speech-to-noise ratio in the telephone band, dB"),
    ("--clip", "clip_dbfs", float, "clip at this peak level, dBFS"),
    ("--gain", "gain_db", float, "level change of the whole line, dB"),
    ("--drift", "drift_db", float, "slow wander of the talker's level, ± dB"),
    ("--drift-period", "drift_period_s", float, "period of that wander, s"),
    ("--seed", "seed", int, "noise, loss, jitter and drift follow it (default 0)"),
]


def line_option(name: str) -> LineConfig:
    """argparse type of `--line`: a preset name."""
    try:
        return preset(name)
    except LineError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def presets_table() -> str:
    width = max(len(name) for name in PRESETS)
    return "\n".join(f"{name:{width}s}  {config.describe()}" for name, config in PRESETS.items())


def add_line_command(sub: Any) -> None:
    """Register `voicebot line` on the main parser's subcommands."""
    p = sub.add_parser("line", help="audio files through a simulated phone line (8 kHz WAVs out)")
    p.add_argument("files", nargs="*", type=Path, help="audio files (any format ffmpeg reads)")
    p.add_argument("--out", type=Path, help="folder for the results (NAME.wav each)")
    p.add_argument("--preset", help="start from this preset (default: clean-g711); see --list")
    p.add_argument("--list", action="store_true", help="print the presets and exit")
    for flag, dest, kind, text in _FIELDS:
        p.add_argument(flag, dest=dest, type=kind, default=argparse.SUPPRESS, help=text)
    p.set_defaults(func=cmd_line)


def cmd_line(args: argparse.Namespace) -> int:
    if args.list:
        print(presets_table())
        return 0
    if not args.files or args.out is None:
        raise LineError("give the audio files and --out DIR (or --list)")
    fields = {dest: getattr(args, dest) for _, dest, _, _ in _FIELDS if hasattr(args, dest)}
    config = line_config({"preset": args.preset or "clean-g711", **fields})
    check_line(config)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise LineError(f"no such file: {', '.join(missing)}")
    stems = [f.stem for f in args.files]
    if len(set(stems)) < len(stems):
        raise LineError("two inputs have the same name; the outputs would overwrite each other")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"line: {config.describe()}, seed {config.seed}")
    for path in args.files:
        run = run_line(read_audio(path, RATE), RATE, config)
        out = args.out / f"{path.stem}.wav"
        write_wav(out, run.pcm, RATE)
        frames = run.lost.size
        print(
            f"{out}: {run.pcm.size / RATE:.2f} s, {int(np.sum(run.lost))} of {frames} frames lost, "
            f"{int(np.sum(run.late & ~run.lost))} late"
        )
    return 0
