"""What callers say: phrases spoken by the real TTS, padded with silence, at the browser or telephone rate."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from voicebot.audio import write_wav
from voicebot.frames import PCM
from voicebot.pipeline import Services

RATE = 16_000  # the browser page's rate, and the pipeline's
PHONE_RATE = 8_000
CALLER_PHRASES = {
    "hours": "What are your opening hours?",
    "agent": "Can I speak to a human agent please?",
    "bye": "No thanks, goodbye.",
}


def silence(seconds: float, rate: int = RATE) -> PCM:
    return np.zeros(int(seconds * rate), np.int16)


def spoken(services: Services, phrases: Mapping[str, str], rate: int, pad_s: float = 0.3) -> dict[str, PCM]:
    """Each phrase from the real TTS at `rate`, with `pad_s` of silence on both sides."""
    pad = silence(pad_s, rate)
    return {
        key: np.concatenate([pad, services.tts.synthesize_at(text, rate), pad])
        for key, text in phrases.items()
    }


def caller_audio(services: Services, rate: int = PHONE_RATE) -> dict[str, PCM]:
    """Each caller phrase from the real TTS at `rate`, with 0.3 s of silence on both sides."""
    return spoken(services, CALLER_PHRASES, rate)


def caller_wavs(services: Services, folder: Path) -> dict[str, Path]:
    paths = {}
    for key, pcm in caller_audio(services).items():
        paths[key] = folder / f"{key}.wav"
        write_wav(paths[key], pcm, PHONE_RATE)
    return paths
