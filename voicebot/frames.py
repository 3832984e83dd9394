"""Typed frames: the only things that travel between pipeline stages, and how each is scheduled.

Every frame class declares a *category*, and the `Stage` base class schedules by it (no stage lists frame
types for that):

- **system** frames act at once: they overtake the work a stage has queued and survive an interruption
  (caller audio and the VAD's utterance frames, barge-in and the decisions on it, DTMF, hang-up, errors,
  and the frames that go back upstream: `PlaybackReport`, `ListeningContext` and `BotSpeaking`);
- **data** frames keep their order and are dropped when the caller interrupts the bot (the bot's reply and
  its audio: speech the caller talked over is stale);
- **control** frames keep their order and are never dropped (final transcripts, no-input events, turn
  records, barriers, the end of the stream, the end of the call).

Frames flow downstream (caller → bot) except the way back: the transport's playback report (what the caller
actually heard), the dialogue's listening context (what it expects the caller to say next) and whether the
bot is speaking travel upstream. Audio inside the pipeline is mono int16 numpy at a stated rate; times named
`*_at` or kept in `SpeechTimes`/`BrainTimes` are `time.perf_counter()` seconds, `t` is caller-audio time
since the call began.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from voicebot.turns import TurnRecord

PCM = npt.NDArray[np.int16]


class Category(Enum):
    SYSTEM = "system"
    DATA = "data"
    CONTROL = "control"


class Direction(Enum):
    DOWNSTREAM = "downstream"  # caller → bot: audio in, transcripts, replies, audio out
    UPSTREAM = "upstream"  # bot → caller side: playback reports, listening contexts


@dataclass(frozen=True)
class Frame:
    """Base class. Class attributes say how stages treat a frame without naming its type:
    `category` schedules it; `ends_input` makes the VAD close an open utterance before it (everything the
    caller said so far is in); `from_caller` marks caller activity (it stops the no-input clock)."""

    category: ClassVar[Category] = Category.CONTROL
    ends_input: ClassVar[bool] = False
    from_caller: ClassVar[bool] = False

    @property
    def interrupts(self) -> bool:
        """Whether this frame cuts the bot off (drops queued speech, stops the reply playing)."""
        return False


@dataclass(frozen=True)
class SystemFrame(Frame):
    category: ClassVar[Category] = Category.SYSTEM


@dataclass(frozen=True)
class DataFrame(Frame):
    category: ClassVar[Category] = Category.DATA


@dataclass(frozen=True)
class ControlFrame(Frame):
    category: ClassVar[Category] = Category.CONTROL


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
