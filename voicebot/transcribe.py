"""File transcription through the live path's own pieces: the VAD cuts the file into utterances and each
utterance is decoded with the call's ASR settings, so a 10-minute recording works and silence yields nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.asr import ASRBackend
from voicebot.asr.base import judge
from voicebot.audio import read_audio, to_float
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM, SpeechEnded
from voicebot.vad import RATE, Endpointer, VADModel

CHUNK = RATE  # feed the endpointer a second at a time


@dataclass
class FileTranscript:
    file: str
    text: str
    duration_s: float
    utterances: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "text": self.text,
            "duration_s": self.duration_s,
            "utterances": self.utterances,
        }


def utterances(pcm: np.ndarray, vad: VADModel, config: VoicebotConfig) -> list[SpeechEnded]:
    endpointer = Endpointer(vad, config.vad)
    found: list[SpeechEnded] = []
    for start in range(0, pcm.size, CHUNK):
        found += [f for f in endpointer.process(pcm[start : start + CHUNK]) if isinstance(f, SpeechEnded)]
    tail = np.zeros(int(RATE * config.vad.end_silence_ms / 1000) + 1024, np.int16)
    found += [f for f in endpointer.process(tail) + endpointer.flush() if isinstance(f, SpeechEnded)]
    return found


def transcribe_file(
    path: Path, asr: ASRBackend, vad: VADModel, config: VoicebotConfig, pcm: PCM | None = None
) -> FileTranscript:
    """`pcm`: the file already decoded at 16 kHz (the CLI decodes before it loads any model, so a file that
    is not audio is refused in a second rather than after the models load)."""
    if pcm is None:
        pcm = read_audio(path, RATE)
    parts: list[dict[str, Any]] = []
    for utt in utterances(pcm, vad, config):
        if utt.speech_ms < config.asr.min_speech_ms:
            result = judge(asr.transcribe(np.zeros(0, np.float32)), config.asr, speech_ms=utt.speech_ms)
        else:
            result = asr.transcribe(to_float(utt.audio))
        start_s = round(utt.t - utt.audio.size / RATE, 2)
        parts.append({"start_s": start_s, "end_s": round(utt.speech_end_t, 2)} | result.as_dict())
    text = " ".join(p["text"] for p in parts if p["text"])
    return FileTranscript(file=str(path), text=text, duration_s=round(pcm.size / RATE, 3), utterances=parts)
