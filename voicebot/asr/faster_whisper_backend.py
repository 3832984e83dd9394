"""faster-whisper (CTranslate2, int8 on CPU): the default ASR backend.

We load the model through faster-whisper but drive CTranslate2's `generate` ourselves, for one reason:
latency. Whisper's encoder always sees a 30 s window, and on a 2-core CPU that alone costs ~0.6 s for base.
A caller's turn is a few seconds, so we encode a window just long enough for the utterance plus a margin of
silence (`min_window_s` .. 30 s), which cuts the final decode to a fraction at equal accuracy on short
utterances (see docs/benchmarks.md). The temperature fallback and guards follow the Whisper paper.

The encoder's output for the last few utterances is kept (`ENCODED_KEPT`): the speculative decode at a pause
is a quick greedy pass (`DecodeHints.quick`), and when a slot answer then needs its beam or constrained
reading, that full decode of the same audio runs the decoder only.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import OrderedDict

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_suppressed_tokens

from voicebot.asr.base import (
    Audio,
    DecodeHints,
    Transcription,
    compression_ratio,
    decoder_prompt,
    judge,
    needs_fallback,
)
from voicebot.config import ASRConfig

RATE = 16_000
FRAMES_PER_SECOND = 100  # Whisper mel frames
MAX_WINDOW_S = 30.0
MAX_PROMPT_TOKENS = 200
CONSTRAINED_TOKENS = 48  # a constrained reading is a short answer; a longer one is a loop ("0, 0, 0, …")
ENCODED_KEPT = 8  # encoder outputs kept (~1 MB each for base): a quick decode's, until its full decode


class FasterWhisperASR:
    """One shared model instance; `transcribe` is safe to call from several threads."""

    def __init__(self, model_dir: str, config: ASRConfig) -> None:
        self.config = config
        self.name = f"faster-whisper:{config.model}"
        threads = config.cpu_threads or (os.cpu_count() or 1)
        self.model = WhisperModel(
            model_dir, device="cpu", compute_type=config.compute_type, cpu_threads=threads
        )
        ct2 = self.model.model
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            ct2.is_multilingual,
            task="transcribe",
            language=config.language if ct2.is_multilingual else "en",
        )
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.max_length = int(self.model.max_length)
        self._prompt_cache: dict[str | None, list[int]] = {}
        self._vocabulary_cache: dict[tuple[str, ...], list[int]] = {}
        self._encoded: OrderedDict[tuple[int, int], tuple[ctranslate2.StorageView, float]] = OrderedDict()
        self.encoder_runs = 0  # how often the encoder ran (the rest were kept outputs)
        self._lock = threading.Lock()

    def window_seconds(self, n_samples: int) -> float:
        seconds = n_samples / RATE + self.config.window_margin_s
        return float(min(MAX_WINDOW_S, max(self.config.min_window_s, math.ceil(seconds))))

    def features(self, audio: Audio) -> tuple[np.ndarray, float]:
        window = self.window_seconds(audio.size)
        n = int(window * RATE)
        padded = np.zeros(n, np.float32)
        clip = audio[-n:] if audio.size > n else audio  # > 30 s: keep the end, where the turn's point is
        padded[: clip.size] = clip
        mel = self.model.feature_extractor(padded, padding=0)
        frames = int(window * FRAMES_PER_SECOND)
        return np.ascontiguousarray(mel[:, :frames], dtype=np.float32), window

    def prompt_tokens(self, prompt: str | None) -> list[int]:
        text = decoder_prompt(self.config, prompt)
        with self._lock:
            cached = self._prompt_cache.get(text)
        if cached is not None:
            return cached
        tokens: list[int] = []
        if text:
            tokens = [
                self.tokenizer.sot_prev,
                *self.tokenizer.encode(" " + text.strip())[-MAX_PROMPT_TOKENS:],
            ]
        tokens += [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        with self._lock:
            if len(self._prompt_cache) < 64:
                self._prompt_cache[text] = tokens
        return tokens

    def transcribe(
        self, audio: Audio, prompt: str | None = None, hints: DecodeHints | None = None
    ) -> Transcription:
        start = time.perf_counter()
        hints = hints or DecodeHints()
        if audio.size == 0:
            return judge(Transcription(text=""), self.config)
        encoded, window = self.encode(audio.astype(np.float32, copy=False))
        tokens_in = self.prompt_tokens(prompt)
        if hints.quick:
            quick = self._decode(encoded, tokens_in, next(iter(self.config.temperatures), 0.0))
            quick.provisional = needs_fallback(quick, self.config)
            return self._timed(judge(quick, self.config), start, window)
        result: Transcription | None = None
        for temperature in self.config.temperatures:
            result = self._decode(encoded, tokens_in, temperature, hints.hypotheses)
            silent = (
                result.no_speech_prob > self.config.no_speech_threshold
                and result.avg_logprob < self.config.logprob_threshold
            )
            if silent or not needs_fallback(result, self.config):
                break
        assert result is not None
        result = judge(result, self.config)
        fits = hints.fits
        heard = [result.text, *result.alternatives]
        if result.text and fits and hints.vocabulary and not any(map(fits, heard)):
            constrained = self._decode(
                encoded, tokens_in, 0.0, 1, self._only(hints.vocabulary), len(tokens_in) + CONSTRAINED_TOKENS
            )
            if judge(constrained, self.config).text:
                result.alternatives.append(constrained.text)
                result.constrained = True
        return self._timed(result, start, window)

    @staticmethod
    def _timed(result: Transcription, start: float, window: float) -> Transcription:
        result.decode_ms = (time.perf_counter() - start) * 1000.0
        result.window_s = window
        return result

    def encode(self, audio: Audio) -> tuple[ctranslate2.StorageView, float]:
        """The encoder's output for `audio` (and its window), kept for a second decode of the same audio."""
        key = (audio.size, hash(audio.tobytes()))
        with self._lock:
            kept = self._encoded.get(key)
            if kept is not None:
                self._encoded.move_to_end(key)
                return kept
        mel, window = self.features(audio)
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=False)
        with self._lock:
            self.encoder_runs += 1
            self._encoded[key] = (encoded, window)
            while len(self._encoded) > ENCODED_KEPT:
                self._encoded.popitem(last=False)
        return encoded, window

    def _only(self, vocabulary: tuple[str, ...]) -> list[int]:
        """Token ids to suppress so that a decode writes only `vocabulary`'s words, digits and punctuation.

        A token survives when its text, without the leading space, is digits or punctuation, or is a piece
        of one of the words (a word-initial piece must start it): BPE splits "triple" into pieces.
        """
        with self._lock:
            cached = self._vocabulary_cache.get(vocabulary)
        if cached is not None:
            return cached
        words = [w.lower() for w in vocabulary]
        keep_special = set(self.tokenizer.sot_sequence) | {self.tokenizer.eot, self.tokenizer.no_timestamps}
        suppress: list[int] = []
        for token_id in range(self.tokenizer.eot):
            piece = self.tokenizer.decode([token_id])
            core = piece.strip().lower()
            if token_id in keep_special or not core or re.fullmatch(r"[0-9.,\-'?!]+", core):
                continue
            initial = piece[:1] == " " or token_id == 0
            if any((w.startswith(core) if initial else core in w) for w in words):
                continue
            suppress.append(token_id)
        suppress = sorted(set(suppress) | set(self.suppress))
        with self._lock:
            self._vocabulary_cache[vocabulary] = suppress
        return suppress

    def _decode(
        self,
        encoded: ctranslate2.StorageView,
        prompt: list[int],
        temperature: float,
        hypotheses: int = 1,
        suppress: list[int] | None = None,
        max_length: int | None = None,
    ) -> Transcription:
        width = max(self.config.beam_size, hypotheses)
        sampling = (
            {"beam_size": 1, "sampling_topk": 0, "sampling_temperature": temperature}
            if temperature > 0
            else {"beam_size": width, "num_hypotheses": hypotheses}
        )
        res = self.model.model.generate(
            encoded,
            [prompt],
            max_length=min(max_length or self.max_length, self.max_length),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=suppress if suppress is not None else self.suppress,
            **sampling,
        )[0]
        texts = [self.tokenizer.decode(seq).strip() for seq in res.sequences_ids]
        tokens = res.sequences_ids[0]
        avg_logprob = res.scores[0] * len(tokens) / (len(tokens) + 1)  # length_penalty 1, as faster-whisper
        text = texts[0]
        others = [t for t in dict.fromkeys(texts[1:]) if t and t != text]
        return Transcription(
            text=text,
            raw_text=text,
            no_speech_prob=float(res.no_speech_prob),
            avg_logprob=float(avg_logprob),
            compression_ratio=compression_ratio(text),
            temperature=temperature,
            alternatives=others,
        )
