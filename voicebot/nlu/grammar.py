"""What an answer of each slot type sounds like, for the recogniser: its prompt, its words, when it fits.

A human agent who has just asked for an order number hears digits, not "for" or "Nero". Whisper can be
told the same three ways, all chosen here by the slot type the dialogue's `ListeningContext` names, so a
domain author adds nothing for the common types:

- a prompt (Whisper's "previous text"): an example answer written the way we want it written back, digits
  as spaced figures for digit strings, so that "four five seven" comes back as "4 5 7" and not "$4.57";
- more than one hypothesis for a slot answer (a short beam), so the dialogue can choose the one that fits;
- for digit strings, a vocabulary: when no hypothesis reads as a digit string of an allowed length, one
  more decode may write only digits, digit words and fillers (see `DecodeHints`).

Free turns (anything may be said) keep the domain's own hints and a single hypothesis, at no extra cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voicebot.asr.base import DecodeHints
from voicebot.frames import ListeningContext
from voicebot.nlu.digits import digit_candidates


@dataclass(frozen=True)
class SlotGrammar:
    prompt: str
    constrained: bool = False  # a digit string: a vocabulary-constrained decode when nothing fits
    keep_hints: bool = True  # keep the domain's vocabulary in the prompt (names, places: yes; digits: no)


_DIGIT_VOCABULARY = (
    *(
        "zero",
        "oh",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "double",
        "triple",
    ),
    *("it's", "its", "is", "it", "my", "the", "number", "order", "invoice", "um", "uh", "yeah", "yes", "so"),
)
GRAMMARS: dict[str, SlotGrammar] = {
    "digits": SlotGrammar("The number is 3 8 1, double 0 6.", constrained=True, keep_hints=False),
    "phone": SlotGrammar("My phone number is 5 5 5, 0 1 4, 2 7 3 9.", constrained=True, keep_hints=False),
    "amount": SlotGrammar("It was $49.99.", keep_hints=False),
    "date": SlotGrammar("On the 3rd of March."),
    "email": SlotGrammar("My email is john.smith@example.com.", keep_hints=False),
    "name": SlotGrammar("My name is"),
    "place": SlotGrammar("It's in"),
}
YES_NO = SlotGrammar("Yes, that's right. No, it isn't.")


def grammar_for(context: ListeningContext | None) -> SlotGrammar | None:
    if context is None:
        return None
    if context.expected == "yes_no":
        return YES_NO
    if context.expected == "slot" and context.slot_type:
        return GRAMMARS.get(context.slot_type)
    return None


@dataclass(frozen=True)
class ExpectedLengths:
    """How many digits the next utterance may hold when a digit string is asked for.

    After a partial number ("4 5 7", a pause) the caller either says the rest ("2 1 9") or, as callers
    often do, starts again and says the whole number ("4 5 7 2 1 9"); both are answers. `low`..`high`
    spans every such length, and `whole` holds the lengths after which the number is complete (the rest
    at its longest, or the whole number at its longest). The recogniser's grammar (`digits_fit`) and the
    turn-end decision (`voicebot.asr.turnend`) read the same lengths, so a number the grammar accepts as
    complete also ends the turn.
    """

    low: int
    high: int
    whole: frozenset[int]

    def fits(self, length: int) -> bool:
        return self.low <= length <= self.high


MAX_DIGITS = 32  # a digit slot without a max_length: longer than any identifier a caller reads out


def expected_lengths(context: ListeningContext) -> ExpectedLengths:
    """The digit-string lengths an answer under `context` may have (see `ExpectedLengths`)."""
    low, high = context.min_length or 1, context.max_length or MAX_DIGITS
    have = len(context.partial or "")
    if not have or have >= high:
        return ExpectedLengths(low, high, frozenset({high}))
    return ExpectedLengths(max(1, low - have), high, frozenset({high - have, high}))


def digits_fit(context: ListeningContext) -> Callable[[str], bool]:
    """Whether a transcript reads as a digit string of the context's length (or the rest of a partial)."""
    lengths = expected_lengths(context)

    def fits(text: str) -> bool:
        return any(lengths.fits(len(c)) for c in digit_candidates(text, lengths.low, lengths.high))

    return fits


def listening_plan(context: ListeningContext | None, hypotheses: int) -> tuple[str | None, DecodeHints]:
    """The prompt and decode hints for one utterance heard under `context` (None: a plain decode).

    `hypotheses` is how many a slot answer gets (the ASR config's `slot_hypotheses`).
    """
    grammar = grammar_for(context)
    if context is None or grammar is None:
        return context_prompt(context), DecodeHints()
    parts = [context.prompt if grammar.keep_hints else None, grammar.prompt, ", ".join(context.hotwords)]
    prompt = " ".join(p for p in parts if p) or None
    if context.expected != "slot":
        return prompt, DecodeHints()
    if not grammar.constrained:
        return prompt, DecodeHints(hypotheses=hypotheses)
    return prompt, DecodeHints(hypotheses=hypotheses, vocabulary=_DIGIT_VOCABULARY, fits=digits_fit(context))


def context_prompt(context: ListeningContext | None) -> str | None:
    """The recogniser's prompt for a free turn: the context's prompt, then its hot words."""
    if context is None:
        return None
    parts = [p for p in (context.prompt, ", ".join(context.hotwords)) if p]
    return " ".join(parts) if parts else None
