"""Entity-value normalisation after tagging: the tagger gives the span Whisper wrote, this gives the value.

Callers speak, so an order number arrives as "four five seven two one nine", "457-219" or "double eight three
oh", and a refund as "forty nine ninety nine" or "$49.99". Each parser accepts what Whisper plausibly writes
for speech and returns None when the text cannot be a value of the type, so the dialogue re-asks rather than
acting on a guess. Ambiguous readings are decided once, here:

- digits: spoken groups are concatenated and a cardinal gives all its digits ("four five seven twenty one
  ninety" is "4572190", "four hundred and five" is "405"); "oh"/"o"/"zero"/"nought" are 0; "double"/"triple"
  repeat one digit only; phone numbers must have 7-15 digits and lose any "+".
- alphanumerics: "o" is the letter O but "oh" the digit 0; lower-case words that are not spelled are refused.
- letters: "double u" is W, not UU; words that are neither letters nor spelling aids are ignored.
- amounts: two numbers in a row are units then cents ("nineteen ninety nine" is 19.99); the cents must be
  10-99, "oh" and a digit, or one digit after a currency word or before "cents" ("twelve pounds five" is
  12.05, but "twelve five" is None). In figures, a comma before three digits groups thousands and before one
  or two is a decimal comma ("12,50"); a single dot is a decimal point, repeated dots group thousands.
- dates: figures are US month/day unless the first number cannot be a month ("25/12/2026"); a date without a
  year is the first one on or after today; "friday"/"this friday" is the first Friday on or after today,
  "next friday" the Friday of next Monday-start week (on a Sunday the same day), "last friday" the latest one
  before today; a bare day must be an ordinal ("the 21st") and lands in the first month, from this one, where
  it is not past and exists; with a weekday and a date ("tuesday the first of december") the date wins.
- email: the last spoken "at" is the @ unless the text already has one; number words become digits; ASCII
  only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from voicebot.nlu.numbers import (
    MAX_CHARS,
    REPEATS,
    SCALES,
    TEENS,
    TENS,
    UNITS,
    ZERO_WORDS,
    is_numeric,
    parse_figures,
    read_cardinal,
    read_digits,
    read_ordinal,
    read_year,
    single_digit,
    tokenize,
)


def _words(text: str) -> frozenset[str]:
    """A word set written as one string, so vocabularies stay readable."""
    return frozenset(text.split())


_HESITATIONS = _words("uh um umm uhm er erm ah eh hmm mm mhm")
_PREAMBLE = _words("so okay ok yeah yes sure well it its it's is that that's thats was please")
_DIGIT_FILLERS = (
    _HESITATIONS
    | _PREAMBLE
    | _words("number the my order invoice phone id reference ref account code hash hashtag plus and")
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


# Every NATO word starts with its letter, alternates included ("alfa", "juliett", "whisky").
_NATO = {w: w[0].upper() for w in _words(
    "alpha alfa bravo charlie delta echo foxtrot golf hotel india juliet juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey whisky xray yankee zulu"
)}  # fmt: skip
# How Whisper sometimes writes a letter said on its own ("see" for C, "why" for Y).
_LETTER_NAMES = {name: letter for letter, names in (
    ("B", "bee"), ("C", "see sea cee"), ("D", "dee"), ("G", "gee"), ("H", "aitch haitch"), ("I", "eye"),
    ("J", "jay"), ("K", "kay"), ("L", "el ell"), ("M", "em"), ("N", "en"), ("O", "oh"), ("P", "pee pea"),
    ("Q", "cue queue"), ("R", "are ar"), ("S", "es ess"), ("T", "tee tea"), ("U", "you"), ("V", "vee"),
    ("X", "ex"), ("Y", "why wye"), ("Z", "zed zee"),
) for name in names.split()}  # fmt: skip
_LETTER_FILLERS = (
    _HESITATIONS
    | _PREAMBLE
    | _words("capital small letter letters upper lower uppercase lowercase case then and spelled spelt")
)


def _read_letter(toks: Sequence[str], i: int, *, oh_is_letter: bool) -> tuple[str, int] | None:
    """Read one spelled letter at toks[i] (case kept), skipping a spelling aid after it ("j as in juliet")."""
    t = toks[i]
    low = t.lower()
    if low in REPEATS and i + 1 < len(toks):
        got = _read_letter(toks, i + 1, oh_is_letter=oh_is_letter)
        if got is None or len(got[0]) != 1:
            return None
        return ("W", got[1]) if low == "double" and got[0] == "U" else (got[0] * REPEATS[low], got[1])
    if len(low) == 1 and "a" <= low <= "z":
        letter = low.upper()
    elif low in _NATO:
        letter = _NATO[low]
    elif low in _LETTER_NAMES and (oh_is_letter or low != "oh"):
        letter = _LETTER_NAMES[low]
    elif len(t) > 1 and t.isascii() and t.isalpha() and t.isupper():
        letter = t  # Whisper wrote the spelled letters as one word: "JOHN", "ABC"
    else:
        return None
    after = [x.lower() for x in toks[i + 1 : i + 4]]
    if after[:2] == ["as", "in"] and len(after) == 3:
        return letter, i + 4
    if after[:1] == ["for"] and len(after) >= 2:
        return letter, i + 3
    if letter == "X" and after[:1] == ["ray"]:  # "x-ray" was split at the hyphen
        return letter, i + 2
    return letter, i + 1


def spoken_letters(text: str) -> str:
    """Upper-case letters spelled out ("j as in juliet o h n", "alpha bravo"); other words are ignored."""
    toks = tokenize(text, keep_case=True)
    out: list[str] = []
    i = 0
    while i < len(toks):
        got = None if toks[i].lower() in _LETTER_FILLERS else _read_letter(toks, i, oh_is_letter=True)
        if got is None:
            i += 1
        else:
            out.append(got[0])
            i = got[1]
    return "".join(out)


def spoken_alnum(text: str) -> str | None:
    """Upper-case id from spelled letters and spoken digits ("a b c one two three" is "ABC123")."""
    toks = tokenize(text, keep_case=True)
    lowered = [t.lower() for t in toks]
    out: list[str] = []
    i = 0
    while i < len(toks):
        if lowered[i] in _DIGIT_FILLERS or lowered[i] in _LETTER_FILLERS:
            i += 1
            continue
        got = None if is_numeric(toks[i]) else _read_letter(toks, i, oh_is_letter=False)
        got = got or read_digits(lowered, i)
        if got is None:
            return None
        out.append(got[0])
        i = got[1]
    return "".join(out) or None


# --- amounts -------------------------------------------------------------------------------------------

_MAJOR = _words("$ € £ dollar dollars buck bucks euro euros pound pounds quid usd eur gbp")
_MINOR = _words("cent cents penny pennies pence p")
_AMOUNT_FILLERS = (
    _HESITATIONS
    | _PREAMBLE
    | _words(
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


# --- dates ---------------------------------------------------------------------------------------------

_MONTHS = {name: k for k, names in enumerate((
    "january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul", "august aug",
    "september sep sept", "october oct", "november nov", "december dec",
), 1) for name in names.split()}  # fmt: skip
_WEEKDAYS = {name: k for k, names in enumerate((
    "monday mon", "tuesday tue tues", "wednesday wed", "thursday thu thur thurs", "friday fri",
    "saturday sat", "sunday sun",
)) for name in names.split()}  # fmt: skip
_DATE_FILLERS = (
    _HESITATIONS | _PREAMBLE | _words("on the of by for date delivery please say maybe around time")
)
_FIXED_DAYS = {"today": 0, "tonight": 0, "tomorrow": 1, "yesterday": -1, "day after tomorrow": 2,
               "day before yesterday": -2}  # fmt: skip
_UNIT_DAYS = {"day": 1, "days": 1, "week": 7, "weeks": 7, "fortnight": 14, "fortnights": 14}
_UNIT_MONTHS = {"month": 1, "months": 1, "year": 12, "years": 12}


def spoken_date(text: str, today: date | None = None) -> str | None:
    """ISO date for a spoken date ("next tuesday", "the third of may"), resolved against today; else None."""
    today = today or date.today()
    toks = [w for t in tokenize(text) if (w := t.removesuffix("'s")) not in _DATE_FILLERS]
    if not toks:
        return None
    try:
        found = _relative_date(toks, today) or _absolute_date(toks, today)
        if found is None and len(toks) > 1 and toks[0] in _WEEKDAYS:  # "tuesday the first of december"
            found = _absolute_date(toks[1:], today)
    except (OverflowError, ValueError):  # arithmetic past date.max/min
        return None
    return found.isoformat() if found else None


def _relative_date(toks: list[str], today: date) -> date | None:
    """Dates said relative to today: "tomorrow", "next tuesday", "in two days", "a week from now"."""
    if (fixed := _FIXED_DAYS.get(" ".join(toks))) is not None:
        return today + timedelta(days=fixed)
    *mods, last = toks
    if last in _WEEKDAYS and mods in ([], ["this"], ["coming"], ["this", "coming"], ["next"], ["last"]):
        wd = _WEEKDAYS[last]
        if mods == ["next"]:
            return today + timedelta(days=7 - today.weekday() + wd)
        if mods == ["last"]:
            return today - timedelta(days=(today.weekday() - wd - 1) % 7 + 1)
        return today + timedelta(days=(wd - today.weekday()) % 7)
    sign = 1
    if toks[0] == "in":
        body = toks[1:]
    elif toks[-2:] in (["from", "now"], ["from", "today"]):
        body = toks[:-2]
    elif toks[-1] == "ago":
        body, sign = toks[:-1], -1
    else:
        return None
    if not body or (body[-1] not in _UNIT_DAYS and body[-1] not in _UNIT_MONTHS):
        return None
    count = _read_count(body[:-1])
    if count is None:
        return None
    if body[-1] in _UNIT_DAYS:
        return today + timedelta(days=sign * count * _UNIT_DAYS[body[-1]])
    months = today.month - 1 + sign * count * _UNIT_MONTHS[body[-1]]
    return _clamped(today.year + months // 12, months % 12 + 1, today.day)


def _read_count(words: list[str]) -> int | None:
    """How many days/weeks/months: "a", "a couple", "two", "10"; capped so arithmetic stays in range."""
    if words in (["a"], ["an"]):
        return 1
    if words in (["couple"], ["a", "couple"]):
        return 2
    if len(words) == 1 and words[0].isdigit():
        count = int(words[0]) if len(words[0]) <= 6 else None
    else:
        got = read_cardinal(words, 0) if words else None
        count = got[0] if got and got[1] == len(words) else None
    return count if count is not None and count <= 10_000 else None


def _clamped(year: int, month: int, day: int) -> date:
    """The date, or the month's last day when it is shorter ("in a month" from January 31st)."""
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            if day <= 28:
                raise
            day -= 1


def _absolute_date(toks: list[str], today: date) -> date | None:
    """Calendar dates: "may third", "the 3rd of may 2027", "12/05/2026", "the 21st"."""
    if len(toks) == 1 and is_numeric(toks[0]):
        return _figures_date(toks[0], today)
    if toks[0] in _MONTHS:
        day = _read_day(toks, 1)
        return _resolve(today, _MONTHS[toks[0]], day[0], toks[day[1] :]) if day else None
    day = _read_day(toks, 0)
    if day is None:
        return None
    if day[1] == len(toks):
        return _resolve_day(today, day[0]) if day[2] else None
    if toks[day[1]] in _MONTHS:
        return _resolve(today, _MONTHS[toks[day[1]]], day[0], toks[day[1] + 1 :])
    return None


def _read_day(toks: Sequence[str], i: int) -> tuple[int, int, bool] | None:
    """Read a day of the month at toks[i]: (day, next index, whether it was said as an ordinal)."""
    if i >= len(toks):
        return None
    got = read_ordinal(toks, i)
    ordinal = got is not None
    if got is None:
        t = toks[i]
        got = (int(t), i + 1) if t.isdigit() and len(t) <= 2 else read_cardinal(toks, i)
    return (got[0], got[1], ordinal) if got and 1 <= got[0] <= 31 else None


def _resolve(today: date, month: int, day: int, year_words: Sequence[str]) -> date | None:
    """The date with the spoken year, or without one the first such date on or after today."""
    if year_words:
        year = read_year(year_words)
        return _valid(year, month, day) if year else None
    for year in range(today.year, today.year + 9):  # nine years always include a February 29th
        found = _valid(year, month, day)
        if found and found >= today:
            return found
    return None


def _resolve_day(today: date, day: int) -> date | None:
    """A bare day of the month: this month's if not past, else the next month that has that day."""
    for ahead in range(13):
        months = today.month - 1 + ahead
        found = _valid(today.year + months // 12, months % 12 + 1, day)
        if found and found >= today:
            return found
    return None


def _valid(year: int, month: int, day: int) -> date | None:
    """The date, or None when it does not exist."""
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _figures_date(tok: str, today: date) -> date | None:
    """Dates in figures: ISO "2026-05-03", US "12/05/2026" or "12/05/26", "12/05" (next such date)."""
    parts = re.split(r"[/.-]", tok)
    if not all(p.isdigit() and len(p) <= 4 for p in parts):
        return None
    nums = [int(p) for p in parts]
    if len(parts) == 3 and len(parts[0]) == 4:
        return _valid(nums[0], nums[1], nums[2])
    if len(parts) not in (2, 3) or len(parts[0]) > 2 or len(parts[1]) > 2:
        return None
    month, day = (nums[1], nums[0]) if nums[0] > 12 >= nums[1] else (nums[0], nums[1])
    if len(parts) == 2:
        return _resolve(today, month, day, [])
    if len(parts[2]) not in (2, 4):
        return None
    return _valid(nums[2] + (2000 if len(parts[2]) == 2 else 0), month, day)


# --- email ---------------------------------------------------------------------------------------------

_EMAIL_SYMBOLS = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-", "minus": "-",
                  "plus": "+", "dotcom": ".com"}  # fmt: skip
_EMAIL_PREAMBLE = _HESITATIONS | _PREAMBLE | _words("my email e-mail mail address the")
_EMAIL_TRAILER = _words("please thanks thank you cheers")
_EMAIL = re.compile(r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}")
_SPELLED_WITH_HYPHENS = re.compile(r"[a-z0-9](?:-[a-z0-9])+")  # Whisper's "j-o-h-n"


def spoken_email(text: str) -> str | None:
    """Lower-case email address from dictation ("john dot smith at gmail dot com"); None if not valid."""
    if len(text) > MAX_CHARS:
        return None
    words = [w.strip(",;:!?\"'()[]<>.") for w in unicodedata.normalize("NFKC", text).lower().split()]
    words = [w for w in words if w and w not in _HESITATIONS]
    while len(words) > 1 and words[0] in _EMAIL_PREAMBLE and words[1] != "at":
        words.pop(0)
    while words and words[-1] in _EMAIL_TRAILER:
        words.pop()
    has_at = any("@" in w for w in words)
    at = -1 if has_at else max((k for k, w in enumerate(words) if w == "at"), default=-1)
    parts: list[str] = []
    k = 0
    while k < len(words):
        w = words[k]
        nxt = words[k + 1] if k + 1 < len(words) else ""
        if k == at:
            parts.append("@")
        elif w in _EMAIL_SYMBOLS:
            parts.append(_EMAIL_SYMBOLS[w])
        elif w in REPEATS and (len(nxt) == 1 or single_digit(nxt)):  # "double l", "double seven"
            parts.append((nxt if len(nxt) == 1 else single_digit(nxt) or "") * REPEATS[w])
            k += 1
        elif (w in UNITS or w in TEENS or w in TENS or w == "zero") and (got := read_digits(words, k)):
            parts.append(got[0])
            k = got[1] - 1
        elif _SPELLED_WITH_HYPHENS.fullmatch(w):
            parts.append(w.replace("-", ""))
        else:
            parts.append(w)
        k += 1
    email = "".join(parts)
    if not _EMAIL.fullmatch(email) or len(email) > 254 or email.index("@") > 64:
        return None
    return email


# --- free text -----------------------------------------------------------------------------------------

_PLACE_MINOR_WORDS = _words("of and the on upon in by de del la le du da am sur en")
_ACRONYMS = _words("uk usa us uae drc")


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
