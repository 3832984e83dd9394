"""How long a pause ends the caller's turn: a decision from what was said, not a fixed timer.

Waiting a fixed `vad.end_silence_ms` (500 ms) after every utterance was most of the bot's reply delay, yet
many turns are plainly over sooner ("Yes.", the six digits the bot asked for, "I'd like to cancel my
order." said with a falling voice), and some are plainly not ("four five seven" of six digits, "and…",
"my order number is", "um"), where 500 ms cuts the caller off. At each candidate pause the listener has the
speculative transcript, the dialogue's `ListeningContext` and, optionally, the smart-turn audio model's
probability; `decide` turns them into the pause this turn needs (`TurnConfig`, every value with its
reason), and the turn ends once the caller has been silent that long. Measured in docs/benchmarks.md
"turns" (scripts/bench_turns.py), which calls `decide` too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from voicebot.config import TurnConfig
from voicebot.frames import ListeningContext
from voicebot.nlu.digits import digit_candidates
from voicebot.nlu.grammar import expected_lengths, grammar_for

# Words after which an English sentence almost never ends: articles, possessives, prepositions,
# conjunctions, auxiliaries, fillers. Not the pronouns and auxiliaries that close short answers ("Thank
# you.", "Yes, I do.", "I'd like to return it.").
CONTINUES = frozenset(
    """a an the my your our their his her its some any
    and or but because if then than when while to of for from in on at by with about into as
    is are was were be been it's i'm i i'd i'll we we're you're he she they
    want need like
    um uh er erm hmm mm ah""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[a-z']+|\d+")
_NUMBER_WORDS = frozenset(
    """zero oh one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty
    sixty seventy eighty ninety hundred thousand double triple""".split()  # noqa: SIM905
)


def sounds_complete(text: str) -> bool:
    """True when `text` ends like a finished sentence: terminal punctuation and a last word that neither
    asks for more nor is part of a number."""
    stripped = text.strip()
    if not stripped or stripped.endswith(("...", "…", ",", "-")) or stripped[-1] not in ".?!":
        return False
    words = _WORD.findall(stripped.lower())
    if not words:
        return False
    last = words[-1]
    if stripped.endswith("?"):  # a question is asked ("What is it about?"), unless it ends on a number
        return not (last.isdigit() or last in _NUMBER_WORDS)
    return not (last.isdigit() or last in CONTINUES or last in _NUMBER_WORDS)


# A whole answer to a yes/no question: every word one of these.
YES_NO_WORDS = frozenset(
    """yes yeah yep yup no nope nah correct right sure okay ok that's it is isn't not wrong please thanks
    thank you absolutely exactly definitely""".split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Verdict:
    """The pause after which this turn is over, and why (logged in the turn record)."""

    pause_ms: float
    reason: str


# Words a sentence next to never ends on, so a pause after them is a pause inside the turn: worth the long
# wait. Narrower than CONTINUES ("Thank you.", "Can you do that?" end on words that list holds).
HOLDS = frozenset(
    """a an the my your our their his her and or but because if than of from to with into by
    in on at for about is are was were um uh er erm hmm""".split()  # noqa: SIM905
)
# A greeting alone is the start of a request: the bot has greeted the caller already ("Hi, … I'd like a
# refund.").
GREETINGS = frozenset("hi hello hey hiya morning afternoon evening good there".split())  # noqa: SIM905


def trails_off(text: str) -> bool:
    """Ends on a word or mark that asks for more: "and", "my order number is", "um", "…", a comma."""
    stripped = text.strip()
    if stripped.endswith(("...", "…", ",", "-")):
        return True
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in HOLDS and not stripped.endswith("?")


def _numeric(words: Sequence[str]) -> bool:
    """Whether the best reading says any part of a number. A finished sentence that does not ("Yes,
    please.", "I don't have it.") is no number read in groups: the sentence rules judge it, not the hold
    for more digits, which kept it waiting 1.5 s in bench_calls (the constrained alternative is not asked:
    it writes digits for any sound)."""
    return any(w.isdigit() or w in _NUMBER_WORDS for w in words)


def _number_verdict(
    texts: Sequence[str], context: ListeningContext, turn: TurnConfig, unsure: float
) -> Verdict:
    """A digit string was asked for: over once a reading has all its digits (the rest of a partial number
    or the whole number said again), held open while it is short."""
    expected = expected_lengths(context)
    lengths = {len(c) for text in texts for c in digit_candidates(text, expected.low, expected.high)}
    if lengths & expected.whole:
        return Verdict(turn.complete_ms, "number complete")
    if any(expected.fits(n) for n in lengths):
        return Verdict(unsure, "number may go on")
    return Verdict(max(turn.hold_ms, context.end_silence_ms or 0), "number incomplete")


def decide(
    text: str,
    context: ListeningContext | None,
    turn: TurnConfig,
    unsure_ms: float,
    alternatives: Sequence[str] = (),
    audio_p: float | None = None,
) -> Verdict:
    """The pause this turn needs, from its speculative transcript (and n-best `alternatives`), what the
    dialogue expects (`context`) and the audio model's P(complete) (None: not run). `unsure_ms` is the
    plain endpointer pause (`vad.end_silence_ms`), for turns none of the signals settle."""
    grammar = grammar_for(context)
    words = _WORD.findall(text.lower())
    digits = (
        context is not None and context.expected == "slot" and grammar is not None and grammar.constrained
    )
    if context is not None and digits and (_numeric(words) or not sounds_complete(text)):
        return _number_verdict([text, *alternatives], context, turn, unsure_ms)
    if not words:  # speech without words: "um", or a noise the ASR rejects (no reply either way)
        return Verdict(turn.hold_ms, "no words")
    if trails_off(text):
        return Verdict(turn.hold_ms, "trails off")
    if set(words) <= GREETINGS:
        return Verdict(turn.hold_ms, "greeting")
    if context is not None and context.expected == "yes_no" and set(words) <= YES_NO_WORDS:
        return Verdict(turn.complete_ms, "yes/no answer")
    if audio_p is not None and audio_p < turn.audio_goes_on:
        return Verdict(turn.hold_ms, "voice goes on")
    if not sounds_complete(text):
        return Verdict(unsure_ms, "unsure")
    if audio_p is None:
        return Verdict(turn.text_complete_ms, "sentence complete")
    if audio_p >= turn.audio_threshold:
        return Verdict(turn.complete_ms, "sentence and voice complete")
    return Verdict(unsure_ms, "voice unsure")
