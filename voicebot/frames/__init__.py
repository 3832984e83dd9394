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

The frames live in four modules by side (`base`, `caller`, `understanding`, `bot`); import them from here.
"""

from voicebot.frames.base import (
    PCM,
    Category,
    ControlFrame,
    DataFrame,
    Direction,
    Frame,
    SystemFrame,
)
from voicebot.frames.bot import (
    Action,
    ActionKind,
    Barrier,
    BotAudio,
    BotReply,
    BotSpeaking,
    BrainTimes,
    CallEnded,
    Cause,
    EndOfStream,
    HoldEnd,
    HoldOff,
    HoldOn,
    HoldReport,
    PlaybackReport,
    TurnDone,
    Understanding,
)
from voicebot.frames.caller import (
    AudioIn,
    BargeIn,
    Decision,
    DTMFDigit,
    HangUp,
    Interruption,
    InterruptionKind,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    StageError,
)
from voicebot.frames.understanding import (
    Expected,
    FinalTranscript,
    ListeningContext,
    NoInput,
    PartialTranscript,
    SpeechTimes,
)

__all__ = [
    "PCM",
    "Action",
    "ActionKind",
    "AudioIn",
    "BargeIn",
    "Barrier",
    "BotAudio",
    "BotReply",
    "BotSpeaking",
    "BrainTimes",
    "CallEnded",
    "Category",
    "Cause",
    "ControlFrame",
    "DTMFDigit",
    "DataFrame",
    "Decision",
    "Direction",
    "EndOfStream",
    "Expected",
    "FinalTranscript",
    "Frame",
    "HangUp",
    "HoldEnd",
    "HoldOff",
    "HoldOn",
    "HoldReport",
    "Interruption",
    "InterruptionKind",
    "ListeningContext",
    "NoInput",
    "PartialTranscript",
    "PlaybackReport",
    "SpeechAudio",
    "SpeechEnded",
    "SpeechStarted",
    "SpeechTimes",
    "StageError",
    "SystemFrame",
    "TurnDone",
    "Understanding",
]
