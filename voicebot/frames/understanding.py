"""Frames of understanding the caller: the listening context that goes back upstream, transcripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from voicebot.frames.base import ControlFrame, DataFrame, SystemFrame

# --- understanding the caller -------------------------------------------------------------------------


Expected = Literal["free", "slot", "yes_no", "choice"]  # what kind of answer the dialogue expects


@dataclass(frozen=True)
class ListeningContext(SystemFrame):
    """What the dialogue expects the caller to say next, sent upstream before each caller turn.

    The ASR and the endpointer apply it to the next utterance only. `expected`: "free" (anything), "slot"
    (`slot` of `slot_type`, `min_length`..`max_length` characters), "yes_no" or "choice". `prompt` and
    `hotwords` bias the recogniser; `end_silence_ms` is the pause after which the turn is over (None: the
    endpointer's configured value), e.g. longer while a long number is being read out. `partial`: the
    digits of the slot the caller has read out so far ("457" of a six-digit order number, then a pause).
    """

    expected: Expected = "free"
    slot: str | None = None
    slot_type: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    prompt: str | None = None
    hotwords: tuple[str, ...] = ()
    end_silence_ms: float | None = None
    partial: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "slot": self.slot,
            "slot_type": self.slot_type,
            "min_length": self.min_length,
            "max_length": self.max_length,
            "prompt": self.prompt,
            "hotwords": list(self.hotwords),
            "end_silence_ms": self.end_silence_ms,
            "partial": self.partial,
        }


@dataclass(frozen=True)
class SpeechTimes:
    """When one caller utterance happened and was heard (wall clock, `time.perf_counter()` seconds)."""

    speech_start: float
    speech_end: float
    turn_decision: float  # the endpointer (or the turn-end signal) said the turn is over
    final: float  # the final transcript was ready
    decode_ms: float = 0.0

    def timings_ms(self) -> dict[str, float]:
        """The per-stage durations `voicebot call --json` has always reported."""
        return {
            "endpoint": round((self.turn_decision - self.speech_end) * 1000.0, 1),
            "asr": round((self.final - self.turn_decision) * 1000.0, 1),
            "asr_decode": round(self.decode_ms, 1),
        }


@dataclass(frozen=True)
class PartialTranscript(DataFrame):
    text: str
    t: float


@dataclass(frozen=True)
class FinalTranscript(ControlFrame):
    """One caller turn as text. `details` is the decode's diagnostics (the record's "asr"); `confidence`
    (0-1) and `nbest` (other hypotheses, best first) when the recogniser gives them; `context` is the
    listening context the utterance was decoded under. Typed text turns have no `times`."""

    from_caller: ClassVar[bool] = True
    text: str
    t: float
    details: dict[str, Any] = field(default_factory=dict)
    times: SpeechTimes | None = None
    confidence: float | None = None
    nbest: tuple[str, ...] = ()
    context: ListeningContext | None = None

    @property
    def timings_ms(self) -> dict[str, float]:
        return self.times.timings_ms() if self.times is not None else {}


@dataclass(frozen=True)
class NoInput(ControlFrame):
    """The caller said nothing for `after_s` seconds after the bot finished speaking (a no-input event)."""

    after_s: float
