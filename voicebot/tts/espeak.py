"""espeak-ng and flite: robotic but tiny, instant and model-free fallbacks for when Piper cannot run.

Both are Debian binaries that write a WAV; each call is its own process, so they are thread-safe for free.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

from voicebot.frames import PCM
from voicebot.tts.base import TTSError

# A synthesiser that hangs must not hang the call; a sentence takes milliseconds.
_TIMEOUT_S = 30.0


def parse_wav(data: bytes, what: str) -> tuple[int, PCM]:
    """(rate, mono int16) from WAV bytes.

    espeak-ng writing to a pipe cannot seek back to fix the header, so its sizes are placeholders
    (~2 GB): `wave` clamps the read to the bytes actually there, and an odd trailing byte is dropped.
    """
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise TTSError(
                    f"{what}: expected 16-bit mono WAV, got {w.getsampwidth() * 8}-bit "
                    f"{w.getnchannels()}-channel"
                )
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TTSError(f"{what}: output is not a WAV file ({exc})") from exc
    raw = raw[: len(raw) // 2 * 2]
    return rate, np.frombuffer(raw, dtype="<i2").astype(np.int16)


class _CommandTTS:
    """A TTS binary that prints a WAV: subclasses only say how to build the command line."""

    name: str
    sample_rate: int
    binary: str

    def __init__(self) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise TTSError(
                f"{self.name}: `{self.binary}` not found on PATH (Debian: apt-get install {self.binary})"
            )
        self._path = path
        self._validate()
        # The rate depends on the build and voice (espeak-ng 22050, flite kal 8000 / slt 16000): ask once.
        self.sample_rate, _ = self._run("a")

    def _command(self, text: str) -> tuple[list[str], bytes | None]:
        """argv (after the binary) and stdin bytes for one sentence."""
        raise NotImplementedError

    def _validate(self) -> None:
        """Reject a bad setting up front, for binaries that would silently ignore it."""

    def _run(self, text: str) -> tuple[int, PCM]:
        args, stdin = self._command(text)
        try:
            proc = subprocess.run(
                [self._path, *args], input=stdin, capture_output=True, timeout=_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TTSError(f"{self.name}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise TTSError(f"{self.name}: exit status {proc.returncode}: {err}")
        return parse_wav(proc.stdout, self.name)

    def synthesize(self, text: str) -> PCM:
        """One sentence → int16 at `sample_rate`; whitespace → empty (no process started)."""
        text = " ".join(text.split())
        if not text:
            return np.zeros(0, dtype=np.int16)
        rate, pcm = self._run(text)
        if rate != self.sample_rate:
            raise TTSError(f"{self.name}: produced {rate} Hz audio, expected {self.sample_rate} Hz")
        return pcm


class EspeakTTS(_CommandTTS):
    """espeak-ng; `length_scale` > 1 speaks slower (maps onto words per minute, default 175)."""

    name = "espeak-ng"
    binary = "espeak-ng"

    def __init__(self, voice: str = "en-us", length_scale: float = 1.0) -> None:
        self.voice = voice
        self.wpm = max(80, min(450, round(175 / length_scale)))
        super().__init__()

    def _command(self, text: str) -> tuple[list[str], bytes | None]:
        # Text on stdin (-b 1: UTF-8), so a sentence starting with "-" is never read as an option.
        return ["--stdout", "--stdin", "-b", "1", "-v", self.voice, "-s", str(self.wpm)], text.encode()


class FliteTTS(_CommandTTS):
    """flite; default voice `slt` (16 kHz, clearer than the built-in 8 kHz `kal`)."""

    name = "flite"
    binary = "flite"

    def __init__(self, voice: str = "slt", length_scale: float = 1.0) -> None:
        self.voice = voice
        self.length_scale = length_scale
        super().__init__()

    def _validate(self) -> None:
        # flite silently falls back to its 8 kHz `kal` voice for an unknown name; a .flitevox path is fine.
        if "/" in self.voice or self.voice.endswith(".flitevox"):
            return
        out = subprocess.run([self._path, "-lv"], capture_output=True, text=True, timeout=_TIMEOUT_S).stdout
        voices = out.partition(":")[2].split()
        if self.voice not in voices:
            raise TTSError(f"flite: no voice {self.voice!r} (built-in: {', '.join(voices)})")

    def _command(self, text: str) -> tuple[list[str], bytes | None]:
        # flite computes the whole wave before writing, so its header is correct even on a pipe.
        args = ["-voice", self.voice, "--setf", f"duration_stretch={self.length_scale}"]
        return [*args, "-t", text, "-o", "/dev/stdout"], None
