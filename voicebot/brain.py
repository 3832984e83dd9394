"""The `Brain` protocol: what the pipeline asks on every caller turn, and a diagnostic default.

The pipeline knows nothing about intents or dialogue; it hands the brain final transcripts, DTMF digits,
call events and playback reports (what the caller heard of each reply), speaks whatever `BotReply` comes
back, and before each caller turn asks the brain what it is listening for (`listening_context`). The
dialogue engine plugs in here. Until a domain is configured, `EchoBrain` says back what it heard, which is
exactly what one wants when checking a phone line's audio path end to end.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from voicebot.frames import (
    Action,
    BotReply,
    DTMFDigit,
    FinalTranscript,
    Frame,
    HangUp,
    ListeningContext,
    NoInput,
    PlaybackReport,
    Understanding,
)

BrainInput = FinalTranscript | DTMFDigit | PlaybackReport | HangUp | NoInput


class Brain(Protocol):
    """One instance per call: it owns that call's conversation state.

    `no_input_s`: seconds of caller silence after the bot stops talking before a `NoInput` event arrives
    (live calls only; None = never). Offline runs drive no-input explicitly instead of waiting.
    """

    no_input_s: float | None

    def greeting(self) -> BotReply | None: ...

    async def handle(self, event: BrainInput) -> BotReply | None:
        """Return what to say/do, or None to stay silent (e.g. a cough produced an empty transcript)."""
        ...

    def listening_context(self) -> ListeningContext | None:
        """What the caller's next turn is expected to be (asked before each one); None: anything."""
        ...


BrainFactory = Callable[[], Brain]


@runtime_checkable
class HasFixedPhrases(Protocol):
    """A brain that knows the fixed text of its replies (templates, FAQ answers), so the gateway can
    synthesise them before the first caller waits for them."""

    def fixed_phrases(self) -> list[str]: ...


@runtime_checkable
class HasFiller(Protocol):
    """A brain whose domain words its own filler for a slow turn ("One moment…", `hold.filler` else)."""

    def filler(self) -> str | None: ...


_STILL_THERE = "Are you still there? Say something and I will repeat it."
_GOODBYE = re.compile(r"\b(good ?bye|bye|hang up|that's all)\b", re.IGNORECASE)


class EchoBrain:
    """Repeats the caller's words; 'goodbye' ends the call. Records what the caller actually heard."""

    def __init__(self) -> None:
        self.no_input_s: float | None = None
        self.heard: list[PlaybackReport] = []
        self.ended: str | None = None

    def greeting(self) -> BotReply | None:
        return BotReply(
            text="Hello, you are talking to an automated assistant. Say something and I will repeat it."
        )

    def fixed_phrases(self) -> list[str]:
        return ["Goodbye.", _STILL_THERE]

    def listening_context(self) -> ListeningContext | None:
        return ListeningContext()

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, FinalTranscript):
            if not event.text:
                return None
            if _GOODBYE.search(event.text):
                return BotReply(text="Goodbye.", actions=(Action("hangup", reason="caller said goodbye"),))
            return BotReply(text=f"You said: {event.text}")
        if isinstance(event, DTMFDigit):
            return BotReply(text=f"You pressed {event.digit}.", understanding=Understanding(dtmf=True))
        if isinstance(event, PlaybackReport):
            self.heard.append(event)
            return None
        if isinstance(event, NoInput):
            return BotReply(text=_STILL_THERE)
        self.ended = event.reason
        return None


def is_brain_input(frame: Frame) -> bool:
    return isinstance(frame, FinalTranscript | DTMFDigit | PlaybackReport | HangUp | NoInput)
