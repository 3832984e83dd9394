"""Frames of the caller's side: audio in, the VAD's utterance frames, barge-in, DTMF, hang-up, errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from voicebot.frames.base import PCM, SystemFrame

# --- the caller's side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioIn(SystemFrame):
    """Caller audio at the pipeline rate (16 kHz) after resampling."""

    pcm: PCM
    t: float


@dataclass(frozen=True)
class SpeechStarted(SystemFrame):
    """The caller started talking at `t`; `audio` holds the pre-roll and onset already heard (16 kHz).
    `barge_in`: long enough to cut the bot off (a short word that is already over is not)."""

    from_caller: ClassVar[bool] = True
    t: float
    audio: PCM
    barge_in: bool = True

    @property
    def interrupts(self) -> bool:
        return self.barge_in


@dataclass(frozen=True)
class BargeIn(SystemFrame):
    """The utterance that started as a short word (`SpeechStarted.barge_in` false) went on into
    `min_speech_ms` of speech at `t`: "Sorry, can I…" is no cough, so it cuts the bot off now."""

    t: float

    @property
    def interrupts(self) -> bool:
        return True


InterruptionKind = Literal["backchannel", "noise", "interruption", "speech"]
Decision = Literal["stop", "continue", "turn"]


@dataclass(frozen=True)
class Interruption(SystemFrame):
    """One decision on caller speech heard while the bot spoke (`voicebot.asr.bargein`), for the turn record
    of the reply it was heard over: `decision` "stop" (a `BargeIn` follows at once), "continue" (the bot
    talked on, the utterance was dropped) or "turn" (the bot had finished first: an ordinary turn). `kind`
    is what it was taken for, `reason` why, `text` the words heard (on a cut for length: a probe's, if any),
    `latency_ms` the time from the caller's speech start to the decision, `speech_ms` the voiced audio."""

    decision: Decision
    kind: InterruptionKind
    reason: str
    text: str
    latency_ms: float
    speech_ms: float
    t: float
    reply_id: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "kind": self.kind,
            "reason": self.reason,
            "text": self.text,
            "latency_ms": round(self.latency_ms, 1),
            "speech_ms": round(self.speech_ms, 1),
            "t": round(self.t, 3),
            "reply_id": self.reply_id,
        }


@dataclass(frozen=True)
class SpeechAudio(SystemFrame):
    """More audio of the utterance in progress (16 kHz); `speech` is the VAD's verdict on it."""

    pcm: PCM
    t: float
    speech: bool


@dataclass(frozen=True)
class SpeechEnded(SystemFrame):
    """End of an utterance, detected at `t`; speech itself stopped at `speech_end_t`.

    `audio` is the whole utterance (pre-roll included, long trailing silence trimmed) at 16 kHz;
    `decided_at` is when the turn-end decision was taken (wall clock).
    """

    t: float
    speech_end_t: float
    audio: PCM
    speech_ms: float
    forced: bool = False
    decided_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class DTMFDigit(SystemFrame):
    from_caller: ClassVar[bool] = True
    digit: str


@dataclass(frozen=True)
class HangUp(SystemFrame):
    """The caller hung up: the bot stops talking at once. `EndOfStream` follows it in order, so the words
    said before the hang-up are still transcribed, answered and recorded."""

    from_caller: ClassVar[bool] = True
    reason: str = "caller hung up"


@dataclass(frozen=True)
class StageError(SystemFrame):
    """A stage failed on one item; the call goes on and the error is reported, never swallowed."""

    stage: str
    message: str
