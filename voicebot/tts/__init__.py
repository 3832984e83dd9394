"""Text-to-speech: pluggable backends behind one cache, chosen by `TTSConfig.backend`."""

from __future__ import annotations

from voicebot.config import TTSConfig
from voicebot.tts.base import TTSBackend, TTSError, split_sentences
from voicebot.tts.cache import CachedTTS
from voicebot.tts.espeak import EspeakTTS, FliteTTS
from voicebot.tts.piper_tts import PiperTTS

__all__ = [
    "CachedTTS",
    "EspeakTTS",
    "FliteTTS",
    "PiperTTS",
    "TTSBackend",
    "TTSError",
    "make_backend",
    "make_tts",
    "split_sentences",
]


def make_backend(config: TTSConfig) -> TTSBackend:
    """The bare backend `config.backend` names; `config.voice` applies to Piper only."""
    if config.backend == "piper":
        return PiperTTS(
            config.voice, length_scale=config.length_scale, variation=config.variation, threads=config.threads
        )
    if config.backend == "espeak-ng":
        return EspeakTTS(length_scale=config.length_scale)
    if config.backend == "flite":
        return FliteTTS(length_scale=config.length_scale)
    raise TTSError(f"unknown TTS backend {config.backend!r}")


def make_tts(config: TTSConfig) -> CachedTTS:
    """The configured backend behind an LRU of `config.cache_size` sentences."""
    return CachedTTS(make_backend(config), size=config.cache_size)
