"""Replies for the ear: pick a template variant, fill its placeholders with values written to be spoken.

Variants rotate per call (the second time a prompt is needed it is said differently, which is also what a
reprompt should do), deterministically, so conversation tests are stable. Values are written the way a
person would say them: an order number digit by digit in groups ("8 3 0, 1 1 2"), "49 dollars and 99
cents", "tomorrow, Tuesday the 1st of December", an email with "at" and "dot".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date

from voicebot.domain.dialogue_spec import SayAs
from voicebot.domain.loader import Domain

_ORDINAL = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd", 31: "st"}


def digit_groups(length: int) -> list[int]:
    """How a person reads out `length` digits: threes, the last group two to four long (5 → 3 2, 6 → 3 3,
    7 → 3 4, 8 → 3 3 2, 10 → 3 3 4: a phone number's own grouping); four or fewer stay one group."""
    if length <= 4:
        return [length] if length else []
    groups = [3] * (length // 3)
    rest = length % 3
    if rest == 1:  # 7 → 3 4, 10 → 3 3 4: no lonely last digit
        groups[-1] += 1
    elif rest == 2:
        groups.append(2)
    return groups


def say_digits(value: str) -> str:
    """'457219' → '4 5 7, 2 1 9': TTS voices read separated digits one by one, never as a big number, and
    the comma is the short pause a person leaves between groups, so the caller can check the number as
    they would a human agent's read-back."""
    chars = [ch for ch in value if not ch.isspace()]
    out, start = [], 0
    for size in digit_groups(len(chars)):
        out.append(" ".join(chars[start : start + size]))
        start += size
    return ", ".join(out)


def say_phone(value: str) -> str:
    """'+1 617 555 0101' → '+ 1, 6 1 7, 5 5 5, 0 1 0 1': the last ten digits 3-3-4, what comes before them
    (the country code) as a group of its own."""
    chars = [ch for ch in value if ch.isdigit() or ch == "+"]
    if len(chars) <= 10:
        return say_digits("".join(chars))
    head, tail = chars[:-10], "".join(chars[-10:])
    return f"{' '.join(head)}, {say_digits(tail)}"


def say_amount(value: str) -> str:
    try:
        cents_total = round(float(value) * 100)
    except ValueError:
        return value
    dollars, cents = divmod(cents_total, 100)
    unit = "dollar" if dollars == 1 else "dollars"
    return f"{dollars} {unit}" + (f" and {cents} cents" if cents else "")


def say_date(value: str, today: date | None = None) -> str:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value
    spoken = f"{day:%A} the {day.day}{_ORDINAL.get(day.day, 'th')} of {day:%B}"
    offset = (day - (today or date.today())).days
    relative = {0: "today", 1: "tomorrow", -1: "yesterday"}.get(offset)
    return f"{relative}, {spoken}" if relative else spoken


def say_email(value: str) -> str:
    for mark, word in (("@", " at "), (".", " dot "), ("_", " underscore "), ("-", " dash ")):
        value = value.replace(mark, word)
    return " ".join(value.split())


def say(value: str, how: SayAs, today: date | None = None) -> str:
    if how in ("digits", "letters"):
        return say_digits(value)
    if how == "phone":
        return say_phone(value)
    if how == "amount":
        return say_amount(value)
    if how == "date":
        return say_date(value, today)
    if how == "email":
        return say_email(value)
    return value


def guess_say_as(key: str) -> SayAs:
    """How to speak an action output that is not a slot, by its name (documented in the README)."""
    if key.endswith("_date"):
        return "date"
    if key in ("amount", "total", "price") or key.endswith(("_amount", "_total")):
        return "amount"
    if key.endswith("_id") or key == "partial":
        return "digits"
    if key == "email" or key.endswith("_email") or key == "sent_to":
        return "email"
    return "text"


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


class NLG:
    def __init__(self, domain: Domain, today: date | None = None) -> None:
        self.domain = domain
        self.today = today
        self.used: Counter[str] = Counter()

    def spoken_values(self, values: Mapping[str, object]) -> dict[str, str]:
        out = {}
        for key, value in values.items():
            if value is None:
                continue
            slot = self.domain.slots.get(key)
            how = slot.spoken_as() if slot else guess_say_as(key)
            out[key] = say(str(value), how, self.today)
        return out

    def render(self, name: str, values: Mapping[str, object] | None = None) -> str:
        """The next variant of response `name`, filled; placeholders were checked when the domain loaded."""
        variants = self.domain.responses[name]
        text = variants[self.used[name] % len(variants)]
        self.used[name] += 1
        return text.format_map(_Blank(self.spoken_values(values or {})))


def fixed_phrases(domain: Domain) -> list[str]:
    """Every response variant and FAQ answer as written (placeholders left in): what the TTS cache is warmed
    with at start-up, minus the sentences that carry a placeholder (see `CachedTTS.warm_phrases`)."""
    texts = [variant for variants in domain.responses.values() for variant in variants]
    return [*texts, *domain.faq.values()]


def join(*parts: str) -> str:
    return " ".join(p.strip() for p in parts if p and p.strip())
