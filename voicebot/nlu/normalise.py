"""Entity-value normalisation after tagging: the tagger gives the span Whisper wrote, this gives the value.

Callers speak, so an order number arrives as "four five seven two one nine", "457-219" or "double eight three
oh", and a refund as "forty nine ninety nine" or "$49.99". Each parser accepts what Whisper plausibly writes
for speech and returns None when the text cannot be a value of the type, so the dialogue re-asks rather than
acting on a guess. Ambiguous readings are decided once, here:

- digits: spoken groups are concatenated and a cardinal gives all its digits ("four five seven twenty one
  ninety" is "4572190", "four hundred and five" is "405"); "oh"/"o"/"zero"/"nought" are 0; "double"/"triple"
  repeat one digit only; phone numbers must have 7-15 digits and lose any "+".
- alphanumerics: "o" is the letter O but "oh" the digit 0; lower-case words that are not spelled are refused.
- amounts: two numbers in a row are units then cents ("nineteen ninety nine" is 19.99); the cents must be
  10-99, "oh" and a digit, or one digit after a currency word or before "cents" ("twelve pounds five" is
  12.05, but "twelve five" is None). In figures, a comma before three digits groups thousands and before one
  or two is a decimal comma ("12,50"); a single dot is a decimal point, repeated dots group thousands.

Dates are read in `voicebot.nlu.dates`, spelled letters and emails in `voicebot.nlu.spelling`, each with its
own rules; `normalise()` picks the parser by entity type.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from voicebot.nlu.dates import spoken_date as spoken_date
from voicebot.nlu.numbers import (
    HESITATIONS,
    MAX_CHARS,
    PREAMBLE,
    SCALES,
    ZERO_WORDS,
    is_numeric,
    parse_figures,
    read_cardinal,
    read_digits,
    single_digit,
    tokenize,
    word_set,
)
from voicebot.nlu.spelling import LETTER_FILLERS, read_letter
from voicebot.nlu.spelling import spoken_email as spoken_email
from voicebot.nlu.spelling import spoken_letters as spoken_letters

_DIGIT_FILLERS = (
    HESITATIONS
    | PREAMBLE
    | word_set("number the my order invoice phone id reference ref account code hash hashtag plus and")
)


# --- digits and letters --------------------------------------------------------------------------------


def spoken_digits(text: str) -> str | None:
    """Digit string for a spoken or written number ("double eight three oh" is "8830"); else None."""
    toks = tokenize(text)
    out: list[str] = []
    i = 0
    while i < len(toks):
        if toks[i] in _DIGIT_FILLERS:
            i += 1
            continue
        got = read_digits(toks, i)
        if got is None:
            return None
        out.append(got[0])
        i = got[1]
    return "".join(out) or None


def spoken_alnum(text: str) -> str | None:
    """Upper-case id from spelled letters and spoken digits ("a b c one two three" is "ABC123")."""
    toks = tokenize(text, keep_case=True)
    lowered = [t.lower() for t in toks]
    out: list[str] = []
    i = 0
    while i < len(toks):
        if lowered[i] in _DIGIT_FILLERS or lowered[i] in LETTER_FILLERS:
            i += 1
            continue
        got = None if is_numeric(toks[i]) else read_letter(toks, i, oh_is_letter=False)
        got = got or read_digits(lowered, i)
        if got is None:
            return None
        out.append(got[0])
        i = got[1]
    return "".join(out) or None


# --- amounts -------------------------------------------------------------------------------------------

_MAJOR = word_set("$ € £ dollar dollars buck bucks euro euros pound pounds quid usd eur gbp")
_MINOR = word_set("cent cents penny pennies pence p")
_AMOUNT_FILLERS = (
    HESITATIONS
    | PREAMBLE
    | word_set(
        "about around roughly approximately like the amount of total refund price just only exactly us "
        "sterling"
    )
)
_MAX_AMOUNT = Decimal(10) ** 15  # above this Decimal's 28 digits would not hold cents; no refund is that big


def _read_quantity(toks: Sequence[str], i: int) -> tuple[Decimal, int, bool] | None:
    """Read the main number at toks[i]: (value, next index, whether it already has its fractional part)."""
    if i >= len(toks):
        return None
    t = toks[i]
    nxt = toks[i + 1] if i + 1 < len(toks) else ""
    if is_numeric(t):
        value = parse_figures(t)
        if value is None:
            return None
        if nxt == "hundred" or nxt in SCALES:  # "2 thousand", "1.5 million"
            return value * SCALES.get(nxt, 100), i + 2, True
        return value, i + 1, value != value.to_integral_value() or bool(re.search(r"[.,][0-9]{1,2}$", t))
    if t in ("a", "an") and nxt in _MAJOR:  # "a dollar fifty"
        return Decimal(1), i + 1, False
    got = read_cardinal(toks, i)
    return (Decimal(got[0]), got[1], False) if got else None


def _read_cents(toks: Sequence[str], i: int, after_major: bool) -> tuple[int, int] | None:
    """Read the cents after the main number: 10-99, "oh five", or one digit when a currency word fixes it."""
    n = len(toks)
    t = toks[i]
    if t in ZERO_WORDS and i + 1 < n and toks[i + 1] not in ZERO_WORDS and (d := single_digit(toks[i + 1])):
        return int(d), i + 2
    got = ((int(t), i + 1) if len(t) <= 2 else None) if t.isdigit() else read_cardinal(toks, i)
    if got is None or got[0] >= 100:
        return None
    if got[0] < 10 and len(t) != 2 and not (after_major or (got[1] < n and toks[got[1]] in _MINOR)):
        return None
    return got


def spoken_amount(text: str) -> str | None:
    """Money amount with two decimals ("forty nine ninety nine" is "49.99"); None if it is not one."""
    toks = [t for t in tokenize(text) if t not in _AMOUNT_FILLERS]
    n = len(toks)
    i = 0
    major = False
    while i < n and toks[i] in _MAJOR:  # "$49.99", "USD 20"
        i, major = i + 1, True
    got = _read_quantity(toks, i)
    if got is None:
        return None
    value, i, has_fraction = got
    if i < n and toks[i] in ("point", "dot") and not has_fraction:  # "three point five"
        digits: list[str] = []
        i += 1
        while i < n and _fraction_digit(toks[i]) and (d := read_digits(toks, i)):
            digits.append(d[0])
            i = d[1]
        if not digits:
            return None
        value, has_fraction = value + Decimal("0." + "".join(digits)), True
    if i < n and toks[i] in _MINOR:  # "ninety nine cents"
        return _money(value / 100) if i + 1 == n and not major else None
    while i < n and toks[i] in _MAJOR:
        i, major = i + 1, True
    joined = i < n and toks[i] == "and"
    i += int(joined)
    if i < n or joined:
        cents = None if has_fraction or i >= n else _read_cents(toks, i, major)
        if cents is None:
            return None
        value += Decimal(cents[0]) / 100
        i = cents[1] + (cents[1] < n and toks[cents[1]] in _MINOR)
    return _money(value) if i == n else None


def _fraction_digit(token: str) -> bool:
    """Whether a token can carry on the digits after "point" (not a currency word, nor "1.5" in figures)."""
    return token not in _MAJOR and token not in _MINOR and (token.isdigit() or not is_numeric(token))


def _money(value: Decimal) -> str | None:
    """Two-decimal string, rounding half up; None beyond any plausible amount."""
    if not 0 <= value < _MAX_AMOUNT:
        return None
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# --- free text -----------------------------------------------------------------------------------------

_PLACE_MINOR_WORDS = word_set("of and the on upon in by de del la le du da am sur en")
_ACRONYMS = word_set("uk usa us uae drc")


def _clean_words(raw: str, *, digits_ok: bool) -> list[str] | None:
    """Words of a name-like span without Whisper's punctuation; None if any other character remains.

    A single letter with a full stop is an initial and keeps it ("J.R.R." gives "J." "R." "R."); other full
    stops go, so "Smith." and "St. Louis" lose theirs.
    """
    if len(raw) > MAX_CHARS:
        return None
    text = re.sub(r"[,;:!?\"()\[\]{}<>]", " ", unicodedata.normalize("NFKC", raw).replace("’", "'"))
    words = [p for w in text.split() for p in re.findall(r"[^\W\d_]\.|[^.]+", w) if p.strip("'-")]
    for w in words:
        for c in w.removesuffix("."):
            if not (
                c.isalpha() or c in "'-" or (digits_ok and c.isdigit()) or unicodedata.category(c)[0] == "M"
            ):
                return None
    return words or None


def _capitalise_run(m: re.Match[str]) -> str:
    """Upper-case a letter run's first letter, but not a lone letter after an apostrophe ("john's")."""
    run = m.group(0)
    return run if len(run) == 1 and m.string[m.start() - 1 : m.start()] == "'" else run[0].upper() + run[1:]


def _title(word: str, *, place: bool = False, first: bool = True) -> str:
    """Title-case a word ("o'brien" is "O'Brien"); Whisper's own inner capitals are kept ("McDonald").

    For places, small words after the first stay low ("Stoke-on-Trent", "Isle of Man") and acronyms go high.
    """
    low = word.lower()
    if place and low in _ACRONYMS:
        return low.upper()
    parts = (word if word[:1].isupper() and not word.isupper() else low).split("-")
    for s, part in enumerate(parts):
        if place and part.lower() in _PLACE_MINOR_WORDS and not (first and s == 0):
            parts[s] = part.lower()
        elif not part[:1].isupper():
            parts[s] = re.sub(r"[^\W\d_]+", _capitalise_run, part)
    return "-".join(parts)


def _person_name(raw: str) -> str | None:
    """Title-cased name; a run of three or more single letters is a spelled word ("j o h n smith")."""
    words = _clean_words(raw, digits_ok=False)
    if words is None:
        return None
    merged: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if len(w) == 1:
            run.append(w)
            continue
        merged += ["".join(run)] if len(run) >= 3 else run
        run = []
        merged += [w] if w else []
    return " ".join(_title(w) for w in merged)


def _place(raw: str) -> str | None:
    """Title-cased place name keeping small words low ("Isle of Man") and acronyms high ("UK")."""
    words = _clean_words(raw, digits_ok=True)
    return " ".join(_title(w, place=True, first=k == 0) for k, w in enumerate(words)) if words else None


def _lower_text(raw: str) -> str | None:
    """Lower-case label with tidy spacing, for closed sets like account types."""
    words = _clean_words(raw, digits_ok=True)
    return " ".join(words).lower() if words else None


def _phone(raw: str) -> str | None:
    """Digits of a phone number; 7-15 digits (E.164's maximum) or it is not one."""
    digits = spoken_digits(raw)
    return digits if digits and 7 <= len(digits) <= 15 else None


_Handler = Callable[[str, date | None], str | None]
_HANDLERS: dict[str, _Handler] = {
    **dict.fromkeys(("order_id", "invoice_id", "digits"), lambda raw, _: spoken_digits(raw)),
    "phone": lambda raw, _: _phone(raw),
    **dict.fromkeys(("refund_amount", "amount", "money"), lambda raw, _: spoken_amount(raw)),
    **dict.fromkeys(("date", "delivery_date"), spoken_date),
    "email": lambda raw, _: spoken_email(raw),
    "person_name": lambda raw, _: _person_name(raw),
    **dict.fromkeys(("delivery_city", "delivery_country"), lambda raw, _: _place(raw)),
    "account_type": lambda raw, _: _lower_text(raw),
}


def normalise(entity_type: str, raw: str, today: date | None = None) -> str | None:
    """Canonical value of a tagged span, by entity type; None when the span cannot be a value of that type.

    Unknown types pass through stripped (None when empty), so new entity types work before they get a parser.
    """
    handler = _HANDLERS.get(entity_type.strip().lower())
    if handler is None:
        return raw.strip() or None
    return handler(raw, today)
