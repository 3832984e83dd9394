"""Per-call dialogue state: what the caller has told us, what we are doing, and what they actually heard.

Slot values live at call level (an order number given while tracking is reused when the caller then asks
to cancel "it"); flows sit on a stack so a question mid-task can be answered and the task resumed.
The history keeps what the bot said *and* what the caller heard of it after a barge-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Source = Literal["speech", "dtmf", "carry"]
Expecting = Literal["slot", "confirm", "anything_else", "menu"] | None


@dataclass
class SlotValue:
    value: str
    confidence: float
    source: Source
    turn: int


@dataclass
class FlowFrame:
    """One task in progress: which flow, and whether the caller confirmed it."""

    flow: str
    confirmed: bool = False
    asking: str | None = None  # the slot last asked for


@dataclass
class HistoryTurn:
    role: Literal["caller", "bot"]
    text: str
    heard: str | None = None  # bot turns: what was played before a barge-in (None until known)
    interrupted: bool = False
    intent: str | None = None


@dataclass
class DialogueState:
    slots: dict[str, SlotValue] = field(default_factory=dict)
    stack: list[FlowFrame] = field(default_factory=list)
    expecting: Expecting = None
    no_match: int = 0
    no_input: int = 0
    frustrated_turns: int = 0
    turn: int = 0
    dtmf_buffer: str = ""
    dtmf_done: bool = False  # the last keypad entry ended by its length (a trailing # is then ignored)
    partial: str = ""  # the start of a number read with a pause in it ("four five seven" … "two one nine")
    done: str | None = None  # the flow that just answered (its number was read back): open to a correction
    # for one turn ("no, the last digit is three" runs it again)
    forgotten: dict[str, str] = field(default_factory=dict)  # values a retry dropped ("I couldn't find
    # order …"): what a correction of one digit applies to
    last_reply: str = ""
    history: list[HistoryTurn] = field(default_factory=list)
    handoff_reason: str | None = None
    ended: str | None = None

    @property
    def flow(self) -> FlowFrame | None:
        return self.stack[-1] if self.stack else None

    @property
    def asking_rest(self) -> bool:
        """The caller read the start of the number the bot is asking for, then went quiet."""
        return bool(self.partial) and self.expecting == "slot"

    def values(self) -> dict[str, str]:
        return {name: slot.value for name, slot in self.slots.items()}

    def set_slot(self, name: str, value: str, confidence: float, source: Source) -> bool:
        """Store a value; True when it changed an earlier one (a correction)."""
        old = self.slots.get(name)
        self.slots[name] = SlotValue(value, confidence, source, self.turn)
        return old is not None and old.value != value

    def key(self, digit: str, max_length: int | None) -> str | None:
        """One key of a keypad entry: None while collecting (`*` starts again), the entry once `#` or its
        length ends it."""
        if digit == "*":
            self.dtmf_buffer = ""
            return None
        if digit != "#":
            self.dtmf_buffer += digit
            if max_length is None or len(self.dtmf_buffer) < max_length:
                return None
            self.dtmf_done = True
        value, self.dtmf_buffer = self.dtmf_buffer, ""
        return value

    def said(self, text: str) -> None:
        self.history.append(HistoryTurn(role="bot", text=text))
        self.last_reply = text

    def heard(self, text: str, heard: str, interrupted: bool) -> None:
        """Attach what the caller heard to the latest bot turn that said `text` and is not settled yet."""
        for turn in reversed(self.history):
            if turn.role == "bot" and turn.text == text and turn.heard is None:
                turn.heard, turn.interrupted = heard, interrupted
                return

    def reset(self) -> None:
        """'Start over': forget the task and what was said for it, keep the call's history."""
        self.slots.clear()
        self.stack.clear()
        self.expecting = None
        self.no_match = self.no_input = 0
        self.dtmf_buffer = self.partial = ""
        self.done = None
        self.forgotten.clear()
