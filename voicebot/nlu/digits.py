"""Reading the digit string a caller gave right after the bot asked for one, as a short ranked list.

`normalise.spoken_digits` reads a tagged span in free text, so it must stay strict: "for" is a preposition
and "I" a pronoun in an ordinary sentence. Once the bot has asked "what is your order number?", the answer
is a digit string by expectation, and what Whisper writes for phone audio goes wrong in typical ways that
can then be read back:

- homophones stay words: "for"/"to"/"won"/"ate"/"oh"/"free"/"tree" next to digits are 4/2/1/8/0/3/3
  ("niner", "nero", "fife", "nil", "sicks" are digits wherever they come);
- "five" and "nine" lose their consonants and come out as "I" or "I'm" ("4, I'm 7, 2, 1, I-" for 457219);
- letters stand in for digits or fillers: "O" inside a digit run is 0; "I", "l", "Z", "S", "B", "G" are
  likelier 1, 1, 2, 5, 8, 6 between digits than at their edge; "um" becomes "U" glued on ("U178456") or
  "I'm" ("I'm 98875");
- the recogniser doubles a digit ("7987-336" for 798736) or writes "double" as "00" ("0079109" for
  779109) or as "2" ("902905" for 909905);
- digits come in groups ("forty five seventy two nineteen", "eight thirty, one twelve").

No single reading is right for all of these, so `digit_candidates` returns a few, best first: the most
literal reading first when its length fits the length asked for, otherwise the readings that fit first;
the dialogue then checks them against the back end. `read_digit_words` is the strict reader of a span
already known to be a digit value, which `voicebot.nlu.corrections` uses for "the last one is a nine".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from voicebot.nlu.numbers import (
    HESITATIONS,
    MAX_CHARS,
    PREAMBLE,
    REPEATS,
    TEENS,
    TENS,
    UNITS,
    is_numeric,
    read_cardinal,
    tokenize,
    word_set,
)

PAUSE = "|"
"""Token for a comma or full stop between words: Whisper's punctuation marks the caller's pauses."""

STRONG_DIGIT_WORDS = {
    **{w: str(d) for w, d in UNITS.items()},
    **dict.fromkeys(("zero", "nought", "naught", "nil", "nero"), "0"),
    "niner": "9",
    "fife": "5",
    "sicks": "6",
}
"""Words that are a digit wherever they stand (espeak's "zero" comes out as "Nero")."""
WEAK_DIGIT_WORDS = {
    **dict.fromkeys(("oh", "o"), "0"),
    **dict.fromkeys(("for", "fore"), "4"),
    **dict.fromkeys(("to", "too"), "2"),
    "won": "1",
    "ate": "8",
    **dict.fromkeys(("free", "tree"), "3"),
    "sex": "6",
}
"""Ordinary words that are a digit only next to other digits, where they are how Whisper heard one."""
NEAR_DIGIT_WORDS = {
    "time": "95",
    "mine": "9",
    "nein": "9",
    "fine": "5",
    "hive": "5",
    "know": "0",
    "near": "0",
}
"""Words a digit turns into on a poor line ("nine" as "mine", "five" or "nine" as "time"), one or more
readings each, best first; next to other digits only, and never sure: the back end picks among them."""
_ZERO_LIKE = frozenset({"near"})
_ZERO_TAILS = frozenset({"of", "or"})
"""A "zero" heard as "near of" or "near or" ("6 6, near of 6 6 2 3 2 4 5" for 6606623245): the tail is
part of that digit, not a word that ends the number."""
LOOKALIKES = {"O": "0", "I": "1", "l": "1", "Z": "2", "S": "5", "B": "8", "G": "6"}
"""Letters written where a digit was meant; only O inside a digit run is read without doubt."""
SOUNDALIKES = {"I": "95", "i'm": "59"}
"""What is left of "nine" and "five" when a poor line loses their consonants: the recogniser writes the
vowel, "I" or "I'm" ("9 8, I'm 3, I'm 2" for 985352, "4 6 1, I know" for 46190, "I-244167-5" for
92441675). Never sure: they come right after the piece's likeliest reading (a filler glued on, or the
lookalike 1 between digits), before its other readings, and the back end picks among them."""

_BRIDGES = HESITATIONS | word_set(f"on hm uhm dash hyphen slash hash hashtag then {PAUSE}")
"""Fillers inside a number that do not end it ("four, um, seven"; Whisper writes "um" as "on" too)."""
_SOFT = PREAMBLE | word_set(
    "the my our a an number order invoice phone id reference ref account code and plus no sorry thanks "
    "thank you right here got"
)
"""Words around a number that end it without being content: two numbers they separate may be one."""
_CARDINAL_STARTS = UNITS.keys() | TEENS.keys() | TENS.keys()
_MAX_CANDIDATES = 8
_MAX_CHOICES = 6  # ambiguous pieces per number whose alternatives are tried; 2**6 readings at most
_PUNCT_PAUSE = re.compile(r"[;!?]|[.,](?![0-9])|(?<![0-9])[.,]")


@dataclass(frozen=True)
class _Piece:
    """One stretch of tokens that reads as digits, with its alternative readings and their costs."""

    kind: str  # "strong", "weak" (homophone), "near" (a poor line's word), "letter", "im" ("I'm")
    digits: str  # the reading of a strong piece; the digit a weak/letter piece may stand for
    spelled: bool  # said as words (not figures): a weak word beside it is likelier a digit too
    options: tuple[tuple[str, int], ...] = ()
    sounds: str = ""  # digits the word may be what is left of (SOUNDALIKES)


def digit_tokens(text: str) -> list[str]:
    """Tokens of `text` (case kept) with PAUSE where Whisper put a comma or full stop between words."""
    if len(text) > MAX_CHARS:
        return []
    out: list[str] = []
    for part in _PUNCT_PAUSE.split(text):
        out += [*tokenize(part, keep_case=True), PAUSE]
    return out


def _read_piece(toks: Sequence[str], i: int) -> tuple[_Piece, int] | None:
    """Read the digit piece starting at toks[i] (cased tokens); (piece, next index) or None."""
    tok = toks[i]
    low = tok.lower()
    if is_numeric(tok):
        return _Piece("strong", re.sub(r"[^0-9]", "", tok), False), i + 1
    if low in REPEATS and i + 1 < len(toks):
        nxt = toks[i + 1]
        first = nxt[0] if is_numeric(nxt) else _word_digit(nxt)
        if first is not None:
            rest = re.sub(r"[^0-9]", "", nxt)[1:] if is_numeric(nxt) else ""
            return _Piece("strong", first * REPEATS[low] + rest, not is_numeric(nxt)), i + 2
        return None
    if low in _CARDINAL_STARTS:
        piece, used = _cardinal_piece([t.lower() for t in toks[i : i + 12]])
        return piece, i + used
    if low in STRONG_DIGIT_WORDS:
        return _Piece("strong", STRONG_DIGIT_WORDS[low], True), i + 1
    if low in WEAK_DIGIT_WORDS:
        return _Piece("weak", WEAK_DIGIT_WORDS[low], True), i + 1
    if low in NEAR_DIGIT_WORDS:
        tail = low in _ZERO_LIKE and i + 1 < len(toks) and toks[i + 1].lower() in _ZERO_TAILS
        return _Piece("near", NEAR_DIGIT_WORDS[low], True), i + 1 + tail
    if low == "i'm":
        return _Piece("im", "1", True, sounds=SOUNDALIKES[low]), i + 1
    if len(tok) == 1 and tok.isalpha() and low != "a":
        return _Piece("letter", LOOKALIKES.get(tok, ""), False, sounds=SOUNDALIKES.get(tok, "")), i + 1
    if tok == "A" and i + 1 < len(toks) and is_numeric(toks[i + 1]):  # "eight three" written "A3"
        return _Piece("letter", "8", False), i + 1
    return None


def _word_digit(tok: str) -> str | None:
    """The digit after "double": a digit word, a homophone or the letter O."""
    low = tok.lower()
    return STRONG_DIGIT_WORDS.get(low) or WEAK_DIGIT_WORDS.get(low) or ("0" if tok == "O" else None)


def _cardinal_piece(low: Sequence[str]) -> tuple[_Piece, int]:
    """Number words read in groups ("forty five" is 45); each word alone is the runner-up ("eight thirty")."""
    parts: list[str] = []
    j = 0
    while j < len(low) and low[j] in _CARDINAL_STARTS and (got := read_cardinal(low, j)):
        parts.append(str(got[0]))
        j = got[1]
    primary = "".join(parts)
    alone = "".join(str(UNITS.get(w) or TEENS.get(w) or TENS.get(w) or "") for w in low[:j])
    options = ((primary, 0),) + (((alone, 1),) if alone != primary else ())
    return _Piece("strong", primary, True, options), j


def read_digit_words(toks: Sequence[str]) -> str | None:
    """Digits of tokens already known to be one digit value (homophones included); None if any is not."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] in _BRIDGES:
            i += 1
            continue
        got = _read_piece(toks, i)
        if got is None or got[0].kind in ("letter", "im", "near"):
            return None
        out.append(got[0].digits)
        i = got[1]
    return "".join(out) or None


# --- candidates ----------------------------------------------------------------------------------------


_PAUSED = _Piece("pause", "", False)
"""Marks a pause inside a chunk: a letter after it still touches the number."""


def _chunks(toks: Sequence[str]) -> list[tuple[list[_Piece | None], bool]]:
    """Split tokens into chunks of pieces (None for a filler) and whether only soft words came before each."""
    chunks: list[tuple[list[_Piece | None], bool]] = []
    current: list[_Piece | None] = []
    gap_soft = True
    i = 0
    while i < len(toks):
        got = _read_piece(toks, i)
        low = toks[i].lower()
        if got is not None:
            current.append(got[0])
            i = got[1]
            continue
        if low in _BRIDGES:
            if current:
                current.append(_PAUSED if low == PAUSE else None)
        else:
            if current:
                chunks.append((current, gap_soft))
                current, gap_soft = [], True
            gap_soft = gap_soft and low in _SOFT
        i += 1
    if current:
        chunks.append((current, gap_soft))
    return chunks


def _attach(chunk: list[_Piece | None]) -> list[_Piece] | None:
    """The pieces of a chunk that belong to its number, with their options; None without a sure digit."""
    strong = [k for k, p in enumerate(chunk) if p is not None and p.kind == "strong"]
    if not strong:
        return None
    first, last = strong[0], strong[-1]
    out: dict[int, _Piece] = {}
    for k in range(first, last + 1):
        p = chunk[k]
        if p is not None and p.kind != "pause":
            out[k] = _with_options(p, interior=True, beside=None)
    for edge, step in ((range(first - 1, -1, -1), -1), (range(last + 1, len(chunk)), 1)):
        for k in edge:
            p = chunk[k]
            if p is None or p.kind == "pause":
                continue
            beside = _neighbour(chunk, k, -step)
            if p.kind == "letter" and beside is None:
                break  # a letter must touch the number: "um" glued on, not a word after a pause
            out[k] = _with_options(p, interior=False, beside=beside)
    return [out[k] for k in sorted(out)]


def _neighbour(chunk: list[_Piece | None], k: int, step: int) -> _Piece | None:
    """The piece next to chunk[k] towards the number, skipping pauses but not fillers."""
    j = k + step
    while 0 <= j < len(chunk) and chunk[j] is _PAUSED:
        j += step
    return chunk[j] if 0 <= j < len(chunk) else None


def _with_options(p: _Piece, *, interior: bool, beside: _Piece | None) -> _Piece:
    """Give a piece its readings, best first with costs, from where it stands."""
    if p.options:
        return p
    if p.kind == "strong":
        options: tuple[tuple[str, int], ...] = ((p.digits, 0),)
    elif p.kind == "im":
        options = (("", 0), ("1", 1))
    elif p.kind == "near":  # each reading costs one more than the last; dropping the word is the dearest
        readings = tuple((d, k + 1) for k, d in enumerate(p.digits))
        options = (*readings, ("", len(p.digits) + 1)) if interior else (("", 0), *readings)
    elif not p.digits:  # a letter that looks like no digit: a filler glued on
        options = (("", 0),)
    elif interior and p.digits == "0":  # "oh", "O" between digits
        options = (("0", 0),)
    elif interior or (p.kind == "weak" and beside is not None and beside.spelled):
        options = ((p.digits, 0), ("", 1))
    else:
        options = (("", 0), (p.digits, 1))
    if p.sounds:  # after the likeliest reading, before the others ("I" between digits is rarely a one)
        (best, cost), rest = options[0], options[1:]
        sounds = tuple((d, cost + 1 + k) for k, d in enumerate(p.sounds))
        options = ((best, cost), *sounds, *((d, c + len(sounds)) for d, c in rest))
    return _Piece(p.kind, p.digits, p.spelled, options)


def _readings(pieces: list[_Piece]) -> list[tuple[str, int]]:
    """Every combination of the pieces' options: (digits, total cost)."""
    ambiguous = [k for k, p in enumerate(pieces) if len(p.options) > 1][:_MAX_CHOICES]
    choices = [p.options if k in ambiguous else p.options[:1] for k, p in enumerate(pieces)]
    return [("".join(d for d, _ in combo), sum(c for _, c in combo)) for combo in itertools.product(*choices)]


def _repairs(digits: str, too_long: bool) -> list[tuple[str, int]]:
    """Undo the recogniser's typical slips: a digit doubled, "double" written "00" or "2"."""
    out: list[tuple[str, int]] = []
    if too_long:
        out += [(digits[:k] + digits[k + 2] * 2 + digits[k + 3 :], 2) for k in _finds(digits, r"00(?=[1-9])")]
        out += [
            (digits[:k] + digits[k + 1 :], 2) for k in range(len(digits) - 1) if digits[k] == digits[k + 1]
        ]
    else:
        out += [(digits[:k] + digits[k + 1] + digits[k + 1 :], 3) for k in _finds(digits, r"2(?=[013-9])")]
    return out


def _finds(text: str, pattern: str) -> list[int]:
    """Start indices of the (lookahead) pattern's matches."""
    return [m.start() for m in re.finditer(pattern, text)]


def digit_candidates(text: str, min_length: int | None = None, max_length: int | None = None) -> list[str]:
    """Digit strings `text` may stand for when the caller was asked for a digit string, best first.

    The most literal reading comes first when its length is within [min_length, max_length]; otherwise the
    readings that fit come first, cheapest first. Too short or long readings stay in the list (a short one
    may be the start of a number the caller will finish). At most eight; [] when nothing reads as digits.
    """

    def fits(digits: str) -> bool:
        return (min_length is None or len(digits) >= min_length) and (
            max_length is None or len(digits) <= max_length
        )

    found: list[tuple[str, int]] = []
    previous: str | None = None
    for chunk, soft_gap in _chunks(digit_tokens(text)):
        pieces = _attach(chunk)
        if pieces is None:
            continue
        readings = _readings(pieces)
        literal = readings[0][0]
        found += readings
        if max_length is not None:
            long = [(d, cost) for d, cost in readings if cost <= 1 and len(d) > max_length]
            found += [(fixed, c + cost) for d, cost in long for fixed, c in _repairs(d, too_long=True)]
        if (min_length is not None or max_length is not None) and fits(literal):
            found += _repairs(literal, too_long=False)
        if previous is not None and soft_gap:
            found.append((previous + literal, 2))
        previous = literal
    ranked = sorted(found, key=lambda dc: (not fits(dc[0]), dc[1], -len(dc[0])))
    return list(dict.fromkeys(d for d, _ in ranked if d))[:_MAX_CANDIDATES]
