"""Speech codecs a call may pass through, each an encode and decode of 8 kHz int16 PCM.

- `ulaw`, `alaw`: G.711, in numpy (`voicebot.audio`, bit-exact with the reference g711.c).
- `gsm`: GSM 06.10 full rate (13 kbit/s) through libgsm: `sox` when it lists the `gsm` format (10x faster
  to start), else `ffmpeg` with its `libgsm` encoder; both give the same bits.
- `amr-nb`: AMR-NB (3GPP TS 26.071) through `sox` and libopencore-amrnb (Debian: `apt-get install sox`).
  Debian's ffmpeg only decodes AMR-NB, so it is not used. The decoder's output lags 40 samples (5 ms),
  which is taken off so the line stays aligned with its input.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np

from voicebot.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voicebot.frames import PCM
from voicebot.line.config import AMR_KBPS, LineError

_RAW = ["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1"]
_AMR_DELAY = 40  # samples the opencore AMR-NB decoder's output lags its input
_FRAME = 160


@functools.cache
def _tool_lists(tool: str) -> str:
    """What a tool says it can do (`sox -h`, `ffmpeg -encoders`), or "" when it is not installed."""
    if shutil.which(tool) is None:
        return ""
    args = [tool, "-h"] if tool == "sox" else [tool, "-hide_banner", "-encoders"]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _sox_formats() -> list[str]:
    text = _tool_lists("sox")
    line = next((ln for ln in text.splitlines() if ln.startswith("AUDIO FILE FORMATS:")), "")
    return line.split(":", 1)[1].split() if line else []


def codec_tool(codec: str) -> str | None:
    """The program that runs `codec` here (None for G.711, which needs none); LineError when none can."""
    if codec in ("ulaw", "alaw"):
        return None
    if codec == "gsm":
        if "gsm" in _sox_formats():
            return "sox"
        if " libgsm " in _tool_lists("ffmpeg"):
            return "ffmpeg"
        raise LineError(
            "codec gsm needs sox (with its gsm format) or ffmpeg (with the libgsm encoder), and neither is "
            "installed here (Debian: apt-get install sox, or ffmpeg)"
        )
    if codec == "amr-nb":
        if "amr-nb" in _sox_formats():
            return "sox"
        state = "is installed without its amr-nb format" if _tool_lists("sox") else "is not installed"
        raise LineError(
            "codec amr-nb needs sox with its amr-nb format (libopencore-amrnb; Debian: apt-get install "
            f"sox), and sox {state} (this machine's ffmpeg, like Debian's, has no AMR-NB encoder)"
        )
    raise LineError(f"unknown codec {codec!r}")


def available(codec: str) -> bool:
    try:
        codec_tool(codec)
    except LineError:
        return False
    return True


def _run(args: list[str], data: bytes) -> bytes:
    try:
        done = subprocess.run(args, input=data, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LineError(f"{args[0]} failed: {exc}") from exc
    if done.returncode != 0:
        raise LineError(f"{' '.join(args)} failed: {done.stderr.decode(errors='replace').strip()[-300:]}")
    return done.stdout


def _gsm(pcm: PCM) -> PCM:
    if codec_tool("gsm") == "sox":
        coded = _run(["sox", *_RAW, "-", "-t", "gsm", "-"], pcm.tobytes())
        out = _run(["sox", "-t", "gsm", "-r", "8000", "-", *_RAW, "-"], coded)
    else:
        quiet = ["ffmpeg", "-hide_banner", "-loglevel", "error"]
        s16 = ["-f", "s16le", "-ar", "8000", "-ac", "1"]
        coded = _run([*quiet, *s16, "-i", "-", "-c:a", "libgsm", "-f", "gsm", "-"], pcm.tobytes())
        out = _run([*quiet, "-f", "gsm", "-ar", "8000", "-i", "-", "-f", "s16le", "-"], coded)
    return np.frombuffer(out, dtype=np.int16)


def _amr_nb(pcm: PCM, kbps: float) -> PCM:
    codec_tool("amr-nb")
    mode = str(AMR_KBPS.index(kbps))
    coded = _run(["sox", *_RAW, "-", "-C", mode, "-t", "amr-nb", "-"], pcm.tobytes())
    out = np.frombuffer(_run(["sox", "-t", "amr-nb", "-", *_RAW, "-"], coded), np.int16)
    return out[_AMR_DELAY:]


def code(pcm: PCM, codec: str, amr_kbps: float = 12.2) -> PCM:
    """`pcm` (8 kHz) encoded and decoded with `codec`: the same length, aligned with the input."""
    if codec == "ulaw":
        return ulaw_decode(ulaw_encode(pcm))
    if codec == "alaw":
        return alaw_decode(alaw_encode(pcm))
    n = pcm.size
    padded = np.concatenate([pcm, np.zeros(-n % _FRAME + 2 * _FRAME, np.int16)])  # whole frames + the lag
    out = _gsm(padded) if codec == "gsm" else _amr_nb(padded, amr_kbps)
    if out.size < n:
        raise LineError(f"{codec}: the decoder gave {out.size} samples for {n}")
    return np.ascontiguousarray(out[:n])
