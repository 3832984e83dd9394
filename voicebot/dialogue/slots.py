"""From a parse to slot values: entity → slot mapping, validation, and reading a whole answer.

When the bot has just asked for an order number and the caller says only "eight three oh one one two",
the tagger may or may not mark it; the whole utterance is then read with the slot's own normaliser. Values
that fail the slot's validation are reported as invalid, never stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from voicebot.domain.dialogue_spec import Slot
from voicebot.domain.loader import Domain
from voicebot.nlu.normalise import normalise, spoken_alnum
from voicebot.nlu.parser import Parse

# Slot type → the entity-type parser that reads it (voicebot.nlu.normalise).
_READER = {
    "digits": "digits",
    "amount": "amount",
    "date": "date",
    "name": "person_name",
    "place": "delivery_city",
    "email": "email",
    "phone": "phone",
}
_FAMILY = {"digits": "number", "phone": "number", "alnum": "number"}  # spans the tagger confuses
_SHORT_ANSWER_WORDS = 4  # a bare name or place is a short answer; a longer turn is a sentence about it
_LEAD_IN = re.compile(
    r"^(?:(?:no|nope|yes|yeah|yep|sorry|actually|okay|ok|oh|um|uh|so|well|right)\b[\s,.!]*)+", re.I
)


def valid(slot: Slot, value: str) -> bool:
    if slot.min_length is not None and len(value) < slot.min_length:
        return False
    if slot.max_length is not None and len(value) > slot.max_length:
        return False
    return slot.pattern is None or re.fullmatch(slot.pattern, value) is not None


def read_whole(slot: Slot, text: str) -> str | None:
    """The caller's whole turn as a value of `slot` (the answer to a question about it), or None."""
    text = text.strip()
    if slot.type != "text":
        text = _LEAD_IN.sub("", text)  # "no, it's four five seven…", "yeah um Leeds"
    if not text:
        return None
    if slot.type == "text":
        return text
    if slot.type == "alnum":
        return spoken_alnum(text)
    if slot.type in ("name", "place") and len(text.split()) > _SHORT_ANSWER_WORDS:
        return None
    return normalise(_READER[slot.type], text)


@dataclass
class Filled:
    filled: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)


def from_entities(domain: Domain, parse: Parse, prefer: list[str] | None = None) -> Filled:
    """Every slot of the domain that an entity of this turn fills (several entities in one turn).

    The tagger sometimes gets the span right but the type wrong ("four five seven two one nine" as a phone
    number while the bot is asking for an order number). A span whose own type gives no valid value is
    then read as each `prefer`red slot (the current task's) of the same kind, and the first valid one wins.
    """
    out = Filled()
    for entity in parse.entities:
        direct = [n for n, slot in domain.slots.items() if (slot.entity or n) == entity.type]
        good = [n for n in direct if entity.value is not None and valid(domain.slots[n], entity.value)]
        for name in good:
            out.values[name] = entity.value or ""
        if good:
            continue
        kinds = {_FAMILY.get(domain.slots[n].type, domain.slots[n].type) for n in direct} or {"number"}
        retyped = [
            n
            for n in prefer or []
            if n not in direct and _FAMILY.get(domain.slots[n].type, domain.slots[n].type) in kinds
        ]
        for name in retyped:
            value = read_whole(domain.slots[name], entity.raw)
            if value is not None and valid(domain.slots[name], value) and name not in out.values:
                out.values[name] = value
                break
        else:
            out.invalid += direct
    return out
