"""PII masking: a planted set of cards, emails and phones (typed and spoken) that must be masked, ids,
amounts and dates that must not be, slot values by kind, and the logging filter on a real logger."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from voicebot import pii
from voicebot.pii import PIIFilter, install_log_masking, mask_mapping, mask_text, mask_value

VISA_SPOKEN = "four " + "one " * 15
AMEX_SPOKEN = "three seven eight two eight two two four six three one zero zero zero five"

MASKED = [
    # cards (Luhn-valid), typed and spoken
    ("my card is 4111 1111 1111 1111 thanks", "my card is [card] thanks"),
    ("4111-1111-1111-1111", "[card]"),
    ("4111111111111111", "[card]"),
    ("mastercard 5555 5555 5555 4444.", "mastercard [card]."),
    ("Amex 3782 822463 10005", "Amex [card]"),
    (f"the number is {VISA_SPOKEN}please", "the number is [card] please"),
    ("four double one one, one one one one, one one one one, triple one one", "[card]"),
    (AMEX_SPOKEN, "[card]"),
    ("4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1", "[card]"),
    ("four one one one uh one one one one um one one one one one one one one", "[card]"),
    # long numbers that fail Luhn
    ("card 1234 5678 9012 3456", "card [number]"),
    ("one two three four five six seven eight nine one two three four", "[number]"),
    # emails, typed and spoken
    ("email john.smith@gmail.com please", "email [email] please"),
    ("Mail me: J.Smith+tag@Example.co.uk!", "Mail me: [email]!"),
    ("my email is john dot smith at gmail dot com", "my email is [email]"),
    ("jane underscore doe at outlook dot co dot uk", "[email]"),
    ("mary dash ann at yahoo dot com thanks", "[email] thanks"),
    ("John.Smith at Gmail.com", "[email]"),
    ("jo123456789012@example.io", "[email]"),
    # phones: US, UK, E.164, typed and spoken
    ("(555) 214-0398", "[phone]"),
    ("call 555-214-0398 after six", "call [phone] after six"),
    ("555.214.0398", "[phone]"),
    ("+1 555 214 0398", "[phone]"),
    ("1-800-555-0199", "[phone]"),
    ("+44 7911 123456", "[phone]"),
    ("07911 123456", "[phone]"),
    ("020 7946 0958", "[phone]"),
    ("+447911123456", "[phone]"),
    ("5552140398", "[phone]"),
    ("+33 6 12 34 56 78", "[phone]"),
    ("06.12.34.56.78", "[phone]"),
    ("call 555-0142 now", "call [phone] now"),
    ("plus four four seven nine one one one two three four five six", "[phone]"),
    ("five five five, two one four, oh three nine eight", "[phone]"),
    ("oh seven nine one one, one two three, four five six", "[phone]"),
    ("double five five two one four oh three nine eight", "[phone]"),
    # mixed: only the personal parts go
    ("My order is 457219. 5552140398 is my phone.", "My order is 457219. [phone] is my phone."),
    ("order 457219, card 4111 1111 1111 1111, email jo@x.io", "order 457219, card [card], email [email]"),
    ("on 2026-12-03 5552140398", "on 2026-12-03 [phone]"),
]

KEPT = [
    "order 457219",
    "invoice 52210",
    "four five seven two one nine",
    "invoice five two two one zero",
    "four five seven two one nine and five two two one zero",
    "orders 457219, 457220",
    "double check order 457219",
    "$49.99",
    "it was 49.99 in total",
    "$120",
    "$12,345,678.90",
    "1,299.00",
    "the total is forty nine ninety nine",
    "2026",
    "2026-12-03",
    "03/12/2026",
    "03.12.2026",
    "10:30",
    "two tickets at 10:30 on 12/03/2026",
    "order 457219 for $49.99 on 2026-12-03",
    "call me at five",
    "I'll be there at 5 o'clock",
    "oh, one more thing",
    "meet me at the office",
    "",
]


@pytest.mark.parametrize(("text", "expected"), MASKED)
def test_masks_personal_data(text: str, expected: str) -> None:
    assert mask_text(text) == expected
    assert mask_text(expected) == expected  # masking twice changes nothing


@pytest.mark.parametrize("text", KEPT)
def test_keeps_ids_amounts_and_dates(text: str) -> None:
    assert mask_text(text) == text


def test_hostile_text_costs_linear_time() -> None:
    for text in ("a." * 20_000, "a dot " * 5_000, "a" * 50_000 + " @", "4-" * 20_000):
        mask_text(text)  # each took minutes with unbounded email patterns


# --- values by kind ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("email", "john.smith@gmail.com", "j***@g***.com"),
        ("EMAIL", "a@b.co.uk", "a***@b***.uk"),
        ("email", "not an email", "[email]"),
        ("phone", "5552140398", "********98"),
        ("phone", "+44 7911 123456", "**********56"),
        ("phone_number", "555", "***"),
        ("phone", "unknown", "[phone]"),
        ("card", "4111 1111 1111 1111", "************1111"),
        ("card_number", "378282246310005", "***********0005"),
        ("card_number", "1234", "****"),
        ("order_id", "457219", "457219"),
        ("amount", "49.99", "49.99"),
        ("note", "call me on 5552140398", "call me on [phone]"),
    ],
)
def test_mask_value_by_kind(kind: str, value: str, expected: str) -> None:
    assert mask_value(kind, value) == expected
    assert mask_value(kind, expected) == expected  # masking twice changes nothing


def test_mask_value_keeps_none() -> None:
    assert mask_value("email", None) is None


def test_mask_mapping_walks_nested_values_without_mutating() -> None:
    data: dict[Any, Any] = {
        "email": "john.smith@gmail.com",
        "slots": {"phone": 5552140398, "order_id": "457219", "card_number": ["4111111111111111"]},
        "caller_phone": "+447911123456",
        "turns": ("my card is 4111 1111 1111 1111", {"text": "mail jo@x.io"}),
        "confirmed": True,
        7: "5552140398",
    }
    before = repr(data)
    assert mask_mapping(data) == {
        "email": "j***@g***.com",
        "slots": {"phone": "********98", "order_id": "457219", "card_number": ["************1111"]},
        "caller_phone": "**********56",
        "turns": ("my card is [card]", {"text": "mail [email]"}),
        "confirmed": True,
        7: "[phone]",
    }
    assert repr(data) == before


# --- logging -------------------------------------------------------------------------------------------


Logged = tuple[logging.Logger, io.StringIO]


@pytest.fixture
def logged() -> Iterator[Logged]:
    """A private logger writing to a StringIO, with masking installed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("voicebot.test_pii")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    install_log_masking(logger)
    yield logger, stream
    logger.removeHandler(handler)
    for f in list(logger.filters):
        logger.removeFilter(f)


def test_filter_masks_percent_args(logged: Logged) -> None:
    logger, stream = logged
    logger.info("card %s from %s for order %d", "4111111111111111", "jo@x.io", 457219)
    logger.info("%(who)s called", {"who": "+44 7911 123456"})
    assert stream.getvalue() == "card [card] from [email] for order 457219\n[phone] called\n"


def test_filter_masks_child_loggers_through_the_handler(logged: Logged) -> None:
    logger, stream = logged
    logger.getChild("engine").propagate = True
    logger.getChild("engine").info("caller said 555-214-0398")
    assert stream.getvalue() == "caller said [phone]\n"


def test_filter_masks_extra_attributes_and_tracebacks(logged: Logged) -> None:
    logger, stream = logged
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s|%(phone)s|%(utterance)s|%(turn)s"))
    logger.info("turn", extra={"phone": "5552140398", "utterance": "I'm jo@x.io", "turn": 3})
    try:
        raise ValueError("bad card 4111 1111 1111 1111")
    except ValueError:
        logger.exception("failed", extra={"phone": None, "utterance": "", "turn": 4})
    out = stream.getvalue()
    assert out.startswith("turn|********98|I'm [email]|3\nfailed|None||4\nTraceback")
    assert "ValueError: bad card [card]" in out
    assert "4111" not in out


def test_filter_never_raises(
    logged: Logged, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    logger, stream = logged
    logger.info("%d items", "not a number")  # formatting fails
    monkeypatch.setattr(pii, "mask_text", lambda text: 1 / 0)  # masking fails
    logger.info("card 4111111111111111")
    assert stream.getvalue() == "[unloggable message]\n[unloggable message]\n"
    assert capsys.readouterr().err == ""  # logging printed no "--- Logging error ---"


def test_install_log_masking_is_idempotent_and_defaults_to_root() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        install_log_masking()
        install_log_masking()
        for holder in (root, handler):
            assert sum(isinstance(f, PIIFilter) for f in holder.filters) == 1
    finally:
        root.removeHandler(handler)
        filterers: list[logging.Filterer] = [root, *root.handlers]
        for filterer in filterers:
            for f in [f for f in filterer.filters if isinstance(f, PIIFilter)]:
                filterer.removeFilter(f)


def test_call_ids_are_not_phone_numbers() -> None:
    call_id = "4f0e2a1b9c8d7e6f5a4b3c2d1e0f9a53"
    uuid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    text = f"browser call {call_id} ended; asterisk {uuid}; caller said 5552140398"
    assert mask_text(text) == f"browser call {call_id} ended; asterisk {uuid}; caller said [phone]"
