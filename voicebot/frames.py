"""Typed frames: the only things that travel between pipeline stages.

Audio inside the pipeline is mono int16 numpy at a stated rate. Stages pass every frame they do not consume
on to the next stage, so control frames (speech started, hang-up) reach the output without waiting for work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Frame:
    """Base class; `t` is the caller-audio time (seconds since call start) the frame refers to."""


@dataclass(frozen=True)
class AudioIn(Frame):
    """Caller audio at the pipeline rate (16 kHz) after resampling."""

    pcm: PCM
    t: float


@dataclass(frozen=True)
class SpeechStarted(Frame):
    """The caller started talking at `t`; `audio` holds the pre-roll and onset already heard (16 kHz).
    `barge_in`: long enough to cut the bot off (a short word that is already over is not)."""

    t: float
    audio: PCM
    barge_in: bool = True


@dataclass(frozen=True)
class BargeIn(Frame):
    """The utterance that started as a short word (`SpeechStarted.barge_in` false) went on into
    `min_speech_ms` of speech at `t`: "Sorry, can I…" is no cough, so it cuts the bot off now."""

    t: float


@dataclass(frozen=True)
class SpeechAudio(Frame):
    """More audio of the utterance in progress (16 kHz); `speech` is the VAD's verdict on it."""

    pcm: PCM
    t: float
    speech: bool


@dataclass(frozen=True)
class SpeechEnded(Frame):
    """End of an utterance, detected at `t`; speech itself stopped at `speech_end_t`.

    `audio` is the whole utterance (pre-roll included, long trailing silence trimmed) at 16 kHz.
    """

    t: float
    speech_end_t: float
    audio: PCM
    speech_ms: float
    forced: bool = False


@dataclass(frozen=True)
class PartialTranscript(Frame):
    text: str
    t: float


@dataclass(frozen=True)
class FinalTranscript(Frame):
    text: str
    t: float
    details: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DTMFDigit(Frame):
    digit: str


@dataclass(frozen=True)
class NoInput(Frame):
    """The caller said nothing for `after_s` seconds after the bot finished speaking (a no-input event)."""

    after_s: float


@dataclass(frozen=True)
class HangUp(Frame):
    reason: str = "caller hung up"


ActionKind = Literal["speak", "transfer", "hangup"]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    target: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class BotReply(Frame):
    """What the brain decided for one caller turn. `interruptible=False` protects e.g. legal notices."""

    text: str
    actions: tuple[Action, ...] = ()
    turn: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    interruptible: bool = True


@dataclass(frozen=True)
class BotAudio(Frame):
    """One transport frame of bot speech at the channel rate. `last` marks the end of a reply."""

    pcm: PCM
    sentence: str
    reply_id: int
    last: bool = False


@dataclass(frozen=True)
class BotStopped(Frame):
    """The bot's reply stopped: finished, or cut by barge-in after `played_ms` of audio.

    `heard` is the text the caller actually heard: whole sentences played, plus the played share of the
    sentence that was cut (by its audio length), so the dialogue history never claims more than was said.
    """

    reply_id: int
    interrupted: bool
    played_ms: float
    heard: str = ""
    text: str = ""  # the whole reply, so the brain knows which of its replies this was


@dataclass(frozen=True)
class TurnDone(Frame):
    """A caller turn fully answered: everything a call record or `voicebot call --json` needs."""

    record: dict[str, Any]


@dataclass(frozen=True)
class Barrier(Frame):
    """Passes every stage only after the work queued before it: 'everything up to here is done'."""

    tag: str = ""


@dataclass(frozen=True)
class StageError(Frame):
    """A stage failed on one item; the call goes on and the error is reported, never swallowed."""

    stage: str
    message: str


@dataclass(frozen=True)
class CallEnded(Frame):
    reason: str
    actions: tuple[Action, ...] = ()
