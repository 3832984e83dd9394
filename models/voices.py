"""Caller voices for spoken evaluation: several synthesiser families, some kept out of every tuning choice.

Real callers are voices the bot has never heard, so a recogniser setting (a prompt, a threshold, a grammar)
that was chosen by listening to one synthetic voice must be judged on others. The voices here come in
families (one engine each); `TUNED` families may be listened to while choosing settings, `HELD_OUT` families
never are, and benchmarks report them in their own column.

- piper: the packaged neural voice (joe), at its own pace and slower.
- espeak-ng: formant synthesis, American and British variants.
- flite: the CMU voices built into flite (kal, awb, rms, slt). Held out.
- festival: Debian's festival with a diphone voice (ked) and an HTS voice (slt). Held out.

Every voice gives int16 PCM at the rate asked for (resampled from the engine's own rate).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voicebot.audio import read_audio, resample
from voicebot.frames import PCM
from voicebot.tts import EspeakTTS, FliteTTS, PiperTTS, TTSBackend, TTSError

TUNED = ("piper", "espeak-ng")
HELD_OUT = ("flite", "festival")
_TIMEOUT_S = 60.0


class FestivalTTS:
    """Debian's festival through `text2wave`, with one of its installed voices (`ked_diphone`, ...)."""

    name = "festival"

    def __init__(self, voice: str) -> None:
        self.voice = voice
        path = shutil.which("text2wave")
        if path is None:
            raise TTSError("festival: `text2wave` not found on PATH (Debian: apt-get install festival)")
        self._path = path
        self.sample_rate = 16_000

    def synthesize(self, text: str) -> PCM:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.wav"
            proc = subprocess.run(
                [self._path, "-eval", f"(voice_{self.voice})", "-o", str(out)],
                input=text.encode(),
                capture_output=True,
                timeout=_TIMEOUT_S,
                check=False,
            )
            if proc.returncode != 0 or not out.is_file():
                raise TTSError(f"festival {self.voice}: {proc.stderr.decode(errors='replace').strip()}")
            return read_audio(out, self.sample_rate)


@dataclass(frozen=True)
class Voice:
    """One caller voice: `family` decides whether tuning may listen to it."""

    name: str
    family: str
    make: Callable[[], TTSBackend]

    @property
    def held_out(self) -> bool:
        return self.family in HELD_OUT

    def speak(self, text: str, rate: int) -> PCM:
        backend = _backend(self)
        pcm = backend.synthesize(text)
        return resample(pcm, backend.sample_rate, rate)


@functools.cache
def _backend(voice: Voice) -> TTSBackend:
    return voice.make()


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("piper-joe", "piper", lambda: PiperTTS(None, variation=0.0)),
        Voice("piper-joe-slow", "piper", lambda: PiperTTS(None, length_scale=1.2, variation=0.0)),
        Voice("espeak-us", "espeak-ng", lambda: EspeakTTS("en-us")),
        Voice("espeak-gb-m3", "espeak-ng", lambda: EspeakTTS("en-gb+m3", length_scale=1.1)),
        Voice("flite-kal", "flite", lambda: FliteTTS("kal")),
        Voice("flite-awb", "flite", lambda: FliteTTS("awb")),
        Voice("flite-rms", "flite", lambda: FliteTTS("rms")),
        Voice("flite-slt", "flite", lambda: FliteTTS("slt")),
        Voice("festival-ked", "festival", lambda: FestivalTTS("ked_diphone")),
        Voice("festival-slt-hts", "festival", lambda: FestivalTTS("cmu_us_slt_arctic_hts")),
    )
}


def voices(names: list[str] | None = None, *, held_out: bool | None = None) -> list[Voice]:
    """The named voices (all by default), optionally only the held-out or only the tuned ones."""
    chosen = [VOICES[n] for n in names] if names else list(VOICES.values())
    return [v for v in chosen if held_out is None or v.held_out == held_out]
