"""Partial corrections of a digit string the bot read back: "no, the last digit is a nine".

A caller who hears one wrong digit in the read-back corrects it the way they would with a human agent: by
position ("the third one is a seven", "the second to last is a one", "the last two are one eight"), by edge
("it ends in two one eight", "it starts with four five eight"), or by swapping digits ("two one eight, not
two one nine", "change the five to a six"). Asking for the whole number again would throw away the digits
that were right, so `apply_correction` applies the correction to the current value. A whole new number of
the same length is not a partial correction (the dialogue reads those as a new number), and a correction
that does not fit the current value (a position past its end, a digit that is not in it or is in it twice)
gives None, so the dialogue asks again rather than guessing. Digits are read with `voicebot.nlu.digits`,
homophones included, since the caller is known to be talking about digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from voicebot.nlu.digits import PAUSE, digit_tokens, read_digit_words
from voicebot.nlu.numbers import HESITATIONS, read_cardinal, read_ordinal, word_set

_NOISE = HESITATIONS | word_set(
    "no nope sorry actually the a an it it's its that that's thats well so okay ok yeah yes please i i'm "
    "mean said think just wait hang thanks thank you oops my bad"
)
"""Words that never carry a correction; dropped before parsing."""
_LINKS = word_set(
    "digit digits number numbers is are was were should be must will has have to needs need become "
    "becomes meant supposed really actually at in with on of"
)
"""Words between a position or edge and its new digits ("the last one should be a nine")."""
_CUTS = word_set("not instead rather but")
"""Words after which the caller restates the wrong digits: "a nine, not an eight"."""
_VERBS = word_set("is was should must becomes become needs")
"""Verbs joining old digits to new ones: "the five should be a six", "the 2 is actually a 3"."""
_INTO = word_set("to into for with by")
"""Prepositions after "change X": "change the five to a six"."""
_END_WORDS = word_set("end ends ending ended finishes finishing back")
_START_WORDS = word_set("start starts starting started begins begin beginning front")
_FROM_END = word_set("last final end")


def apply_correction(current: str, text: str) -> str | None:
    """`current` with the digits the caller corrected in `text` changed; None when `text` corrects no digits.

    The result always has the length of `current`. A whole number of that length in `text` is not a partial
    correction and gives None, as do positions past the end and digits to change that `current` lacks or
    holds more than once.
    """
    if not current.isdigit():
        return None
    toks = [t for t in (w.lower() for w in digit_tokens(text)) if t not in _NOISE]
    readers: tuple[Callable[[str, list[str]], str | None], ...] = (_by_position, _by_edge, _by_swap)
    for reader in readers:
        got = reader(current, toks)
        if got is not None and len(got) == len(current):
            return got
    return None


def _value(toks: Sequence[str]) -> str | None:
    """New digits after a position or edge: link words before them and a restated old value after go."""
    toks = [t for t in toks if t != PAUSE]
    for k, t in enumerate(toks):
        if t in _CUTS:
            toks = toks[:k]
            break
    while len(toks) > 1 and toks[0] in _LINKS:
        toks = toks[1:]
    return read_digit_words(toks)


def _tail_value(toks: Sequence[str]) -> str | None:
    """The longest digit run ending the tokens ("one one two" of "no one one two at"), link words dropped."""
    toks = [t for t in toks if t != PAUSE]
    while toks and toks[-1] in _LINKS:
        toks = toks[:-1]
    for k in range(len(toks)):
        if (got := read_digit_words(toks[k:])) is not None:
            return got
    return None


def _position(toks: Sequence[str], k: int, size: int) -> tuple[int, int] | None:
    """The digit index a position phrase at toks[k] names (negative from the end) and the index after it."""
    t = toks[k]
    nxt = toks[k + 1 : k + 3]
    if t == "penultimate":
        return -2, k + 1
    if t in ("last", "final"):
        return (-2, k + 3) if nxt == ["but", "one"] else (-1, k + 1)
    if t == "next" and nxt[:2] == ["to", "last"]:
        return -2, k + 3
    got = read_ordinal(toks, k)
    if got is None or not 1 <= got[0] <= size:
        return None
    j = got[1]
    if j < len(toks) and toks[j] in ("to", "from") and j + 1 < len(toks) and toks[j + 1] in _FROM_END:
        return -got[0], j + 2
    if j < len(toks) and toks[j] in ("last", "final"):
        return -got[0], j + 1
    return got[0] - 1, j


def _by_position(current: str, toks: list[str]) -> str | None:
    """ "the third one is a seven", "the second to last is a one", "the last two are one eight"."""
    size = len(current)
    for k in range(len(toks)):
        got = _position(toks, k, size)
        if got is None:
            continue
        pos, j = got
        j += j < len(toks) and toks[j] in ("one", "ones")  # "the last one", never the digit 1
        count = read_cardinal(toks, j) if toks[k] in ("first", "last", "final") and j < len(toks) else None
        if count is not None and 2 <= count[0] < size:  # "the last two are one eight"
            value = _value(toks[count[1] :])
            if value is not None and len(value) == count[0]:
                return current[: -len(value)] + value if pos < 0 else value + current[len(value) :]
        value = _value(toks[j:])
        if value is not None and len(value) == 1:
            at = pos % size
            return current[:at] + value + current[at + 1 :]
    return None


def _by_edge(current: str, toks: list[str]) -> str | None:
    """ "it ends in two one eight", "one one two at the end", "it starts with four five eight"."""
    for k, t in enumerate(toks):
        if t not in _END_WORDS and t not in _START_WORDS:
            continue
        value = _value(toks[k + 1 :]) or _tail_value(toks[:k])
        if value is None or len(value) >= len(current):
            continue
        return current[: -len(value)] + value if t in _END_WORDS else value + current[len(value) :]
    return None


def _by_swap(current: str, toks: list[str]) -> str | None:
    """ "two one eight, not two one nine", "not 219, 218", "change the five to a six", "the 2 is a 3"."""
    readings: list[tuple[str, str, bool]] = []  # (old, new, split at a pause)
    for k, t in enumerate(toks):
        left, right = toks[:k], toks[k + 1 :]
        if t == "not":
            if _value(right) == current:  # "no, not 457218": the whole number is wrong, no digits swapped
                continue
            new = _tail_value(left)
            if new is not None:
                readings += [(old, new, False) for old in [_value(right)] if old]
            else:
                readings += _splits(right, word_set("but"), old_first=True)
        elif t == "instead" and right[:1] == ["of"]:
            readings += [
                (old, new, False) for new, old in [(_tail_value(left), _value(right[1:]))] if old and new
            ]
        elif t in ("change", "make", "replace", "swap"):
            readings += _splits(right, _INTO, old_first=True)
        elif t in _VERBS and k > 0:
            readings += [
                (old, new, False) for old, new in [(_tail_value(left), _value(right))] if old and new
            ]
    results = {r for r in (_replace(current, old, new) for old, new, _ in readings) if r is not None}
    if len(results) > 1:  # several ways to split: trust the caller's pause
        paused = {_replace(current, old, new) for old, new, pause in readings if pause}
        results = {r for r in paused if r is not None}
    return results.pop() if len(results) == 1 else None


def _splits(toks: Sequence[str], joins: frozenset[str], *, old_first: bool) -> list[tuple[str, str, bool]]:
    """Every way to cut tokens into old digits then new ones, at a join word or between two digit runs."""
    out: list[tuple[str, str, bool]] = []
    for k in range(1, len(toks)):
        joined = toks[k] in joins
        first = read_digit_words(toks[:k])
        second = _value(toks[k + 1 :] if joined else toks[k:])
        if first is None or second is None:
            continue
        old, new = (first, second) if old_first else (second, first)
        out.append((old, new, joined or toks[k] == PAUSE or toks[k - 1] == PAUSE))
    return out


def _replace(current: str, old: str, new: str) -> str | None:
    """`current` with `old` (found exactly once) replaced by `new` of the same length; None otherwise."""
    at = current.find(old)
    if len(old) != len(new) or len(new) >= len(current) or at < 0 or current.find(old, at + 1) >= 0:
        return None
    return current[:at] + new + current[at + len(old) :]
