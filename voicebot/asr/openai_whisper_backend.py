"""openai-whisper (PyTorch) backend, for users who bring their own `.pt` checkpoint (e.g. a fine-tune).

No registry package ships an OpenAI checkpoint, so this backend is only used when `asr.checkpoint` points
at one. openai-whisper's own decoder already implements the Whisper paper's temperature fallback and
thresholds; we pass ours in and then apply the shared guards to its segments.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.asr.base import Audio, DecodeHints, Transcription, compression_ratio, decoder_prompt, judge
from voicebot.assets import ModelNotFoundError
from voicebot.config import ASRConfig


class OpenAIWhisperASR:
    def __init__(self, checkpoint: Path, config: ASRConfig) -> None:
        if not Path(checkpoint).is_file():
            raise ModelNotFoundError(f"openai-whisper checkpoint not found: {checkpoint}")
        try:
            import torch
            import whisper
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ModelNotFoundError("openai-whisper is not installed (make install adds it)") from exc
        torch.set_num_threads(config.cpu_threads or (os.cpu_count() or 1))
        self._whisper = whisper
        self.model = whisper.load_model(str(checkpoint), device="cpu")
        self.config = config
        self.name = f"openai-whisper:{Path(checkpoint).name}"

    def transcribe(
        self, audio: Audio, prompt: str | None = None, hints: DecodeHints | None = None
    ) -> Transcription:
        """openai-whisper's own decoder gives one hypothesis; `hints` are not used."""
        start = time.perf_counter()
        if audio.size == 0:
            return judge(Transcription(text=""), self.config)
        cfg = self.config
        result: dict[str, Any] = self._whisper.transcribe(
            self.model,
            audio.astype(np.float32, copy=False),
            temperature=cfg.temperatures,
            compression_ratio_threshold=cfg.compression_ratio_threshold,
            logprob_threshold=cfg.logprob_threshold,
            no_speech_threshold=cfg.no_speech_threshold,
            condition_on_previous_text=False,
            initial_prompt=decoder_prompt(cfg, prompt),
            language=cfg.language if self.model.is_multilingual else "en",
            fp16=False,
            without_timestamps=True,
            verbose=None,
        )
        segments = result.get("segments") or []
        text = str(result.get("text", "")).strip()
        tr = Transcription(
            text=text,
            raw_text=text,
            no_speech_prob=max((float(s["no_speech_prob"]) for s in segments), default=0.0),
            avg_logprob=min((float(s["avg_logprob"]) for s in segments), default=0.0),
            compression_ratio=compression_ratio(text),
            temperature=max((float(s["temperature"]) for s in segments), default=0.0),
        )
        tr.decode_ms = (time.perf_counter() - start) * 1000.0
        tr.window_s = 30.0
        return judge(tr, cfg)
