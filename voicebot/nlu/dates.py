"""Spoken and written dates as ISO dates, resolved against today ("next friday", "the 3rd of may", "12/05").

Callers mostly say a date relative to today or without its year, so every reading needs a reference day and a
rule for the ambiguous cases; like the other entity parsers this returns None when the text cannot be a date,
so the dialogue re-asks rather than guessing. The rules, decided once, here:

- figures are US month/day unless the first number cannot be a month ("25/12/2026"); a date without a year
  is the first one on or after today.
- "friday"/"this friday" is the first Friday on or after today, "next friday" the Friday of next Monday-start
  week (on a Sunday the same day), "last friday" the latest one before today.
- a bare day must be an ordinal ("the 21st") and lands in the first month, from this one, where it is not
  past and exists; with a weekday and a date ("tuesday the first of december") the date wins.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, timedelta

from voicebot.nlu.numbers import (
    HESITATIONS,
    PREAMBLE,
    is_numeric,
    read_cardinal,
    read_ordinal,
    read_year,
    tokenize,
    word_set,
)

_MONTHS = {name: k for k, names in enumerate((
    "january jan", "february feb", "march mar", "april apr", "may", "june jun", "july jul", "august aug",
    "september sep sept", "october oct", "november nov", "december dec",
), 1) for name in names.split()}  # fmt: skip
_WEEKDAYS = {name: k for k, names in enumerate((
    "monday mon", "tuesday tue tues", "wednesday wed", "thursday thu thur thurs", "friday fri",
    "saturday sat", "sunday sun",
)) for name in names.split()}  # fmt: skip
_DATE_FILLERS = (
    HESITATIONS | PREAMBLE | word_set("on the of by for date delivery please say maybe around time")
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
