"""Shared fixtures: real models loaded once per test session, and speech clips made with the real TTS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.data import data_root
from voicebot.audio import write_wav
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services

RATE = 16_000
needs_data = pytest.mark.skipif(
    not data_root().is_dir(), reason=f"public datasets not found at {data_root()} (set VOICEBOT_DATA)"
)
PHRASES = {
    "track": "I would like to track my order. The number is four five seven two one nine.",
    "agent": "Can I speak to a human agent please?",
    "bye": "No thanks, goodbye.",
}


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    svc = Services.load(VoicebotConfig())
    yield svc
    svc.close()


def silence(seconds: float, rate: int = RATE) -> PCM:
    return np.zeros(int(seconds * rate), np.int16)


@pytest.fixture(scope="session")
def speech(services: Services) -> dict[str, PCM]:
    """Each phrase at 16 kHz with 0.3 s of silence on both sides."""
    return {
        key: np.concatenate([silence(0.3), services.tts.synthesize_at(text, RATE), silence(0.3)])
        for key, text in PHRASES.items()
    }


@pytest.fixture(scope="session")
def speech_files(speech: dict[str, PCM], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("speech")
    paths = {}
    for key, pcm in speech.items():
        paths[key] = folder / f"{key}.wav"
        write_wav(paths[key], pcm, RATE)
    return paths
