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
    dtmf_seed: int = 0  # how many digits at the start of dtmf_buffer were spoken, not typed (see `key`)
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
        """The caller said or typed the start of the number the bot is asking for, then went quiet."""
        return bool(self.number_so_far()) and self.expecting == "slot"

    def values(self) -> dict[str, str]:
        return {name: slot.value for name, slot in self.slots.items()}

    def set_slot(self, name: str, value: str, confidence: float, source: Source) -> bool:
        """Store a value; True when it changed an earlier one (a correction)."""
        old = self.slots.get(name)
        self.slots[name] = SlotValue(value, confidence, source, self.turn)
        return old is not None and old.value != value

    def key(self, digit: str, max_length: int | None) -> str | None:
        """One key of a keypad entry: None while collecting (`*` starts again), the entry once `#` or its
        length ends it.

        A caller who said the start of the number ("four five seven", a pause) and goes on on the keypad
        continues it: the spoken digits start the entry. Unless the keys start the number again: keys that
        repeat the spoken start, or would make it too long, are the entry alone; while they could still be
        such a repeat, the length does not end the entry (# does).
        """
        if digit == "*":
            self.dtmf_buffer, self.dtmf_seed, self.partial = "", 0, ""
            return None
        if self.partial and not self.dtmf_buffer:
            self.dtmf_buffer, self.dtmf_seed = self.partial, len(self.partial)
        self.partial = ""
        if digit != "#":
            self.dtmf_buffer += digit
            if not self._typed_on(max_length):
                return None
            self.dtmf_done = True
        value, self.dtmf_buffer, self.dtmf_seed = self.dtmf_buffer, "", 0
        return value

    def _typed_on(self, max_length: int | None) -> bool:
        """Whether the entry is complete by its length, the spoken start dropped when the keys repeat it."""
        if self.dtmf_seed:
            spoken, typed = self.dtmf_buffer[: self.dtmf_seed], self.dtmf_buffer[self.dtmf_seed :]
            if typed == spoken or (max_length is not None and len(self.dtmf_buffer) > max_length):
                self.dtmf_buffer, self.dtmf_seed = typed, 0  # started again on the keypad
            elif spoken.startswith(typed):
                return False  # may yet be the start said again
        return max_length is not None and len(self.dtmf_buffer) >= max_length

    def number_so_far(self) -> str:
        """The start of the number being asked for, spoken or typed: the next spoken turn continues it."""
        return self.partial or self.dtmf_buffer

    def take_number_so_far(self) -> str:
        """`number_so_far`, handed to a spoken turn (which continues it or drops it)."""
        so_far = self.number_so_far()
        self.partial = self.dtmf_buffer = ""
        self.dtmf_seed = 0
        return so_far

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
        self.dtmf_seed = 0
        self.done = None
        self.forgotten.clear()
