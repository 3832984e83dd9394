"""Whether a transcript sounds like a finished turn: the signal that lets a call end its turn early.

Waiting `vad.end_silence_ms` (500 ms) after every utterance is the largest single part of a voice bot's
reply delay, yet most turns are plainly over sooner: "I'd like to cancel my order." When the speculative
decode taken at the first pause reads as a complete sentence, the turn ends after `vad.turn_end_silence_ms`
instead. A transcript that trails off on a word that needs more ("my order number is", "and", "um") or on a
number (callers read digits in groups, with pauses between) waits for the full silence.
"""

from __future__ import annotations

import re

# Words after which an English sentence almost never ends: articles, possessives, prepositions,
# conjunctions, auxiliaries, fillers.
CONTINUES = frozenset(
    """a an the my your our their his her its this that these those some any
    and or but so because if then than when while to of for from in on at by with about into as
    is are was were be been am it's i'm i i'd i'll we we're you you're he she they
    can could would will should do does did have has had want need like
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
    return not (last.isdigit() or last in CONTINUES or last in _NUMBER_WORDS)
