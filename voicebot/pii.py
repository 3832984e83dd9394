"""Masking card numbers, emails and phone numbers before text reaches logs or call records.

A phone bot hears personal data both as Whisper transcripts ("four one one one …", "john dot smith at gmail
dot com") and as typed or normalised values ("4111 1111 1111 1111", "+447911123456"), while order ids,
invoice ids, amounts and dates must stay readable. This module imports only the standard library so that
logging setup cannot fail on it. The rules, decided once:

- Order: emails first, then digit runs (cards, then phones), so a 16-digit card is never called a phone.
- Emails: typed `x@y.z`, and spoken or mixed forms "x (dot|underscore|dash) y at z dot com" (also
  "dot co dot uk", "@" with spaces) become `[email]`. A spoken address needs its "dot <tld>"; a bare
  "at" ("call me at five") is not an email. Whisper also swallows the "at" ("john.smithagmail.com"):
  a name glued to a big mail provider's domain, and any dotted name right after "email (address) is",
  are `[email]` too.
- Digit runs: typed groups and spoken digit words (zero/oh/o/nought, one…nine, "double"/"triple"/"treble"
  X) are read into one run across spaces, dashes, dots and parentheses. Loose units (spoken words, single
  typed digits) also join across commas, sentence dots and "uh"/"um", since Whisper punctuates dictation
  at random; typed groups do not ("1,299", "457219. 5552140398" are separate numbers). ISO and dotted
  dates ("2026-12-03", "03.12.2026") and decimal amounts ("49.99") are never part of a run.
- A run of 13–19 digits passing the Luhn check is `[card]`. A run of 10–12 digits, or 8–15 after a
  leading "+"/"plus", is `[phone]`. Any other run of 13 or more digits is `[number]`: a long number read
  aloud is more likely personal than not. A typed "555-0142" (3-4 digits with a dash) is `[phone]`.
- Everything shorter is kept: 5–6 digit ids ("457219", "four five seven two one nine"), amounts, years,
  times and dates. The price of erring towards masking: two ids typed back to back with only a space
  between ("457219 52210") read as one 11-digit phone.
- Values of a known kind (`mask_value`) keep a hint: emails `j***@g***.com`, phones their last 2 digits,
  cards their last 4; a value too short to keep a hint is starred out completely.
- Secrets are not personal data but leak the same way, in request lines a server logs: the value of a
  credential query parameter (`?token=…`, `auth_token`, `password`, `signature`, …), of an
  `Authorization`/`X-Twilio-Signature` header and a URL's password become `[secret]`, and so does any
  value under a credential key in a mapping.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

EMAIL = "[email]"
CARD = "[card]"
PHONE = "[phone]"
NUMBER = "[number]"
SECRET = "[secret]"
UNLOGGABLE = "[unloggable message]"

T = TypeVar("T")

# --- emails --------------------------------------------------------------------------------------------

# Matches start only where a word does, and chains are bounded, so hostile text costs linear time.
_TYPED_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
_WORD = r"[a-z0-9]+"
_JOIN = r"(?:[._-]|\s+(?:dot|period|point|underscore|dash|hyphen)\s+)"
_PARTS = rf"{_WORD}(?:{_JOIN}{_WORD}){{0,6}}"  # "john dot smith", "john.smith", "gmail dot co"
_SPOKEN_EMAIL = re.compile(
    rf"\b{_PARTS}(?:\s*@\s*|\s+at\s+){_PARTS}(?:\.|\s+dot\s+)[a-z]{{2,6}}\b", re.IGNORECASE
)
# The "at" lost in transcription: glued to a well-known provider, or cued by the words before it. Matches
# start only where a token does and are bounded, so hostile text costs linear time.
_PROVIDERS = "gmail|googlemail|yahoo|ymail|hotmail|outlook|icloud|aol|protonmail|gmx"
_GLUED_EMAIL = re.compile(
    rf"(?<![\w.%+-])[\w.%+-]{{1,64}}?(?:{_PROVIDERS})\.[a-z]{{2,3}}(?:\.[a-z]{{2}})?(?![\w-])", re.IGNORECASE
)
_CUED_EMAIL = re.compile(
    r"(\be-?mail(?:\s+address)?(?:\s+is|\s*:|\s+it's)?\s+)[\w.%+-]{1,64}\.[a-z]{2,6}(?![\w-])", re.IGNORECASE
)

# --- secrets -------------------------------------------------------------------------------------------

_CREDENTIAL = r"(?:[a-z_]{0,24}token|password|passwd|secret|api_?key|signature)"  # bounded: linear time
_SECRET_PARAM = re.compile(rf"(\b{_CREDENTIAL}=)[^&\s\"'<>]+", re.IGNORECASE)
_SECRET_HEADER = re.compile(
    r"(\b(?:authorization|x-twilio-signature)\s*[:=]\s*(?:(?:bearer|basic)\s+)?)[^\s,;\"'<>]+", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]{0,15}://[^/\s:@]{1,64}:)[^/\s@]{1,256}(?=@)", re.IGNORECASE)
_SECRET_KEY = re.compile(rf"{_CREDENTIAL}|authorization", re.IGNORECASE)


def _mask_secrets(text: str) -> str:
    for pattern in (_SECRET_PARAM, _SECRET_HEADER, _URL_PASSWORD):
        text = pattern.sub(rf"\g<1>{SECRET}", text)
    return text


# --- digit runs ----------------------------------------------------------------------------------------

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "naught": "0", "one": "1", "two": "2", "three": "3",
    "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_REPEATS = {"double": 2, "triple": 3, "treble": 3}
_DIGIT_WORD = "|".join(_DIGIT_WORDS)
_ANY_DIGIT = re.compile(rf"\d|\b(?:{_DIGIT_WORD})\b", re.IGNORECASE)
# One scan tokenises everything; `other` (words, symbols) ends a run. `skip` is a date or decimal amount
# that must not join a run, and is never taken from inside a dotted or dashed number ("06.12.34.56.78").
_UNITS = re.compile(
    r"(?P<skip>(?<!\d[.\-])(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{4}|\d+\.\d{2})(?![.\-]?\d))"
    r"|(?P<typed>\d+)"
    rf"|(?P<spoken>\b(?:(?P<repeat>{'|'.join(_REPEATS)})[\s-]+)?(?P<word>{_DIGIT_WORD})\b)"
    r"|(?P<plus>\+|\bplus\b)"
    r"|(?P<filler>\b(?:uh|um|umm|erm|er|ah)\b)"
    r"|(?P<sep>[\s.,()\-]+)"
    r"|(?P<other>[^\W\d]+|.)",
    re.IGNORECASE | re.DOTALL,
)
_HAS_WORD = re.compile(r"[^\W\d]")
_SENTENCE_BREAK = re.compile(r"[,\n]|\.\s")
_SHORT_PHONE = re.compile(r"\d{3}-\d{4}")


@dataclass
class _Run:
    """Digits read so far in one run, and where the run lies in the text."""

    start: int
    end: int
    digits: str
    plus: bool
    loose: bool  # whether the last unit was a spoken word or a single typed digit


def _luhn(digits: str) -> bool:
    """The card-number checksum: it separates a card from any other long number."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _label(run: _Run, raw: str) -> str | None:
    """The placeholder for a finished run, or None to keep it."""
    n = len(run.digits)
    if 13 <= n <= 19 and _luhn(run.digits):
        return CARD
    if 10 <= n <= 12 or (run.plus and 8 <= n <= 15):
        return PHONE
    if n >= 13:
        return NUMBER
    return PHONE if _SHORT_PHONE.fullmatch(raw) else None


def _joins(gap: str, before_loose: bool, loose: bool) -> bool:
    """Whether the separator text between two units keeps them in one number."""
    if before_loose and loose:
        return True
    if _HAS_WORD.search(gap) or _SENTENCE_BREAK.search(gap):
        return False
    return sum(ch in ".-" for ch in gap) <= 1


def _mask_numbers(text: str) -> str:
    """Replace every digit run that `_label` names; the rest of the text is kept as it is."""
    spans: list[tuple[int, int, str]] = []
    run: _Run | None = None
    gap, gap_start, plus_at = "", 0, -1

    def close() -> None:
        nonlocal run
        if run is not None and (label := _label(run, text[run.start : run.end])):
            spans.append((run.start, run.end, label))
        run = None

    for m in _UNITS.finditer(text):
        kind = m.lastgroup
        if kind in ("sep", "filler"):
            gap_start = gap_start if gap else m.start()
            gap += m.group()
            continue
        if kind == "typed":
            digits = m.group()
        elif kind == "spoken":
            digits = _DIGIT_WORDS[m["word"].lower()] * _REPEATS.get((m["repeat"] or "").lower(), 1)
        else:
            close()
            plus_at = m.start() if kind == "plus" else -1
            gap = ""
            continue
        loose = kind == "spoken" or len(digits) == 1
        if run is not None and _joins(gap, run.loose, loose):
            run.digits += digits
            run.end, run.loose = m.end(), loose
        else:
            close()
            start = plus_at if plus_at >= 0 else m.start()
            if plus_at < 0 and "(" in gap:
                start = gap_start + gap.rindex("(")
            run = _Run(start, m.end(), digits, plus_at >= 0, loose)
        gap, plus_at = "", -1
    close()
    pieces: list[str] = []
    pos = 0
    for start, end, label in spans:
        pieces += [text[pos:start], label]
        pos = end
    return "".join([*pieces, text[pos:]])


# --- public API ----------------------------------------------------------------------------------------


# Our own ids (call ids: 32 hex digits or a UUID) are not personal data, and a digit run inside one is no
# phone number: they are set aside before masking and put back after.
_OWN_ID = re.compile(
    r"\b(?:[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b", re.I
)


def mask_text(text: str) -> str:
    """Masks card numbers, emails and phone numbers in free text (typed or spoken forms), and secrets."""
    if "=" in text or ":" in text:
        text = _mask_secrets(text)  # first: a token may be 32 hex digits, which the next step keeps
    ids = _OWN_ID.findall(text)
    if ids:
        text = _OWN_ID.sub("\x00", text)
    if "@" in text:
        text = _TYPED_EMAIL.sub(EMAIL, text)
    text = _SPOKEN_EMAIL.sub(EMAIL, text)
    text = _GLUED_EMAIL.sub(EMAIL, text)
    text = _CUED_EMAIL.sub(rf"\g<1>{EMAIL}", text)
    text = _mask_numbers(text) if _ANY_DIGIT.search(text) else text
    for own in ids:
        text = text.replace("\x00", own, 1)
    return text


_KINDS = {"email": "email", "email_address": "email", "phone": "phone", "phone_number": "phone",
          "card": "card", "card_number": "card"}  # fmt: skip


def pii_kind(key: object) -> str | None:
    """The PII kind a slot, entity or field name stands for ("card_number", "caller_phone"), if any."""
    if not isinstance(key, str):
        return None
    key = key.lower()
    return _KINDS.get(key) or next((kind for name, kind in _KINDS.items() if key.endswith("_" + name)), None)


def _keep_tail(value: str, keep: int, min_digits: int, placeholder: str) -> str:
    """Star out the digits of `value`, keeping the last `keep` only when enough remain hidden.

    Stars count as digits already hidden, so masking a masked value (a record that passes through a
    logger filter and then a handler filter) changes nothing.
    """
    digits = re.sub(r"[^\d*]", "", value)
    if not digits.strip("*"):
        return "*" * len(digits) or placeholder
    if len(digits) < min_digits:
        return "*" * len(digits)
    return "*" * (len(digits) - keep) + digits[-keep:]


def _mask_email(value: str) -> str:
    """'john.smith@gmail.com' -> 'j***@g***.com': enough to tell two callers apart, not to write to them."""
    local, _, domain = value.strip().rpartition("@")
    name, dot, tld = domain.rpartition(".")
    if not local or not name or not dot or not tld.isalpha():
        return EMAIL
    return f"{local[0]}***@{name[0]}***.{tld}"


@overload
def mask_value(kind: str, value: str) -> str: ...
@overload
def mask_value(kind: str, value: None) -> None: ...
@overload
def mask_value(kind: str, value: str | None) -> str | None: ...
def mask_value(kind: str, value: str | None) -> str | None:
    """Masks a normalised entity/slot value by its type.

    'email' -> 'j***@g***.com' style, 'phone' -> keep the last 2 digits '********98', 'card'/'card_number'
    -> keep the last 4 '************1111'; other kinds: mask_text(value), since any slot can hold PII.
    """
    if value is None:
        return None
    pii = pii_kind(kind)
    if pii == "email":
        return _mask_email(value)
    if pii == "phone":
        return _keep_tail(value, 2, 7, PHONE)
    if pii == "card":
        return _keep_tail(value, 4, 12, CARD)
    return mask_text(value)


def _mask_any(kind: str | None, value: Any) -> Any:
    """Mask one value of a mapping: strings (and ints under a PII key) masked, containers walked."""
    if kind == "secret" and value not in (None, ""):
        return SECRET
    if isinstance(value, str):
        return mask_value(kind, value) if kind else mask_text(value)
    if kind and isinstance(value, int) and not isinstance(value, bool):
        return mask_value(kind, str(value))
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list):
        return [_mask_any(kind, v) for v in value]
    if isinstance(value, tuple):
        return tuple(_mask_any(kind, v) for v in value)
    return value


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively masks str values (dict/list/tuple nested).

    A value under a key naming a PII kind (email, phone, card_number, card, or a name ending in `_<kind>`)
    is masked with `mask_value`, everything else with `mask_text`; non-string values are kept. Any value
    under a credential key ("token", "twilio_auth_token", "password", "authorization") is `[secret]`.
    """
    return {key: _mask_any(_kind_of(key), value) for key, value in data.items()}


def _kind_of(key: object) -> str | None:
    """`pii_kind`, or "secret" for a credential key."""
    if isinstance(key, str) and _SECRET_KEY.fullmatch(key):
        return "secret"
    return pii_kind(key)


# --- logging -------------------------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_TRACEBACKS = logging.Formatter()
# Piper's DEBUG line "text=…, phonemes=[[…]]": the text is masked like any other, but the phonemes spell the
# same words out in IPA ("f ˈ ɔ ː ɹ  f ˈ a ɪ v" is "four five"), which no rule here can read.
_PHONEMES = re.compile(r"(\bphonemes=)\[.*", re.DOTALL)


def _safe(fn: Callable[..., T], *args: Any) -> T | str:
    """Run one masking step; a bug in masking must not break logging, nor let the raw text through."""
    try:
        return fn(*args)
    except Exception:
        return UNLOGGABLE


class PIIFilter(logging.Filter):
    """Masks the formatted message, the traceback and `extra=` attributes of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _safe(lambda: _PHONEMES.sub(r"\g<1>[omitted]", mask_text(record.getMessage())))
        record.args = None
        if (exc := record.exc_info) and not record.exc_text:
            # Exception messages often quote the input; format the traceback now so it can be masked.
            record.exc_text = _safe(lambda: mask_text(_TRACEBACKS.formatException(exc)))
        if record.stack_info:
            record.stack_info = _safe(mask_text, record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS:
                setattr(record, key, _safe(_mask_any, _kind_of(key), value))
        return True


def install_log_masking(logger: logging.Logger | None = None) -> None:
    """Add a PIIFilter to the root (or given) logger and every handler it has now; idempotent.

    Handler filters are what catch records propagated from child loggers (a logger's own filters only see
    records logged on it), so call this after logging is configured: handlers added later are not covered.
    """
    target = logger or logging.getLogger()
    for holder in (target, *target.handlers):
        if not any(isinstance(f, PIIFilter) for f in holder.filters):
            holder.addFilter(PIIFilter())
