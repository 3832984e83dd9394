"""Speech recognition: backends behind one interface, and the factory that picks one from the config."""

from __future__ import annotations

from pathlib import Path

from voicebot.asr.base import ASRBackend, Audio, Transcription
from voicebot.assets import ModelNotFoundError, whisper_model_dir
from voicebot.config import ASRConfig

__all__ = ["ASRBackend", "Audio", "Transcription", "make_asr"]


def make_asr(config: ASRConfig, cache_dir: Path) -> ASRBackend:
    if config.backend == "openai-whisper":
        if config.checkpoint is None:
            raise ModelNotFoundError("asr.backend=openai-whisper needs asr.checkpoint (a .pt file)")
        from voicebot.asr.openai_whisper_backend import OpenAIWhisperASR

        return OpenAIWhisperASR(config.checkpoint, config)
    from voicebot.asr.faster_whisper_backend import FasterWhisperASR

    return FasterWhisperASR(str(whisper_model_dir(config.model, cache_dir)), config)
