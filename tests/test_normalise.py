"""Entity-value normalisation of what Whisper writes for speech: the readings, the refusals, no crashes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from voicebot.nlu.normalise import (
    normalise,
    spoken_alnum,
    spoken_amount,
    spoken_date,
    spoken_digits,
    spoken_email,
    spoken_letters,
)
from voicebot.nlu.numbers import parse_figures, read_cardinal, read_ordinal, tokenize, words_to_int

TODAY = date(2026, 11, 29)  # a Sunday


# --- number-word engine ---------------------------------------------------------------------------------


def cardinals(text: str) -> list[int | str]:
    """Split text into the cardinals the engine reads, marking tokens it cannot start one with "?"."""
    toks = tokenize(text)
    out: list[int | str] = []
    i = 0
    while i < len(toks):
        got = read_cardinal(toks, i)
        if got is None:
            out.append("?" + toks[i])
            i += 1
        else:
            out.append(got[0])
            i = got[1]
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seven", [7]),
        ("nineteen", [19]),
        ("forty nine", [49]),
        ("forty nine ninety nine", [49, 99]),
        ("one hundred twenty five fifty", [125, 50]),
        ("a hundred and twenty", [120]),
        ("two thousand three hundred", [2300]),
        ("fifteen hundred", [1500]),
        ("twenty five hundred", [2500]),
        ("four five seven", [4, 5, 7]),
        ("twenty twenty seven", [20, 27]),
        ("two thousand and twenty seven", [2027]),
        ("one million two hundred thousand and five", [1_200_005]),
        ("nine hundred ninety nine thousand nine hundred ninety nine", [999_999]),
        ("a thousand", [1000]),
        ("thousand thousand", ["?thousand", "?thousand"]),
        ("five hundred and", [500, "?and"]),
        ("a", ["?a"]),
        ("zero five", [0, 5]),
        ("two thousand one thousand", [2001, "?thousand"]),
    ],
)
def test_read_cardinal_splits_runs_of_numbers(text: str, expected: list[int | str]) -> None:
    assert cardinals(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("third", 3), ("twenty first", 21), ("thirtieth", 30), ("21st", 21), ("2nd", 2), ("4th", 4)],
)
def test_read_ordinal(text: str, expected: int) -> None:
    assert read_ordinal(tokenize(text), 0) == (expected, len(tokenize(text)))


@pytest.mark.parametrize("text", ["three", "twenty", "blue", "12345678th"])
def test_read_ordinal_refuses(text: str) -> None:
    assert read_ordinal(tokenize(text), 0) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("two thousand and five", 2005),
        ("1,299", 1299),
        ("zero", 0),
        ("Forty-Two", 42),
        ("forty two fifty", None),
        ("", None),
        ("blue", None),
    ],
)
def test_words_to_int(text: str, expected: int | None) -> None:
    assert words_to_int(text) == expected


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("49.99", "49.99"),
        ("1,299.00", "1299.00"),
        ("1.299,00", "1299.00"),
        ("1,299", "1299"),
        ("12,50", "12.50"),
        ("1.299.000", "1299000"),
        ("1,2,3", None),
        ("12/05", None),
        ("1,2.5", None),
    ],
)
def test_parse_figures(token: str, expected: str | None) -> None:
    got = parse_figures(token)
    assert (None if got is None else str(got)) == expected


def test_tokenize_keeps_whisper_number_forms_and_drops_punctuation() -> None:
    assert tokenize("Forty-nine, $49.99! It’s 457-219 on the 21st 😀.") == [
        "forty", "nine", "$", "49.99", "it's", "457-219", "on", "the", "21st",
    ]  # fmt: skip


# --- digits, letters, alphanumerics ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("four five seven two one nine", "457219"),
        ("double eight three oh", "8830"),
        ("triple five", "555"),
        ("oh o zero nought", "0000"),
        ("457219", "457219"),
        ("457-219", "457219"),
        ("4-5-7-2-1-9", "457219"),
        ("4 5 7 2 1 9", "457219"),
        ("#457219", "457219"),
        ("order number 457219", "457219"),
        ("45 72 nineteen", "457219"),
        ("forty five seventy two nineteen", "457219"),
        ("four five seven twenty one ninety", "4572190"),
        ("four hundred and five", "405"),
        ("a hundred", "100"),
        ("Four, five, seven.", "457"),
        ("Uh, it's four five... um, seven.", "457"),
        ("that's number 4 5 7", "457"),
        ("double 8 3", "883"),
        ("(555) 123-4567", "5551234567"),
        ("plus one five five five", "1555"),
        ("one two three four five six seven eight nine oh", "1234567890"),
    ],
)
def test_spoken_digits(text: str, expected: str) -> None:
    assert spoken_digits(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "blue",
        "",
        "   ",
        "no idea",
        "number",
        "double",
        "double twelve",
        "four five blue",
        "hundred",
        "the 3rd",
        "a b c",
        "four point five",
    ],
)
def test_spoken_digits_refuses(text: str) -> None:
    assert spoken_digits(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("j o h n", "JOHN"),
        ("J. O. H. N.", "JOHN"),
        ("J-O-H-N", "JOHN"),
        ("JOHN", "JOHN"),
        ("j as in juliet o h n", "JOHN"),
        ("j for juliet o h n", "JOHN"),
        ("alpha bravo", "AB"),
        ("Alpha, Bravo, X-ray.", "ABX"),
        ("double u", "W"),
        ("double you", "W"),
        ("b e double l a", "BELLA"),
        ("capital j, lower case o, h n", "JOHN"),
        ("see why are", "CYR"),
        ("it's s m i t h", "SMITH"),
        ("hello there", ""),
        ("", ""),
    ],
)
def test_spoken_letters(text: str, expected: str) -> None:
    assert spoken_letters(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a b c one two three", "ABC123"),
        ("A B C 1 2 3", "ABC123"),
        ("ABC123", "ABC123"),
        ("AB-123", "AB123"),
        ("alpha bravo charlie one two three", "ABC123"),
        ("x-ray five", "X5"),
        ("double a seven", "AA7"),
        ("double seven a", "77A"),
        ("o o seven", "OO7"),
        ("oh oh seven", "007"),
        ("b as in bravo twenty one", "B21"),
        ("it's q w e, four five six", "QWE456"),
    ],
)
def test_spoken_alnum(text: str, expected: str) -> None:
    assert spoken_alnum(text) == expected


@pytest.mark.parametrize("text", ["blue", "", "abc123", "q w e blue", "double twelve"])
def test_spoken_alnum_refuses(text: str) -> None:
    assert spoken_alnum(text) is None


# --- amounts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("forty nine ninety nine", "49.99"),
        ("forty nine dollars and ninety nine cents", "49.99"),
        ("$49.99", "49.99"),
        ("49.99", "49.99"),
        ("forty nine dollars", "49.00"),
        ("a hundred and twenty", "120.00"),
        ("one hundred twenty five fifty", "125.50"),
        ("two thousand three hundred", "2300.00"),
        ("ninety nine cents", "0.99"),
        ("1,299.00", "1299.00"),
        ("€1,299", "1299.00"),
        ("1299 euros", "1299.00"),
        ("twelve pounds fifty", "12.50"),
        ("three point five", "3.50"),
        ("fifteen hundred", "1500.00"),
        ("Forty-nine ninety-nine.", "49.99"),
        ("Forty-nine dollars, ninety-nine.", "49.99"),
        ("nineteen ninety nine", "19.99"),
        ("twelve oh five", "12.05"),
        ("twelve pounds five", "12.05"),
        ("forty nine and five cents", "49.05"),
        ("a dollar fifty", "1.50"),
        ("five hundred and fifty", "550.00"),
        ("two thousand and fifty", "2050.00"),
        ("1.299,00", "1299.00"),
        ("12,50 €", "12.50"),
        ("$2 million", "2000000.00"),
        ("49 99", "49.99"),
        ("three point one four nine", "3.15"),
        ("three point five oh", "3.50"),
        ("um, the refund was about twenty bucks", "20.00"),
        ("fifty p", "0.50"),
        ("zero", "0.00"),
        ("USD 20", "20.00"),
    ],
)
def test_spoken_amount(text: str, expected: str) -> None:
    assert spoken_amount(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no idea",
        "",
        "blue",
        "twelve five",
        "forty nine and",
        "$",
        "cents",
        "minus five",
        "1,2,3",
        "12/05/2026",
        "$49.99 and fifty",
        "forty nine dollars one hundred",
        "three point",
        "ninety nine cents fifty",
        "eight point 49.99",
        "nine hundred billion billion",
    ],
)
def test_spoken_amount_refuses(text: str) -> None:
    assert spoken_amount(text) is None


# --- dates ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("today", "2026-11-29"),
        ("tomorrow", "2026-11-30"),
        ("yesterday", "2026-11-28"),
        ("the day after tomorrow", "2026-12-01"),
        ("tuesday", "2026-12-01"),
        ("this friday", "2026-12-04"),
        ("next tuesday", "2026-12-01"),  # on a Sunday next week starts tomorrow
        ("sunday", "2026-11-29"),
        ("next sunday", "2026-12-06"),
        ("this coming saturday", "2026-12-05"),
        ("last friday", "2026-11-27"),
        ("the third of may", "2027-05-03"),
        ("may third", "2027-05-03"),
        ("may 3rd", "2027-05-03"),
        ("3rd may", "2027-05-03"),
        ("May the 3rd.", "2027-05-03"),
        ("the twenty first of june", "2027-06-21"),
        ("june twenty first", "2027-06-21"),
        ("june twenty one", "2027-06-21"),
        ("december first", "2026-12-01"),
        ("november twenty ninth", "2026-11-29"),
        ("on the 21st", "2026-12-21"),
        ("the thirtieth", "2026-11-30"),
        ("the 31st", "2026-12-31"),
        ("12/05/2026", "2026-12-05"),
        ("25/12/2026", "2026-12-25"),
        ("12/05/26", "2026-12-05"),
        ("5/3", "2027-05-03"),
        ("2026-05-03", "2026-05-03"),
        ("in two days", "2026-12-01"),
        ("in a week", "2026-12-06"),
        ("in a couple of days", "2026-12-01"),
        ("in a month", "2026-12-29"),
        ("a week from today", "2026-12-06"),
        ("three days ago", "2026-11-26"),
        ("the 3rd of May, 2027", "2027-05-03"),
        ("may third twenty twenty six", "2026-05-03"),
        ("the first of march two thousand and twenty eight", "2028-03-01"),
        ("tuesday the first of december", "2026-12-01"),
        ("february twenty ninth", "2028-02-29"),
        ("Uh, next Tuesday, please.", "2026-12-01"),
    ],
)
def test_spoken_date(text: str, expected: str) -> None:
    assert spoken_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "text",
    [
        "blue",
        "",
        "may",
        "february thirtieth",
        "13/13/2026",
        "2026-02-30",
        "the 32nd",
        "twenty one",
        "next week",
        "in a while",
        "in nine hundred billion days",
        "next blue",
        "may third blue",
    ],
)
def test_spoken_date_refuses(text: str) -> None:
    assert spoken_date(text, TODAY) is None


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("next tuesday", date(2026, 11, 30), "2026-12-08"),  # a Monday: next week's Tuesday, not tomorrow
        ("tuesday", date(2026, 11, 30), "2026-12-01"),
        ("this monday", date(2026, 11, 30), "2026-11-30"),
        ("last monday", date(2026, 11, 30), "2026-11-23"),
        ("in a month", date(2027, 1, 31), "2027-02-28"),
        ("the 31st", date(2027, 2, 1), "2027-03-31"),
        ("may third", date(2026, 5, 3), "2026-05-03"),
        ("may second", date(2026, 5, 3), "2027-05-02"),
    ],
)
def test_spoken_date_relative_to_other_days(text: str, today: date, expected: str) -> None:
    assert spoken_date(text, today) == expected


def test_spoken_date_defaults_to_the_real_today() -> None:
    assert spoken_date("today") == date.today().isoformat()


def test_relative_dates_near_the_calendar_edge_are_refused_not_raised() -> None:
    assert spoken_date("tomorrow", date.max) is None
    assert spoken_date("in a year", date(9999, 6, 1)) is None


# --- email ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("john dot smith at gmail dot com", "john.smith@gmail.com"),
        ("j o h n at example dot co dot uk", "john@example.co.uk"),
        ("john underscore smith at acme dot com", "john_smith@acme.com"),
        ("mary dash jones at acme dot com", "mary-jones@acme.com"),
        ("john hyphen smith at example dot org", "john-smith@example.org"),
        ("john at example.com", "john@example.com"),
        ("John.Smith@Example.com", "john.smith@example.com"),
        ("John Dot Smith At Gmail Dot Com.", "john.smith@gmail.com"),
        ("my email is john at gmail dot com", "john@gmail.com"),
        ("J-O-H-N at example dot com", "john@example.com"),
        ("john seventy five at gmail dot com", "john75@gmail.com"),
        ("b e double l a at example dot com", "bella@example.com"),
        ("it at example dot com", "it@example.com"),
        ("john plus shop at gmail dot com, thanks", "john+shop@gmail.com"),
    ],
)
def test_spoken_email(text: str, expected: str) -> None:
    assert spoken_email(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "blue",
        "",
        "john at gmail",
        "john smith",
        "at gmail dot com",
        "john dot at example dot com",
        "josé@example.com",
        "john@@example.com",
        "john at example dot c",
    ],
)
def test_spoken_email_refuses(text: str) -> None:
    assert spoken_email(text) is None


# --- dispatch ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity_type", "raw", "expected"),
    [
        ("order_id", "four five seven two one nine", "457219"),
        ("invoice_id", "INV number 4 5 7", None),
        ("digits", "double eight three oh", "8830"),
        ("ORDER_ID", " 457-219 ", "457219"),
        ("order_id", "blue", None),
        ("phone", "five five five, one two three, four five six seven", "5551234567"),
        ("phone", "+44 20 7946 0958", "442079460958"),
        ("phone", "one two three", None),
        ("refund_amount", "forty nine ninety nine", "49.99"),
        ("amount", "no idea", None),
        ("money", "£12.50", "12.50"),
        ("date", "next tuesday", "2026-12-01"),
        ("delivery_date", "the third of may", "2027-05-03"),
        ("email", "john dot smith at gmail dot com", "john.smith@gmail.com"),
        ("person_name", "john smith", "John Smith"),
        ("person_name", "O'BRIEN", "O'Brien"),
        ("person_name", "mary-jane o'neil", "Mary-Jane O'Neil"),
        ("person_name", "McDonald.", "McDonald"),
        ("person_name", "j o h n smith", "John Smith"),
        ("person_name", "J.R.R. Tolkien", "J. R. R. Tolkien"),
        ("person_name", "José García", "José García"),
        ("person_name", "john's", "John's"),
        ("person_name", "John 3", None),
        ("delivery_city", "new york", "New York"),
        ("delivery_city", "stoke-on-trent", "Stoke-on-Trent"),
        ("delivery_city", "St. Louis", "St Louis"),
        ("delivery_country", "united states of america", "United States of America"),
        ("delivery_country", "uk", "UK"),
        ("account_type", "  Premium  Plus. ", "premium plus"),
        ("account_type", "", None),
        ("issue", "  my parcel is late  ", "my parcel is late"),
        ("issue", "   ", None),
    ],
)
def test_normalise_dispatches_by_entity_type(entity_type: str, raw: str, expected: str | None) -> None:
    assert normalise(entity_type, raw, TODAY) == expected


# --- weird input --------------------------------------------------------------------------------------------

WEIRD = [
    "😀",
    "😀🙃🔥💯",
    "four " * 1000,  # 5,000 characters
    "9" * 5000,
    "quatre cinq sept",
    "四五七二一九",
    "сорок девять",
    "مرحبا بالعالم",
    "नमस्ते",
    "٤٥٧٢١٩",
    "\x00\x01\x02",
    "\u200b\u200b",
    "....",
    "-",
    "$$$ €€€",
    "NaN Infinity",
    "1e999 dollars",
    "double double double double",
    "and and and",
    "point point",
    "hundred thousand million billion",
    "@@@",
    "' ' ' -",
]
PARSERS: list[Callable[[str], str | None]] = [
    spoken_digits,
    spoken_alnum,
    spoken_amount,
    spoken_email,
    lambda text: spoken_date(text, TODAY),
    lambda text: normalise("phone", text, TODAY),
]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("text", WEIRD)
def test_weird_input_gives_none_not_an_exception(parse: Callable[[str], str | None], text: str) -> None:
    assert parse(text) is None


@pytest.mark.parametrize("entity_type", ["person_name", "delivery_city", "delivery_country", "account_type"])
@pytest.mark.parametrize("text", WEIRD)
def test_text_types_never_raise(entity_type: str, text: str) -> None:
    got = normalise(entity_type, text, TODAY)
    assert got is None or (got == got.strip() and got)


@pytest.mark.parametrize("text", WEIRD)
def test_spoken_letters_never_raises(text: str) -> None:
    got = spoken_letters(text)
    assert isinstance(got, str) and got == got.upper() and len(got) <= len(text)


def test_text_types_refuse_emoji_and_over_long_spans() -> None:
    assert normalise("person_name", "John 😀") is None
    assert normalise("delivery_city", "Paris " * 1000) is None
