"""Frames of the bot's side (replies, audio, playback reports, hold audio) and the bookkeeping at the end of a
turn or a call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from voicebot.frames.base import PCM, ControlFrame, DataFrame, SystemFrame
from voicebot.frames.understanding import FinalTranscript

if TYPE_CHECKING:
    from voicebot.turns import TurnRecord

# --- the bot's side -----------------------------------------------------------------------------------

ActionKind = Literal["speak", "transfer", "hangup"]
Cause = Literal["greeting", "speech", "text", "dtmf", "no_input", "event"]  # what a reply answers


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    target: str | None = None
    reason: str | None = None
    code: str | None = None  # a transfer's reason as a code (`voicebot.handoff.REASONS`); `reason` says it

    def as_json(self) -> dict[str, str | None]:
        return {"kind": self.kind, "target": self.target, "reason": self.reason}


@dataclass(frozen=True)
class Understanding:
    """What the brain made of a caller turn, for the turn record (personal data already masked).

    `extra` holds whatever else a brain wants on its records; its keys sit beside the typed ones in JSON.
    """

    intent: str | None = None
    confidence: float | None = None
    entities: dict[str, Any] = field(default_factory=dict)
    sentiment: str | None = None
    frustration: float | None = None
    answer_id: str | None = None
    flow: str | None = None
    expecting: str | None = None
    slots: dict[str, Any] = field(default_factory=dict)
    act: str | None = None
    action: str | None = None
    action_result: Any = None
    handoff_reason: str | None = None
    dtmf: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def parsed(self) -> bool:
        """An NLU parse went into it (every parse has an intent); else it records only an act or a key."""
        return self.intent is not None


@dataclass(frozen=True)
class BrainTimes:
    """When the brain worked on a turn (wall clock); None for what it did not do."""

    started: float | None = None
    nlu_done: float | None = None
    action_started: float | None = None
    action_done: float | None = None
    decided: float | None = None


@dataclass(frozen=True)
class BotReply(DataFrame):
    """What the brain decided for one caller event. `interruptible=False` protects e.g. legal notices.

    The brain fills what it knows (`understanding`, `times.nlu_done`/`action_*`); the brain stage adds the
    caller turn it answers (`transcript`), what caused it (`cause`) and when it started and decided.
    """

    text: str
    actions: tuple[Action, ...] = ()
    understanding: Understanding | None = None
    times: BrainTimes = field(default_factory=BrainTimes)
    interruptible: bool = True
    transcript: FinalTranscript | None = None
    cause: Cause = "event"


@dataclass(frozen=True)
class BotAudio(DataFrame):
    """One transport frame of bot speech at the channel rate. `last` marks the end of a reply."""

    pcm: PCM
    sentence: str
    reply_id: int
    last: bool = False


@dataclass(frozen=True)
class PlaybackReport(SystemFrame):
    """How far a reply got on the caller's side: the one account of what the caller heard.

    Sent when the reply stops (played to its end, cut by barge-in, or never played because the caller hung
    up), upstream to the brain (dialogue history) and downstream to the turn record. `played_ms` is what the
    transport says was played (Twilio marks, AudioSocket's pacer, the browser's clock); `heard` is the
    whole sentences played plus the played share of the one that was cut. `started_at`: when the speak
    stage took the reply up; `synthesized_at`/`sent_at`: when its first audio was made and went out to the
    line (None if it never did).
    """

    reply_id: int
    text: str
    played_ms: float
    interrupted: bool
    heard: str
    started_at: float | None = None
    synthesized_at: float | None = None
    sent_at: float | None = None


@dataclass(frozen=True)
class BotSpeaking(SystemFrame):
    """Upstream from the speak stage: reply `reply_id` started (`speaking`) or stopped playing. While the
    bot speaks, the listener takes caller speech as maybe a backchannel (`voicebot.asr.bargein`)."""

    speaking: bool
    reply_id: int = 0
    interruptible: bool = True


@dataclass(frozen=True)
class HoldOn(DataFrame):
    """The brain has worked on a caller turn for `hold.after_ms` with no answer yet (a slow action or back
    end): the speak stage keeps the caller company, the spoken filler `text` and then soft hold audio,
    until the answer's first audio is ready. Data: a caller who talks first makes it stale. `since`: when
    the brain started on the turn."""

    text: str
    since: float


@dataclass(frozen=True)
class HoldOff(ControlFrame):
    """The brain finished the turn `HoldOn` was sent for without a reply to speak: the hold stops now. (A
    reply stops it itself, once its first audio is ready.) Control: it stays in order behind its `HoldOn`."""


HoldEnd = Literal["answer", "barge_in", "hang_up", "no_answer", "call_ended"]


@dataclass(frozen=True)
class HoldReport(SystemFrame):
    """What the caller heard while the brain worked, sent downstream when the hold stops (the turn record
    of the reply that follows carries it). `filler_heard`: the filler's words the caller's side played
    (all, or the played share when the answer or a barge-in cut it); `filler_ms`/`hold_audio_ms`: how much
    of each was played; `started_ms`/`waited_ms`: from the brain starting on the turn to the hold's first
    audio and to its end; `ended`: what stopped it."""

    reply_id: int
    filler: str
    filler_heard: str
    filler_ms: float
    hold_audio_ms: float
    started_ms: float | None
    waited_ms: float
    ended: HoldEnd

    def as_json(self) -> dict[str, Any]:
        return {
            "filler": self.filler,
            "filler_heard": self.filler_heard,
            "filler_ms": self.filler_ms,
            "hold_audio_ms": self.hold_audio_ms,
            "started_ms": self.started_ms,
            "waited_ms": self.waited_ms,
            "ended": self.ended,
        }


# --- bookkeeping --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnDone(ControlFrame):
    """A turn fully answered: its record, the one typed account that records, metrics and benchmarks read."""

    record: TurnRecord


@dataclass(frozen=True)
class Barrier(ControlFrame):
    """Passes every stage only after the work queued before it: 'everything up to here is done'."""

    ends_input: ClassVar[bool] = True
    tag: str = ""


@dataclass(frozen=True)
class EndOfStream(ControlFrame):
    """No more caller input: every stage finishes what it has queued, then the call ends with `reason`."""

    ends_input: ClassVar[bool] = True
    reason: str = "caller hung up"


@dataclass(frozen=True)
class CallEnded(ControlFrame):
    reason: str
    actions: tuple[Action, ...] = ()
