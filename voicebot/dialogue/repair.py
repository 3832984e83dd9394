"""Repairing a number the bot already holds, the way a human agent does.

An agent who reads back "8 3 0, 1 1 2" and hears "no, the last one is three" changes that one digit and
carries on; they never ask for the whole number again because one digit was wrong. A number read out with
a pause in the middle ("four five seven … two one nine") is one answer, not two wrong ones. And when the
caller only says the number is wrong, without saying which part, the agent asks for it again.

This module decides *what* is repaired (which slot, what its value becomes); the policy decides what is
said and done next. The digit-level reading lives in `voicebot.nlu.corrections` and `voicebot.nlu.digits`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicebot.dialogue.slots import Filled, strip_lead_in, valid
from voicebot.dialogue.state import DialogueState
from voicebot.domain.dialogue_spec import Slot
from voicebot.domain.loader import Domain
from voicebot.nlu.corrections import apply_correction
from voicebot.nlu.digits import digit_candidates

# "That's wrong", "that's not my order number": something is wrong, and the caller did not say which part.
WRONG = re.compile(r"\b(wrong|incorrect|not (it|right|correct|mine|my \w+))\b", re.I)
# "not 457218, it's 457219": the digits after "not", up to a pause or the words that bring the right ones.
_NOT = re.compile(r"\b(?:not|isn't|wasn't)\b", re.I)
_NOT_END = re.compile(r"[,.;!?]|\b(?:it's|its|it|but|that's)\b", re.I)


@dataclass(frozen=True)
class Target:
    """The number a correction would change: `slot` holding `value`; `rerun` is the flow that just answered
    with it (a correction runs that flow again), None for the flow in progress."""

    slot: str
    value: str
    rerun: str | None = None


def target(domain: Domain, state: DialogueState, done: str | None) -> Target | None:
    """The digit slot the caller may be correcting now: the one being asked (its value, or the value a
    retry just dropped), else one of the current task's, else one of the task that just answered."""
    frame = state.flow
    if frame is not None and state.expecting == "slot":  # only the number asked for: "change the size to
        asking = frame.asking  # a seven" at another slot's prompt is no correction
        if asking is None or not _digits(domain, asking):
            return None
        value = state.slots[asking].value if asking in state.slots else state.forgotten.get(asking)
        return Target(asking, value) if value else None
    if frame is not None and state.expecting == "confirm":
        return _held(domain, state, domain.flows[frame.flow].slot_names(), None)
    if done is not None:
        return _held(domain, state, domain.flows[done].slot_names(), done)
    return None


def _held(domain: Domain, state: DialogueState, names: list[str], rerun: str | None) -> Target | None:
    name = next((n for n in names if _digits(domain, n) and n in state.slots), None)
    return Target(name, state.slots[name].value, rerun) if name is not None else None


def _digits(domain: Domain, name: str) -> bool:
    return domain.slots[name].type == "digits"


def corrected(slot: Slot, held: Target, text: str) -> str | None:
    """The held number with the digits this turn corrects ("the third one is a seven"), or None."""
    fixed = apply_correction(held.value, text)
    return fixed if fixed is not None and fixed != held.value and valid(slot, fixed) else None


def ruled_out(slot: Slot, text: str) -> set[str]:
    """Numbers the caller names as wrong ("no, not 457218"), with every other reading of those words: never
    the new value."""
    if slot.type != "digits":
        return set()
    out: set[str] = set()
    for m in _NOT.finditer(text):
        named = _NOT_END.split(text[m.end() :], maxsplit=1)[0]
        out.update(digit_candidates(named, slot.min_length, slot.max_length))
    return out


def says_wrong(domain: Domain, state: DialogueState, held: Target, text: str) -> bool:
    """The caller says the number is wrong: "that's wrong" when the number is all the bot just read back
    (a confirmation of it alone), else only naming it ("that's not my order", "wrong invoice number", "not
    457218")."""
    if held.value in ruled_out(domain.slots[held.slot], text):
        return True
    if WRONG.search(text) is None:
        return False
    frame = state.flow
    names = domain.flows[frame.flow].slot_names() if held.rerun is None and frame is not None else []
    if names and not any(n in state.slots for n in names if n != held.slot):
        return True
    words = [w for w in held.slot.split("_") if w != "id"] + ["number"]
    return re.search(rf"\b({'|'.join(words)})\b", text, re.I) is not None


def negated(found: Filled, state: DialogueState, names: list[str]) -> list[str]:
    """Slots of `names` whose held value this turn calls wrong ("no, not Leeds") without giving a new one:
    the value goes and the slot is asked for again (a new one, "Bristol, not Leeds", is stored instead)."""
    held = state.values()
    return [n for n, v in found.negated.items() if n in names and n not in found.values and held.get(n) == v]


def start_of_number(slot: Slot, text: str) -> str | None:
    """The digits of a turn that is only the start of a number ("four five seven", then a pause): fewer than
    the slot's shortest value, in a turn of mostly digit words (not "I want to know", read as a 2)."""
    if slot.type != "digits" or slot.min_length is None:
        return None
    words = strip_lead_in(text)
    readings = digit_candidates(words) if words else []
    heard = readings[0] if readings else ""
    if not heard.isdigit() or len(heard) >= slot.min_length or 2 * len(heard) < len(words.split()):
        return None
    return heard


def continue_number(slot: Slot, partial: str, heard: str) -> str:
    """The number so far after this turn's digits: the two joined, or this turn's alone when joined they are
    too long (the caller started again)."""
    joined = partial + heard
    return heard if slot.max_length is not None and len(joined) > slot.max_length else joined
