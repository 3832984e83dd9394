"""Spelled-out letters and dictated email addresses, read from what Whisper writes for them.

Callers spell names and ids letter by letter ("j as in juliet", "double u", "alpha bravo") and dictate an
email word by word ("john dot smith at gmail dot com"); Whisper writes the letter names, NATO words and
spelling aids as words, so these readers turn them back into characters. Ambiguous readings are decided
once, here:

- letters: "double u" is W, not UU; words that are neither letters nor spelling aids are ignored.
- email: the last spoken "at" is the @ unless the text already has one; number words become digits; ASCII
  only; None when the result is not a valid address.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from voicebot.nlu.numbers import (
    HESITATIONS,
    MAX_CHARS,
    PREAMBLE,
    REPEATS,
    TEENS,
    TENS,
    UNITS,
    read_digits,
    single_digit,
    tokenize,
    word_set,
)

# --- letters -------------------------------------------------------------------------------------------

# Every NATO word starts with its letter, alternates included ("alfa", "juliett", "whisky").
_NATO = {w: w[0].upper() for w in word_set(
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
LETTER_FILLERS = (
    HESITATIONS
    | PREAMBLE
    | word_set("capital small letter letters upper lower uppercase lowercase case then and spelled spelt")
)


def read_letter(toks: Sequence[str], i: int, *, oh_is_letter: bool) -> tuple[str, int] | None:
    """Read one spelled letter at toks[i] (case kept), skipping a spelling aid after it ("j as in juliet")."""
    t = toks[i]
    low = t.lower()
    if low in REPEATS and i + 1 < len(toks):
        got = read_letter(toks, i + 1, oh_is_letter=oh_is_letter)
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
        got = None if toks[i].lower() in LETTER_FILLERS else read_letter(toks, i, oh_is_letter=True)
        if got is None:
            i += 1
        else:
            out.append(got[0])
            i = got[1]
    return "".join(out)


# --- email ---------------------------------------------------------------------------------------------

_EMAIL_SYMBOLS = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-", "minus": "-",
                  "plus": "+", "dotcom": ".com"}  # fmt: skip
_EMAIL_PREAMBLE = HESITATIONS | PREAMBLE | word_set("my email e-mail mail address the")
_EMAIL_TRAILER = word_set("please thanks thank you cheers")
_EMAIL = re.compile(r"[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}")
_SPELLED_WITH_HYPHENS = re.compile(r"[a-z0-9](?:-[a-z0-9])+")  # Whisper's "j-o-h-n"


def spoken_email(text: str) -> str | None:
    """Lower-case email address from dictation ("john dot smith at gmail dot com"); None if not valid."""
    if len(text) > MAX_CHARS:
        return None
    words = [w.strip(",;:!?\"'()[]<>.") for w in unicodedata.normalize("NFKC", text).lower().split()]
    words = [w for w in words if w and w not in HESITATIONS]
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
