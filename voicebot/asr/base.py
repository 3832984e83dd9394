"""The ASR backend interface and the hallucination guards every backend shares.

Whisper invents text for silence, noise, music and tones ("Thank you for watching."). A phone bot that acts
on invented words is worse than one that hears nothing, so each decode is judged on the same signals the
Whisper paper uses (no-speech probability with average log-probability, compression ratio) plus a
repeated-n-gram loop detector and a short list of known non-speech outputs.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebot.config import ASRConfig

Audio = npt.NDArray[np.float32]  # mono float32 at 16 kHz

# Whole-output texts Whisper produces from non-speech (subtitle credits, outros) that a caller would not say;
# "thank you" and "bye" are real caller turns, so they are not here. Matched after normalising.
KNOWN_NON_SPEECH = frozenset(
    {
        "thank you for watching",
        "thanks for watching",
        "thank you so much for watching",
        "please subscribe",
        "subtitles by the amaraorg community",
        "you",
        "music",
        "applause",
    }
)


@dataclass(frozen=True)
class DecodeHints:
    """What the dialogue expects, as far as decoding goes (built from its `ListeningContext`).

    `hypotheses` > 1 runs a beam search that wide and keeps the other hypotheses as alternatives. When no
    hypothesis `fits` (e.g. none reads as a digit string of the expected length) and `vocabulary` is given,
    one more decode of the same encoder output may write only those words, digits and punctuation: a
    grammar-constrained reading, offered as the last alternative, never as the transcript itself.

    `quick`: one greedy pass at the first temperature, nothing else (the speculative decode at a pause, where
    every millisecond delays the turn decision); `settles` says whether its reading can stand as the
    transcript or the full decode under the context's hints must follow.
    """

    hypotheses: int = 1
    vocabulary: tuple[str, ...] = ()
    fits: Callable[[str], bool] | None = None
    quick: bool = False


QUICK = DecodeHints(quick=True)


@dataclass
class Transcription:
    """One decode. `text` is empty when a guard rejected it; `rejected` then says which. `alternatives`
    are the other hypotheses, best first (the constrained reading last, when one was made)."""

    text: str
    no_speech_prob: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    rejected: str | None = None
    decode_ms: float = 0.0
    window_s: float = 0.0
    raw_text: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    alternatives: list[str] = field(default_factory=list)
    constrained: bool = False
    guard: str | None = None  # the guard's verdict when `rejected` is "noise"
    provisional: bool = False  # a quick decode that would have fallen back to a higher temperature

    def as_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "raw_text": self.raw_text,
            "rejected": self.rejected,
            "guard": self.guard,
            "no_speech_prob": round(self.no_speech_prob, 4),
            "avg_logprob": round(self.avg_logprob, 4),
            "compression_ratio": round(self.compression_ratio, 3),
            "temperature": self.temperature,
            "decode_ms": round(self.decode_ms, 1),
            "window_s": self.window_s,
            "alternatives": list(self.alternatives),
            "constrained": self.constrained,
        }


class ASRBackend(Protocol):
    name: str

    def transcribe(
        self, audio: Audio, prompt: str | None = None, hints: DecodeHints | None = None
    ) -> Transcription:
        """Transcribe one utterance (at most 30 s) of 16 kHz mono float32 audio. A backend that cannot
        give alternatives ignores `hints`."""
        ...


def settles(quick: Transcription, hints: DecodeHints) -> bool:
    """Whether a quick (greedy) reading is the transcript under `hints`, or the full decode must follow.

    It stands when the full decode would be the same greedy pass (one hypothesis, no vocabulary) and it
    was sure enough not to fall back, or when it already reads as the slot's answer (`hints.fits`: the six
    digits asked for), so no beam or constrained reading could help. A slot without a fit test (a name, a
    date) wants its n-best for the dialogue: always the full decode.
    """
    if quick.provisional:
        return False
    if hints.hypotheses <= 1 and not hints.vocabulary:
        return True
    return hints.fits is not None and bool(quick.text) and hints.fits(quick.text)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


DIGIT_RUN_REPEATS = 8
"""A digit said again and again is a number ("3 7 7 7 7 7"), not a loop, up to this many times."""


def repetition_loop(text: str, max_repeats: int) -> bool:
    """True when some 1..4-word n-gram repeats `max_repeats` times in a row (a decoding loop); an n-gram of
    figures only needs `DIGIT_RUN_REPEATS` (numbers repeat digits)."""
    words = re.findall(r"[\w']+", text.lower())
    for n in range(1, 5):
        run = 1
        for i in range(n, len(words) - n + 1, n):
            run = run + 1 if words[i : i + n] == words[i - n : i] else 1
            limit = DIGIT_RUN_REPEATS if all(w.isdigit() for w in words[i : i + n]) else max_repeats
            if run >= max(limit, max_repeats):
                return True
    return False


def normalise_for_match(text: str) -> str:
    return re.sub(r"[^a-z ]", "", text.lower()).strip()


def needs_fallback(tr: Transcription, config: ASRConfig) -> bool:
    """A decode that looks like a loop or is unsure is retried at a higher temperature."""
    return (
        tr.compression_ratio > config.compression_ratio_threshold or tr.avg_logprob < config.logprob_threshold
    )


def judge(tr: Transcription, config: ASRConfig, speech_ms: float | None = None) -> Transcription:
    """Apply the guards in place; a rejected transcription keeps its raw text for diagnostics."""
    tr.raw_text = tr.raw_text or tr.text
    text = tr.text.strip()
    reason: str | None = None
    if not text:
        reason = "empty"
    elif speech_ms is not None and speech_ms < config.min_speech_ms:
        reason = "too little speech"
    elif tr.no_speech_prob > config.no_speech_threshold and tr.avg_logprob < config.logprob_threshold:
        reason = "no speech"
    elif tr.compression_ratio > config.compression_ratio_threshold:
        reason = "compression ratio"
    elif repetition_loop(text, config.max_repeats):
        reason = "repetition"
    elif tr.avg_logprob < config.logprob_threshold - 0.5:
        reason = "low confidence"
    elif normalise_for_match(text) in KNOWN_NON_SPEECH and tr.no_speech_prob > 0.15:
        reason = "known non-speech output"
    tr.rejected = reason
    tr.text = "" if reason else text
    if reason:
        tr.alternatives = []  # the other readings of audio the guards threw out are no better
    return tr


UNCLEAR = frozenset(
    {"no speech", "low confidence", "compression ratio", "repetition", "known non-speech output"}
)
"""Guard verdicts that, on audio the VAD heard as speech, mean the words could not be made out."""


def unclear(tr: Transcription, speech_ms: float, config: ASRConfig) -> Transcription:
    """Mark a rejected decode of `speech_ms` of VAD speech as "noise": someone spoke (or a crowd did) and
    the recogniser could not make it out, so the dialogue asks again instead of staying silent. The guard's
    own verdict stays in `guard` for the record."""
    if tr.rejected in UNCLEAR and speech_ms >= config.unclear_speech_ms:
        tr.guard, tr.rejected = tr.rejected, "noise"
    return tr


def decoder_prompt(config: ASRConfig, prompt: str | None) -> str | None:
    """Initial prompt + hot-words + per-turn context, as Whisper's previous-text prompt."""
    parts = [p for p in (config.initial_prompt, ", ".join(config.hotwords), prompt) if p]
    return " ".join(parts) if parts else None
