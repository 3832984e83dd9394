"""Partial corrections of a read-back digit string, the way callers make them to a human agent."""

from __future__ import annotations

import pytest

from voicebot.nlu.corrections import apply_correction

CASES = [
    # by position
    ("457218", "no, the last digit is nine", "457219"),
    ("457218", "the last one should be a nine", "457219"),
    ("457218", "last digit nine", "457219"),
    ("457219", "the last digit is nine", "457219"),  # already right: still a reading, unchanged
    ("451219", "the third one is a seven", "457219"),
    ("459219", "the third digit should be seven", "457219"),
    ("557219", "the first digit is a four", "457219"),
    ("457229", "the second to last is a one", "457219"),
    ("457229", "second last is a one", "457219"),
    ("457229", "the last but one should be one", "457219"),
    ("457219", "the 4th one should be a nine", "457919"),
    ("457218", "the last digit is a nine, not an eight", "457219"),
    ("457218", "the last digit is for", "457214"),  # homophone as the value
    ("457219", "the last two are one eight", "457218"),
    ("457219", "the last two digits are eighteen", "457218"),
    ("458219", "the first three are four five seven", "457219"),
    # by edge
    ("457219", "it ends in two one eight", "457218"),
    ("457219", "ends with 218", "457218"),
    ("457219", "one one two at the end", "457112"),
    ("457219", "it ends in one one two, not two one nine", "457112"),
    ("457219", "it starts with four five eight", "458219"),
    ("457219", "at the start it's four six", "467219"),
    # by swapping digits
    ("457219", "it's two one eight, not two one nine", "457218"),
    ("457219", "not 219, 218", "457218"),
    ("457219", "two one eight not two one nine", "457218"),
    ("457219", "sorry, I said 218 instead of 219", "457218"),
    ("457219", "change the five to a six", "467219"),
    ("457219", "the five should be a six", "467219"),
    ("457219", "the 2 is actually a 3", "457319"),
    ("457219", "change the one to a two", "457229"),
    # nothing to apply: None
    ("457219", "no, it's 457218", None),  # a whole number: read as a new number, not a correction
    ("457218", "no, not four five seven two one eight", None),  # the whole number is wrong: no swap in it
    ("457219", "it's 457218 not 457219", None),
    ("457219", "not four five seven two one nine, four five seven two one eight", None),
    ("457219", "I want to speak to an agent", None),
    ("457219", "two one eight", None),  # digits without saying where they go
    ("457219", "the last one", None),
    ("457219", "the seventh digit is a one", None),  # past the end
    ("457219", "the third one is seventy", None),  # not one digit
    ("451219", "change the one to a two", None),  # 1 occurs twice
    ("457219", "the eight should be a nine", None),  # no 8 to change
    ("457219", "it ends in four five seven two one eight", None),  # as long as the number
    ("457219", "the last two are one", None),  # two digits announced, one given
    ("", "the last digit is nine", None),
    ("457219", "", None),
]


@pytest.mark.parametrize(("current", "text", "expected"), CASES)
def test_apply_correction(current: str, text: str, expected: str | None) -> None:
    assert apply_correction(current, text) == expected


def test_result_never_changes_length() -> None:
    for _, text, _ in CASES:
        for current in ("457219", "12345", "1122334455"):
            got = apply_correction(current, text)
            assert got is None or (len(got) == len(current) and got.isdigit())
