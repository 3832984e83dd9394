"""Reading an expected digit string from Whisper's transcript: real phone-line slips, homophones, ranking."""

from __future__ import annotations

import pytest

from voicebot.nlu.digits import digit_candidates, digit_tokens, read_digit_words
from voicebot.nlu.normalise import spoken_digits

# (transcript, min_length, max_length, what the caller said): the intended number must be the first candidate.
FIRST = [
    # real Whisper outputs from phone audio
    ("3-Double 4-9-6-4.", 6, 6, "344964"),
    ("It's 808-245.", 6, 6, "808245"),
    ("on 7987-336.", 6, 6, "798736"),  # "um" written "on", a digit doubled
    ("U178456.", 6, 6, "178456"),  # "um" glued on as the letter U
    ("I'm double 1-2-1-8-6.", 6, 6, "112186"),  # "um" written "I'm"
    ("The number is 0079109.", 6, 6, "779109"),  # "double" written "00"
    ("The number is 902905.", 6, 6, "902905"),  # literal reading fits: it stays first
    ("My order number is 45721.", 6, 6, "45721"),  # one short: kept as the start of the number
    ("457211", 6, 6, "457211"),
    ("I'm 98875.", None, None, "98875"),
    ("4, I'm 7, 2, 1, I-", None, None, "4721"),
    # digit words, homophones and separators
    ("four five seven two one nine", 6, 6, "457219"),
    ("for five seven to one nine", 6, 6, "457219"),
    ("four five seven too won nine", 6, 6, "457219"),
    ("ate ate three oh five nine", 6, 6, "883059"),
    ("nine Nero free won ate fife", 6, 6, "903185"),
    ("niner niner nil one nought two", 6, 6, "990102"),
    ("four five tree two one nine", 6, 6, "453219"),
    ("four five seven two one sicks", 6, 6, "457216"),
    ("457 dash 219", 6, 6, "457219"),
    ("4.5.7.2.1.9", 6, 6, "457219"),
    ("#457219", 6, 6, "457219"),
    ("457/219", 6, 6, "457219"),
    ("number 4 5 7, 2 1 9", 6, 6, "457219"),
    ("four, um, five seven, uh, two one nine", 6, 6, "457219"),
    # double, triple
    ("Double 4 5 7 2 1", 6, 6, "445721"),
    ("double-four five triple seven", 6, 6, "445777"),
    ("treble two oh one nine", 6, 6, "222019"),
    ("double oh five two one nine", 6, 6, "005219"),
    # letters in a digit run
    ("4O7219", 6, 6, "407219"),
    ("45S219", 6, 6, "455219"),
    ("I-244167-5", 8, 8, "92441675"),  # said "nine two four…": "nine" lost its n's (SOUNDALIKES)
    ("4, I'm 7, 2, 1, I-", 6, 6, "457219"),  # espeak's "four five seven two one nine" on a poor line
    ("9 8, I'm 3, I'm 2.", 6, 6, "985352"),
    ("My order number is 4 6 1, I know.", 5, 5, "46190"),  # "nine oh"
    ("B57219", 6, 6, "857219"),
    ("A30 112.", 6, 6, "830112"),  # "eight three zero" written "A30" (Piper joe over G.711, bench_turns)
    ("A3-0-112.", 6, 6, "830112"),
    ("It is A 457219", 6, 6, "457219"),  # an article before a whole number stays an article
    ("45S219", None, None, "455219"),  # a letter between digits is likelier a digit
    ("457219 S", None, None, "457219"),  # ... than one at the edge
    # groups
    ("forty five seventy two nineteen", 6, 6, "457219"),
    ("four fifty seven two nineteen", 6, 6, "457219"),
    ("eight thirty, one twelve", 6, 6, "830112"),
    ("eight hundred thirty one twelve", 6, 6, "830112"),
    ("four hundred and five", None, None, "405"),
    # sentences around the number
    ("yeah it's four five seven two one nine thanks", 6, 6, "457219"),
    ("my order number is 457219", 6, 6, "457219"),
    ("the order number is 457219 and I want to cancel it", 6, 6, "457219"),
    ("sure, the invoice is 12345", 5, 5, "12345"),
    ("my order is 457219 and my invoice is 12345", None, None, "457219"),  # two numbers: longest first
    ("my order is 457219 and my invoice is 12345", 5, 5, "12345"),  # ... or the one that fits
    ("four five seven. Yes, two one nine.", 6, 6, "457219"),  # one number said in two goes
    ("I think it is for 457219", 6, 6, "457219"),  # "for" before figures is a preposition
]


@pytest.mark.parametrize(("text", "lo", "hi", "expected"), FIRST)
def test_intended_number_comes_first(text: str, lo: int | None, hi: int | None, expected: str) -> None:
    got = digit_candidates(text, lo, hi)
    assert got[:1] == [expected], got


# (transcript, min_length, max_length, a reading that must be among the candidates)
AMONG = [
    ("The number is 902905.", 6, 6, "909905"),  # "double" heard as "two"
    ("The number is 0079109.", 6, 6, "079109"),  # or the doubled zero
    ("I'm 98875.", None, None, "198875"),  # "I'm" as "one am"
    ("I'm 98875.", 6, 6, "98875"),
    ("4, I'm 7, 2, 1, I-", None, None, "457219"),
    ("I-244167-5", None, None, "2441675"),
    ("45S219", None, None, "45219"),
    ("eight hundred thirty one twelve", None, None, "83112"),
    ("on 7987-336.", 6, 6, "7987336"),  # the literal reading stays, after the fitting one
    ("four five seven. Yes, two one nine.", None, None, "457"),
    ("It's time 1 time 7 3 8.", 6, 6, "915738"),  # a poor line's "time" is a five or a nine
    ("My order number is time double 2 1 0.", 5, 5, "52210"),
    ("3 2 5 1 mine know", 6, 6, "325190"),
    # "five" and "nine" heard as "I"/"I'm" (espeak-us in docs/results/spoken.json; held-out voices not used)
    ("The number is 2, 0, 3, I 1 8.", 6, 6, "203918"),
    ("I 1, I 7, 3 8", 6, 6, "915738"),
    ("My order number in 3 I m 8 2 0 3.", 6, 6, "358203"),
    ("It's 2 3 2 2, I double 1 1.", 8, 8, "23225111"),
    # "zero" heard as "near of" / "near or" (espeak-us, docs/results/spoken.json and asr_utterances.csv)
    ("The number is 6 6, near of 6 6 2 3 2 4 5.", 10, 10, "6606623245"),
    ("My customer I need is one, near of near of 482.", 6, 6, "100482"),
]


@pytest.mark.parametrize(("text", "lo", "hi", "expected"), AMONG)
def test_alternative_readings_are_offered(text: str, lo: int | None, hi: int | None, expected: str) -> None:
    assert expected in digit_candidates(text, lo, hi)


@pytest.mark.parametrize(
    "text",
    [
        "I want to speak to an agent",
        "I live near the station",
        "can I cancel it",
        "",
        "I'm not sure",
        "oh, I need it for tomorrow",
        "it was too late to order",
        "free delivery please",
        "I ate it",
        "double check it",
        "I want it in time for christmas",
        "O",
        "four" * 200,  # longer than any spoken entity
    ],
)
def test_no_digits_no_candidates(text: str) -> None:
    assert digit_candidates(text, 6, 6) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4, I'm 7, 2, 1, I-", ["4721", "47219", "45721", "457219", "47215", "49721", "457215", "497219"]),
        ("U178456.", ["178456"]),
        ("the order number is 457219 and I want to cancel it", ["457219"]),
    ],
)
def test_exact_list_without_a_length(text: str, expected: list[str]) -> None:
    assert digit_candidates(text) == expected


def test_fitting_readings_come_before_the_literal_one() -> None:
    got = digit_candidates("The number is 0079109.", 6, 6)
    assert got.index("779109") < got.index("0079109")
    assert all(len(d) == 6 for d in got[: got.index("0079109")])


def test_list_is_short_deduplicated_and_digits_only() -> None:
    for text in (
        "I I I 4 I I I 5 I I I 6 I I I",
        "four for to too two won one " * 5,
        "nine Nero free won ate fife",
    ):
        got = digit_candidates(text, 6, 6)
        assert 0 < len(got) <= 8
        assert len(set(got)) == len(got)
        assert all(d.isdigit() for d in got)


def test_homophones_stay_out_of_free_text_normalisation() -> None:
    assert spoken_digits("for five seven to one nine") is None
    assert digit_candidates("for five seven to one nine")[0] == "457219"


def test_pauses_split_groups() -> None:
    assert digit_tokens("eight thirty, one twelve. 1,299") == [
        "eight",
        "thirty",
        "|",
        "one",
        "twelve",
        "|",
        "1,299",
        "|",
    ]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["nine"], "9"),
        (["for"], "4"),
        (["two", "one", "eight"], "218"),
        (["double", "oh"], "00"),
        (["eighteen"], "18"),
        (["218"], "218"),
        (["um", "nine"], "9"),
        (["wrong"], None),
        (["nine", "please"], None),
        ([], None),
    ],
)
def test_read_digit_words(words: list[str], expected: str | None) -> None:
    assert read_digit_words(words) == expected
