"""From a parse to slot values: entity → slot mapping, validation, and reading a whole answer.

When the bot has just asked for an order number and the caller says only "eight three oh one one two",
the tagger may or may not mark it; the whole utterance is then read with the slot's own normaliser. Values
that fail the slot's validation are reported as invalid, never stored.

A heard number can stand for several ("for five seven to one nine", a doubled digit said once too often),
and the recogniser's other hypotheses add more: a digit slot takes every reading that is valid for it, and
when the slot names a `lookup` action the first reading the back end knows wins (`SlotReader.pick`), as a
person would check the number on screen before reading it back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from voicebot.dialogue.actions import ActionFailed, Actions
from voicebot.domain.dialogue_spec import Slot
from voicebot.domain.loader import Domain
from voicebot.nlu.digits import digit_candidates
from voicebot.nlu.normalise import normalise, spoken_alnum
from voicebot.nlu.parser import Parse

log = logging.getLogger("voicebot.dialogue")
MAX_LOOKUPS = 4  # back-end look-ups per heard number: the first few readings are the likely ones

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
# "Bristol, not Leeds", "instead of Leeds", "not in Leeds": a value after these is the one the caller says
# is wrong (the bot read it back), never a value to store.
_NEGATED = re.compile(r"\b(?:not|instead\s+of|rather\s+than)\s+(?:(?:a|an|the|in|to|at|for)\s+)?$", re.I)


def valid(slot: Slot, value: str) -> bool:
    if slot.min_length is not None and len(value) < slot.min_length:
        return False
    if slot.max_length is not None and len(value) > slot.max_length:
        return False
    return slot.pattern is None or re.fullmatch(slot.pattern, value) is not None


def negated(text: str, start: int) -> bool:
    """The words before `text[start:]` name what follows as the wrong value ("…, not Leeds")."""
    return _NEGATED.search(text[:start]) is not None


def strip_lead_in(text: str) -> str:
    """The turn without the words that lead into an answer ("no, it's …", "yeah um …")."""
    return _LEAD_IN.sub("", text.strip())


def read_whole(slot: Slot, text: str) -> str | None:
    """The caller's whole turn as a value of `slot` (the answer to a question about it), or None.

    A digit slot takes its first valid reading, else the best reading (reported invalid by the caller)."""
    # "no, it's four five seven…", "yeah um Leeds"
    text = text.strip() if slot.type == "text" else strip_lead_in(text)
    if not text:
        return None
    if slot.type == "text":
        return text
    if slot.type == "digits":
        readings = _digit_readings(slot, text)
        return next((r for r in readings if valid(slot, r)), readings[0] if readings else None)
    if slot.type == "alnum":
        return spoken_alnum(text)
    if slot.type in ("name", "place") and len(text.split()) > _SHORT_ANSWER_WORDS:
        return None
    return normalise(_READER[slot.type], text)


def _digit_readings(slot: Slot, text: str) -> list[str]:
    """What a transcript may stand for as this slot's digits, best first (the normaliser's reading last,
    for what the candidate reader does not cover)."""
    found = digit_candidates(text, min_length=slot.min_length, max_length=slot.max_length)
    plain = normalise("digits", text)
    return _unique([*found, *([plain] if plain else [])])


def read_options(slot: Slot, texts: Iterable[str]) -> list[str]:
    """Every valid value of `slot` the turn's transcripts give (best hypothesis first), without repeats."""
    out: list[str] = []
    for text in texts:
        if slot.type == "digits":
            stripped = strip_lead_in(text)
            out += [r for r in _digit_readings(slot, stripped) if valid(slot, r)] if stripped else []
        else:
            value = read_whole(slot, text)
            out += [value] if value is not None and valid(slot, value) else []
    return _unique(out)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


@dataclass
class Filled:
    filled: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)  # every valid reading, when there are several
    negated: dict[str, str] = field(default_factory=dict)  # a value the caller said is wrong ("not Leeds")


def from_entities(domain: Domain, parse: Parse, prefer: list[str] | None = None) -> Filled:
    """Every slot of the domain that an entity of this turn fills (several entities in one turn).

    The tagger sometimes gets the span right but the type wrong ("four five seven two one nine" as a phone
    number while the bot is asking for an order number). A span whose own type gives no valid value is
    then read as each `prefer`red slot (the current task's) of the same kind, and the first valid one wins.
    A value the caller negates ("Bristol, not Leeds") fills nothing: it goes to `negated`.
    """
    out = Filled()
    for entity in parse.entities:
        direct = [n for n, slot in domain.slots.items() if (slot.entity or n) == entity.type]
        if negated(parse.text, entity.start):
            for name in direct:
                wrong = _entity_options(domain.slots[name], entity.value, entity.raw)
                out.negated.update({name: wrong[0]} if wrong else {})
            continue
        good = False
        for name in direct:
            options = _entity_options(domain.slots[name], entity.value, entity.raw)
            if options:
                out.values[name], good = options[0], True
                if len(options) > 1:
                    out.options[name] = options
        if good:
            continue
        kinds = {_FAMILY.get(domain.slots[n].type, domain.slots[n].type) for n in direct} or {"number"}
        retyped = [
            n
            for n in prefer or []
            if n not in direct and _FAMILY.get(domain.slots[n].type, domain.slots[n].type) in kinds
        ]
        for name in retyped:
            options = _entity_options(domain.slots[name], None, entity.raw, retyped=True)
            if options and name not in out.values:
                out.values[name] = options[0]
                if len(options) > 1:
                    out.options[name] = options
                break
        else:
            out.invalid += direct
    return out


def _entity_options(slot: Slot, value: str | None, raw: str, retyped: bool = False) -> list[str]:
    """The valid values an entity gives `slot`: the tagger's own value first, then the readings of its
    words (a digit slot's, or any slot's for a span the tagger typed as something else)."""
    first = [value] if not retyped and value is not None and valid(slot, value) else []
    if slot.type != "digits" and not retyped:
        return first
    return _unique([*first, *read_options(slot, [raw])])


class SlotReader:
    """Slot values of a turn, with the back end's word on which reading of a heard number exists."""

    def __init__(self, domain: Domain, actions: Actions, call_id: str) -> None:
        self.domain, self.actions, self.call_id = domain, actions, call_id

    async def entities(
        self, parse: Parse, prefer: list[str] | None = None, heard: Iterable[str] = ()
    ) -> Filled:
        """`from_entities`, each slot with several readings set to the one the back end knows. A digit
        slot's readings include those of the whole turn in every hypothesis `heard`: the tagger marks one
        span of the best transcript ("It's for 00536"), the number said may be in another ("for double
        536")."""
        found = from_entities(self.domain, parse, prefer)
        texts = list(heard)
        for name, value in found.values.items():
            slot = self.domain.slots[name]
            options = found.options.get(name, [value])
            if slot.type == "digits" and slot.lookup is not None and texts:
                wrong = found.negated.get(name)  # "457219, not 457218": never the number said to be wrong
                heard_options = _unique([*options, *read_options(slot, texts)])
                options = [o for o in heard_options if o != wrong] or [value]
            if len(options) > 1:
                found.values[name] = await self.pick(name, options)
        return found

    async def read(self, name: str, texts: Iterable[str], exclude: Collection[str] = ()) -> list[str]:
        """Valid values of slot `name` in the whole turn's transcripts, the one the back end knows first;
        never one of `exclude` (a number the caller said is wrong)."""
        options = [o for o in read_options(self.domain.slots[name], texts) if o not in exclude]
        return _unique([await self.pick(name, options), *options]) if options else []

    async def pick(self, name: str, options: list[str]) -> str:
        """The first option the back end knows (at most `MAX_LOOKUPS` asked), else the first option: the
        flow's own action then says it does not know it. One option, or no `lookup`, asks nothing."""
        lookup = self.domain.slots[name].lookup
        if lookup is None or len(options) < 2:
            return options[0]
        for value in options[:MAX_LOOKUPS]:
            try:
                if (await self.actions.call(lookup, {name: value}, self.call_id)).ok:
                    return value
            except ActionFailed as exc:  # the flow's own action meets the same trouble and says so
                log.warning("call %s: look-up %s failed: %s", self.call_id, lookup, exc)
                break
        return options[0]
