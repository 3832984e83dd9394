"""ASR-style augmentation: make typed training text look like the transcripts the NLU sees at runtime.

Typed corpora have capitals, punctuation and digits; a caller's transcript is lower-case, unpunctuated, says
numbers as words, and has fillers, dropped words and homophone slips. Training on both keeps the intent and
entity heads from leaning on cues that never arrive over the phone. BIO tags stay aligned through every edit:
a token spoken as several words tags them B-x, I-x, ...; entity words are only ever rewritten to their spoken
form, never dropped, swapped or split by a filler.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from models.bio import bio_to_spans, tokenize
from models.data import Example

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORD = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                 "nine": "ninth", "twelve": "twelfth"}  # fmt: skip
CURRENCY = {"$": ("dollar", "dollars"), "€": ("euro", "euros"), "£": ("pound", "pounds")}
MONEY_WORDS = frozenset(
    {"dollar", "dollars", "euro", "euros", "pound", "pounds", "bucks", "usd", "eur", "gbp"}
)
SYMBOLS = {
    "&": "and",
    "%": "percent",
    "+": "plus",
    "@": "at",
    "=": "equals",
    **{k: v[1] for k, v in CURRENCY.items()},
}
_MONTHS = "january february march april may june july august september october november december"
YEAR_CUES = frozenset({"in", "since", "year", "until", "till", "before", "after", "of", *_MONTHS.split()})
FILLERS = ("uh", "um", "uh", "um", "like", "you know", "i mean", "so")
_HOMOPHONE_SETS = (
    "to two too", "for four", "their there they're", "right write", "know no", "buy by bye", "hear here",
    "your you're", "its it's", "whether weather", "one won", "eight ate", "new knew", "week weak",
    "would wood", "mail male", "sale sail", "hour our", "wait weight", "through threw", "then than",
)  # fmt: skip
HOMOPHONES = {w: [o for o in s.split() if o != w] for s in _HOMOPHONE_SETS for w in s.split()}

_AMOUNT = re.compile(r"([$€£]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(%?)")
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DIGIT_GROUPS = re.compile(r"\d+(?:[-/.:]\d+)+")


@dataclass(frozen=True)
class AugmentProbs:
    """How often each ASR-like slip happens; the spoken-form rewrite itself is always applied."""

    homophone: float = 0.15  # per non-entity word that has a homophone
    drop: float = 0.05  # per non-entity word
    filler: float = 0.05  # per gap between words (never inside an entity)
    max_fillers: int = 2


# ------------------------------------------------------------------------------------------ numbers


def number_to_words(n: int) -> str:
    """Cardinal in American English without "and": 1250 -> "one thousand two hundred fifty"."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + (" " + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return ONES[n // 100] + " hundred" + (" " + number_to_words(n % 100) if n % 100 else "")
    scale, name = next((v, k) for v, k in SCALES if n >= v)
    head, rest = divmod(n, scale)
    return f"{number_to_words(head)} {name}" + (" " + number_to_words(rest) if rest else "")


def ordinal_to_words(n: int) -> str:
    """21 -> "twenty first"."""
    *head, last = number_to_words(n).split()
    last = _ORDINAL_WORD.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join([*head, last])


def digits_to_words(digits: str) -> str:
    """Digit by digit, the way callers read ids: "00457" -> "zero zero four five seven"."""
    return " ".join(ONES[int(c)] for c in digits if c.isdigit())


def year_to_words(n: int) -> str:
    """1999 -> "nineteen ninety nine", 2005 -> "two thousand five", 1905 -> "nineteen oh five"."""
    hi, lo = divmod(n, 100)
    if 2000 <= n < 2010 or n % 1000 == 0:
        return number_to_words(n)
    return (
        number_to_words(hi)
        + " "
        + ("hundred" if lo == 0 else f"oh {ONES[lo]}" if lo < 10 else number_to_words(lo))
    )


def say_number(token: str, prev: str = "", nxt: str = "") -> list[str] | None:
    """Spoken words for a numeric token, or None when it is not one; `prev`/`nxt` are neighbouring words.

    Amounts ("$49.99" -> "forty nine dollars ninety nine", "1,200", "50%") and numbers of up to 3 digits are
    cardinals; ids of 4+ digits or with a leading zero go digit by digit, except a 4-digit year after "in",
    "since", a month ... ("in 1999" -> "nineteen ninety nine") or a count before "dollars".
    """
    if m := _ORDINAL.fullmatch(token):
        return ordinal_to_words(int(m[1])).split()
    if m := _TIME.fullmatch(token):
        hour, minute = int(m[1]), int(m[2])
        tail = "" if minute == 0 else f" oh {ONES[minute]}" if minute < 10 else " " + number_to_words(minute)
        return (number_to_words(hour) + tail).split()
    if not (m := _AMOUNT.fullmatch(token)):
        return None
    cur, whole, frac, pct = m.groups()
    digits, money = whole.replace(",", ""), bool(cur) or nxt in MONEY_WORDS
    n = int(digits)
    if cur or pct or frac or money or "," in whole or len(digits) == 1:
        said = number_to_words(n)
    elif digits[0] == "0" or (len(digits) >= 4 and not (len(digits) == 4 and prev in YEAR_CUES)):
        said = digits_to_words(digits)
    else:
        said = year_to_words(n) if len(digits) == 4 else number_to_words(n)
    unit = CURRENCY[cur][0 if n == 1 else 1] if cur else ""
    if frac and money:
        cents = int(frac[:2].ljust(2, "0"))
        said += (f" {unit}" if unit else "") + (f" {number_to_words(cents)}" if cents else "")
    elif frac:
        said += " point " + digits_to_words(frac)
    elif unit:
        said += f" {unit}"
    return (said + (" percent" if pct else "")).split()


# ------------------------------------------------------------------------------------------ words


def _say_token(token: str, prev: str, nxt: str) -> list[str]:
    """One typed token as lower-case spoken words (maybe none, for bare punctuation)."""
    low = token.lower().replace("’", "'")
    if low in SYMBOLS:
        return [SYMBOLS[low]]
    if (said := say_number(low, prev, nxt)) is not None:
        return said
    if _DIGIT_GROUPS.fullmatch(low):  # "457-219" reads as one id, "24/7" as two numbers
        groups = re.findall(r"\d+", low)
        if sum(map(len, groups)) >= 4:
            return digits_to_words(low).split()
        return [w for g in groups for w in number_to_words(int(g)).split()]
    if "@" in low:
        low = low.replace("@", " at ").replace(".", " dot ")
    out: list[str] = []
    for piece in re.split(r"[^\w']+|_", low):
        for run in re.findall(r"\d+|[^\d]+", piece.strip("'")):
            out += (
                (say_number(run, prev, nxt) or [])
                if run.isdigit()
                else [run.strip("'")]
                if run.strip("'")
                else []
            )
    return out


def _with_tags(words: Sequence[str], tag: str) -> list[tuple[str, str]]:
    """A token's tag spread over the words it became: B-x, I-x, I-x ..."""
    inside = "I-" + tag[2:] if tag != "O" else "O"
    return [(w, tag if i == 0 else inside) for i, w in enumerate(words)]


def _repair(tags: list[str]) -> list[str]:
    """An I-x left without its B-x (its punctuation-only first token vanished) becomes B-x."""
    return [
        ("B-" + t[2:] if t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:]) else t)
        for i, t in enumerate(tags)
    ]


def _continues(tag: str, nxt: str) -> bool:
    return nxt == ("I-" + tag[2:] if tag != "O" else "O")


def _join_numbers(tokens: Sequence[str], tags: Sequence[str]) -> tuple[list[str], list[str]]:
    """Re-join "1" "," "200" and "9" ":" "05" (the tokeniser cuts them) when they are one entity or none."""
    toks: list[str] = []
    kept: list[str] = []
    for tok, tag in zip(tokens, tags, strict=True):
        if (
            len(toks) >= 2
            and toks[-1] in (",", ":")
            and _continues(kept[-2], kept[-1])
            and _continues(kept[-1], tag)
        ):
            joined = toks[-2] + toks[-1] + tok
            if _AMOUNT.fullmatch(joined) or _TIME.fullmatch(joined):
                toks[-2:], kept[-1:] = [joined], []
                continue
        toks.append(tok)
        kept.append(tag)
    return toks, kept


def spoken_tokens(tokens: Sequence[str], tags: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """Deterministic spoken form of tagged tokens: lower case, no punctuation, numbers as words."""
    tokens, tags = _join_numbers(tokens, tags if tags is not None else ["O"] * len(tokens))
    low = [t.lower() for t in tokens]
    said: list[list[tuple[str, str]]] = [[] for _ in tokens]
    i = 0
    while i < len(tokens):
        prev, nxt = (low[i - 1] if i else ""), (low[i + 1] if i + 1 < len(low) else "")
        after = low[i + 2] if i + 2 < len(low) else ""
        amount = say_number(nxt, low[i], "dollars") if low[i] in CURRENCY and nxt[:1].isdigit() else None
        if amount is not None:  # "$ 160": the symbol is said after the number, "one hundred sixty dollars"
            same = tags[i + 1] == ("I-" + tags[i][2:] if tags[i] != "O" else "O")
            if same:
                said[i] = _with_tags(say_number(low[i] + nxt, prev, after) or amount, tags[i])
            else:  # different tags: the number keeps its own, the currency word keeps the symbol's
                said[i + 1] = [*_with_tags(amount, tags[i + 1]), (CURRENCY[low[i]][1], tags[i])]
            i += 2
            continue
        said[i] = _with_tags(_say_token(tokens[i], prev, nxt), tags[i])
        i += 1
    for _, start, end in bio_to_spans(tokens, tags, strict=False):
        if not any(said[start:end]):  # an all-punctuation entity must not vanish
            said[start] = [(low[start], tags[start])]
    pairs = [p for group in said for p in group]
    return [w for w, _ in pairs], _repair([t for _, t in pairs])


def asr_style(text: str) -> str:
    """Text as an ideal ASR would print it, for building ASR-style test sets: "Order #457219?" ->
    "order four five seven two one nine"."""
    return " ".join(spoken_tokens([t for t, _, _ in tokenize(text.replace("’", "'"))])[0])


def augment(example: Example, rng: random.Random, p: AugmentProbs | None = None) -> Example:
    """A noisy ASR-like copy of `example` (same intent, tags realigned); same rng state, same copy."""
    p = p or AugmentProbs()
    tokens = example.tokens if example.tokens is not None else [t for t, _, _ in tokenize(example.text)]
    words, tags = spoken_tokens(tokens, example.tags)
    words = [
        rng.choice(HOMOPHONES[w]) if t == "O" and w in HOMOPHONES and rng.random() < p.homophone else w
        for w, t in zip(words, tags, strict=True)
    ]
    keep = [not (t == "O" and rng.random() < p.drop) for t in tags]
    if not any(keep):
        keep = [True] * len(words)
    out_words: list[str] = []
    out_tags: list[str] = []
    budget = p.max_fillers
    for i in range(len(words) + 1):
        if budget and (i == len(words) or not tags[i].startswith("I-")) and rng.random() < p.filler:
            filler = rng.choice(FILLERS).split()
            out_words += filler
            out_tags += ["O"] * len(filler)
            budget -= 1
        if i < len(words) and keep[i]:
            out_words.append(words[i])
            out_tags.append(tags[i])
    return Example(
        text=" ".join(out_words),
        intent=example.intent,
        tokens=out_words if example.tokens is not None else None,
        tags=out_tags if example.tags is not None else None,
        labels=list(example.labels) if example.labels is not None else None,
        source=example.source,
    )
