"""Tokenising Whisper text and reading spoken numbers, shared by every entity parser.

Entity values reach us as Whisper's rendering of speech ("forty-nine", "4-5-7", "21st", "1,299.00"), so one
tokeniser and one cardinal/ordinal reader serve the digit, amount and date parsers: "twenty one" then means
the same thing everywhere, and each parser only adds its own grammar on top. The filler words callers put
around any value ("um", "so it's") are here too, so every parser skips the same ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from decimal import Decimal

MAX_CHARS = 500
"""Longer text is not a spoken entity value; refusing it also bounds the work done on hostile input."""

UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
ZERO_WORDS = frozenset({"zero", "oh", "o", "nought", "naught"})
"""Ways of saying the digit 0 inside a digit string; only "zero" is also a cardinal on its own."""
REPEATS = {"double": 2, "triple": 3, "treble": 3}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19,
    "twentieth": 20, "thirtieth": 30, "fortieth": 40, "fiftieth": 50, "sixtieth": 60, "seventieth": 70,
    "eightieth": 80, "ninetieth": 90,
}  # fmt: skip


def word_set(text: str) -> frozenset[str]:
    """A word set written as one string, so vocabularies stay readable."""
    return frozenset(text.split())


HESITATIONS = word_set("uh um umm uhm er erm ah eh hmm mm mhm")
PREAMBLE = word_set("so okay ok yeah yes sure well it its it's is that that's thats was please")

# Numeric ordinals ("21st") stay whole; numbers keep inner separators ("1,299.00", "457-219", "12/05/2026")
# but not a sentence-final full stop; words keep inner apostrophes ("it's"); hyphens between words split them
# ("forty-nine"); currency symbols are tokens; everything else (punctuation, emoji) only separates.
_TOKEN = re.compile(r"[0-9]+(?:st|nd|rd|th)\b|[0-9]+(?:[.,/:-][0-9]+)*|[^\W\d_]+(?:'[^\W\d_]+)*|[$€£]")
_NUMERIC_ORDINAL = re.compile(r"([0-9]+)(?:st|nd|rd|th)")


def tokenize(text: str, *, keep_case: bool = False) -> list[str]:
    """Split Whisper text into word, number and currency tokens; too long a text gives none."""
    if len(text) > MAX_CHARS:
        return []
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    return _TOKEN.findall(text if keep_case else text.lower())


def is_numeric(token: str) -> bool:
    """True for number tokens ("457", "1,299.00") but not numeric ordinals ("3rd")."""
    return token[:1].isascii() and token[:1].isdigit() and token[-1].isdigit()


def read_cardinal(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    """Read the longest well-formed spoken cardinal at toks[i] and return (value, next index).

    English grammar decides where one number ends, which is what lets callers split runs of numbers:
    "forty nine ninety nine" reads as 49 then 99, "one hundred twenty five fifty" as 125 then 50, "four five"
    as 4 then 5. A unit may follow a tens word ("forty nine"), but nothing small follows a unit or a teen.
    "hundred" multiplies 1-99 ("fifteen hundred" = 1500), scales must fall ("two thousand three hundred"), "a"
    counts as one only before hundred/thousand/million ("a hundred"), and "and" joins only after hundred or a
    scale ("a hundred and twenty") when a number word follows.
    """
    n = len(toks)
    total = group = 0
    last = ""  # kind of the previous token: "", "a", "unit", "teen", "ten", "hundred", "scale", "and"
    last_scale = 0
    j = i
    while j < n:
        t = toks[j]
        nxt = toks[j + 1] if j + 1 < n else ""
        if t == "zero" and not last:
            return 0, j + 1
        if t in ("a", "an") and not last and (nxt == "hundred" or nxt in SCALES):
            group, last = 1, "a"
        elif (
            t in UNITS
            and last in ("", "ten", "hundred", "scale", "and")
            and not (last == "ten" and group % 10)
        ):
            group, last = group + UNITS[t], "unit"
        elif t in TEENS and last in ("", "hundred", "scale", "and"):
            group, last = group + TEENS[t], "teen"
        elif t in TENS and last in ("", "hundred", "scale", "and"):
            group, last = group + TENS[t], "ten"
        elif t == "hundred" and last in ("a", "unit", "teen", "ten") and group < 100:
            group, last = group * 100, "hundred"
        elif (
            t in SCALES
            and last in ("a", "unit", "teen", "ten", "hundred")
            and (not last_scale or SCALES[t] < last_scale)
        ):
            total, group, last, last_scale = total + group * SCALES[t], 0, "scale", SCALES[t]
        elif t == "and" and last in ("hundred", "scale") and (nxt in UNITS or nxt in TEENS or nxt in TENS):
            last = "and"
        else:
            break
        j += 1
    return (total + group, j) if last else None


def read_ordinal(toks: Sequence[str], i: int) -> tuple[int, int] | None:
    """Read a spoken or written ordinal at toks[i] ("third", "twenty first", "21st"); (value, next index)."""
    t = toks[i]
    if m := _NUMERIC_ORDINAL.fullmatch(t):
        return (int(m.group(1)), i + 1) if len(m.group(1)) <= 4 else None
    if t in ORDINALS:
        return ORDINALS[t], i + 1
    if t in TENS and i + 1 < len(toks) and toks[i + 1] in ORDINALS and ORDINALS[toks[i + 1]] < 10:
        return TENS[t] + ORDINALS[toks[i + 1]], i + 2
    return None


def read_digits(toks: Sequence[str], i: int) -> tuple[str, int] | None:
    """Read one spoken group of a digit string at toks[i]; (digits, next index), None if it is not one.

    A group is a number token ("457-219" gives "457219"), a zero word ("oh"), "double"/"triple" and a single
    digit ("double eight" gives "88"), or a cardinal written out in full: "nineteen" gives "19", "twenty one"
    gives "21", a lone "ninety" gives "90", "four hundred and five" gives "405". Callers say ids in pairs
    ("forty five seventy two") as often as digit by digit, and the cardinal reader already splits "four five"
    into two groups, so concatenating groups is right for both.
    """
    t = toks[i]
    if is_numeric(t):
        return re.sub(r"[^0-9]", "", t), i + 1
    if t in ZERO_WORDS:
        return "0", i + 1
    if t in REPEATS and i + 1 < len(toks):
        digit = single_digit(toks[i + 1])
        return (digit * REPEATS[t], i + 2) if digit else None
    got = read_cardinal(toks, i)
    return (str(got[0]), got[1]) if got else None


def single_digit(token: str) -> str | None:
    """The digit a lone token stands for ("7", "seven", "oh"), for "double"/"triple" and "oh five" cents."""
    if token in ZERO_WORDS:
        return "0"
    if token in UNITS:
        return str(UNITS[token])
    return token if len(token) == 1 and token.isdigit() else None


def words_to_int(text: str) -> int | None:
    """Parse text that is one whole number ("two thousand and five", "1,299") into an int, else None."""
    toks = tokenize(text)
    if len(toks) == 1 and re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})*|[0-9]+", toks[0]):
        return int(toks[0].replace(",", ""))
    got = read_cardinal(toks, 0) if toks else None
    return got[0] if got and got[1] == len(toks) else None


def parse_figures(tok: str) -> Decimal | None:
    """Decimal for a number in figures ("1,299.00", "1.299,00", "12,50"); None for dates and the like."""
    if any(c in tok for c in "/:-") or len(tok) > 24:
        return None
    if "." in tok and "," in tok:
        point = max(tok.rfind("."), tok.rfind(","))
        group = "," if tok[point] == "." else "."
        whole = tok[:point]
        if not re.fullmatch(rf"[0-9]{{1,3}}(?:\{group}[0-9]{{3}})*", whole):
            return None
        return Decimal(whole.replace(group, "") + "." + tok[point + 1 :])
    if "," in tok:
        if re.fullmatch(r"[0-9]{1,3}(?:,[0-9]{3})+", tok):
            return Decimal(tok.replace(",", ""))
        return Decimal(tok.replace(",", ".")) if re.fullmatch(r"[0-9]+,[0-9]{1,2}", tok) else None
    if tok.count(".") > 1:
        return Decimal(tok.replace(".", "")) if re.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{3})+", tok) else None
    return Decimal(tok)


def read_year(words: Sequence[str]) -> int | None:
    """A whole year: "2027", "twenty twenty seven", "two thousand and five", "twenty oh five"."""
    if len(words) == 1 and words[0].isdigit():
        year = int(words[0]) if len(words[0]) == 4 else 0
    elif (high := read_cardinal(words, 0)) is None:
        return None
    elif high[1] == len(words):
        year = high[0]
    elif high[0] in (19, 20, 21):
        rest = words[high[1] :]
        low = read_cardinal(words, high[1])
        if len(rest) == 2 and rest[0] in ZERO_WORDS and (d := single_digit(rest[1])) and d != "0":
            year = high[0] * 100 + int(d)
        elif low and low[1] == len(words) and 10 <= low[0] <= 99:
            year = high[0] * 100 + low[0]
        else:
            return None
    else:
        return None
    return year if 1900 <= year <= 2199 else None
