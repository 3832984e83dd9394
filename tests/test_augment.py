"""ASR-style augmentation: spoken numbers, aligned BIO tags, untouched entities, determinism."""

from __future__ import annotations

import random

import pytest

from models.augment import (
    AugmentProbs,
    asr_style,
    augment,
    digits_to_words,
    number_to_words,
    ordinal_to_words,
    spoken_tokens,
)
from models.data import Example, bio_error, bio_to_spans, load_dataset
from tests.conftest import needs_data

QUIET = AugmentProbs(homophone=0.0, drop=0.0, filler=0.0)


@pytest.mark.parametrize(
    ("n", "words"),
    [(0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty one"), (100, "one hundred"),
     (101, "one hundred one"), (999, "nine hundred ninety nine"), (1000, "one thousand"),
     (1200, "one thousand two hundred"), (1_000_001, "one million one"),
     (123_456_789,
      "one hundred twenty three million four hundred fifty six thousand seven hundred eighty nine")],
)  # fmt: skip
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_ordinals_and_digits() -> None:
    assert [ordinal_to_words(n) for n in (1, 2, 3, 5, 12, 20, 21, 100)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty first",
        "one hundredth"]  # fmt: skip
    assert digits_to_words("00457") == "zero zero four five seven"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("457219", "four five seven two one nine"),
        ("Order #00123842!", "order zero zero one two three eight four two"),
        ("$49.99", "forty nine dollars ninety nine"),
        ("It's $1.", "it's one dollar"),
        ("49.99 dollars", "forty nine ninety nine dollars"),
        ("refund 1200 dollars", "refund one thousand two hundred dollars"),
        ("I paid $1,250 for 3 items", "i paid one thousand two hundred fifty dollars for three items"),
        ("3.5% of 120", "three point five percent of one hundred twenty"),
        ("on the 21st at 9:05, in 1999", "on the twenty first at nine oh five in nineteen ninety nine"),
        ("call 555-1234 24/7", "call five five five one two three four twenty four seven"),
        ("Hi, I'd like to TRACK my order?!", "hi i'd like to track my order"),
        ("Mr. Jones & co", "mr jones and co"),
    ],
)
def test_asr_style(text: str, spoken: str) -> None:
    assert asr_style(text) == spoken


def test_spoken_tokens_expand_tags() -> None:
    words, tags = spoken_tokens(["Order", "457", "for", "Ann-Marie", "?"], ["O", "B-id", "O", "B-name", "O"])
    assert words == ["order", "four", "hundred", "fifty", "seven", "for", "ann", "marie"]
    assert tags == ["O", "B-id", "I-id", "I-id", "I-id", "O", "B-name", "I-name"]
    # a currency symbol outside the entity is said after the number and keeps its own tag
    words, tags = spoken_tokens(["refund", "$", "160"], ["O", "O", "B-amount"])
    assert list(zip(words, tags, strict=True)) == [
        ("refund", "O"), ("one", "B-amount"), ("hundred", "I-amount"), ("sixty", "I-amount"),
        ("dollars", "O")]  # fmt: skip
    # a punctuation-only first entity token vanishes and the next one takes the B-
    assert spoken_tokens(["(", "Bob", ")"], ["B-name", "I-name", "O"]) == (["bob"], ["B-name"])


def test_drops_fillers_and_homophones_spare_entities() -> None:
    ex = Example("to buy two for you", "x", ["to", "buy", "two", "for", "you"], ["O", "O", "B-n", "I-n", "O"])
    dropped = augment(ex, random.Random(0), AugmentProbs(homophone=0.0, drop=1.0, filler=0.0))
    assert dropped.tokens == ["two", "for"] and dropped.tags == ["B-n", "I-n"]
    swapped = augment(ex, random.Random(0), AugmentProbs(homophone=1.0, drop=0.0, filler=0.0))
    assert swapped.tokens is not None and swapped.tokens[2:4] == ["two", "for"]
    assert swapped.tokens[0] in ("two", "too") and swapped.tokens[1] in ("by", "bye")
    filled = augment(ex, random.Random(0), AugmentProbs(homophone=0.0, drop=0.0, filler=1.0, max_fillers=99))
    assert filled.tags is not None and filled.tokens is not None
    assert bio_to_spans(filled.tokens, filled.tags) == [
        ("n", filled.tokens.index("two"), filled.tokens.index("two") + 2)
    ]
    assert len(filled.tokens) > 6


def test_untagged_example_stays_untagged() -> None:
    ex = Example("Where's my order 457219?", "track_order", labels=["a", "b"])
    out = augment(ex, random.Random(1), QUIET)
    assert (
        out.text == "where's my order four five seven two one nine"
        and out.tokens is None
        and out.tags is None
    )
    assert out.labels == ["a", "b"] and out.intent == "track_order"


def _pool() -> list[Example]:
    rng = random.Random(7)
    snips, bitext = load_dataset("snips"), load_dataset("bitext")
    tagged = [e for e in bitext.train if e.tags and any(t != "O" for t in e.tags)]
    return rng.sample(snips.train, 250) + rng.sample(tagged, 200) + rng.sample(bitext.train, 50)


def _entities(tokens: list[str] | None, tags: list[str] | None) -> list[tuple[str, list[str]]]:
    assert tokens is not None and tags is not None
    return [(k, tokens[s:e]) for k, s, e in bio_to_spans(tokens, tags)]


@needs_data
def test_augmentation_keeps_tags_aligned_and_entities_intact() -> None:
    rng = random.Random(0)
    changed = 0
    for ex in _pool():
        out = augment(ex, rng, AugmentProbs(homophone=0.5, drop=0.2, filler=0.2))
        assert out.tokens is not None and out.tags is not None
        assert len(out.tokens) == len(out.tags) and bio_error(out.tags) is None
        assert out.text == " ".join(out.tokens) and out.intent == ex.intent
        # entities: same types, in order, word for word their deterministic spoken form
        assert ex.tokens is not None
        assert _entities(out.tokens, out.tags) == _entities(*spoken_tokens(ex.tokens, ex.tags))
        changed += out.tokens != spoken_tokens(ex.tokens, ex.tags)[0]
    assert changed > 250  # the random slips really happen


@needs_data
def test_bitext_ids_become_spoken_digits() -> None:
    ex = next(e for e in load_dataset("bitext").train if e.tokens and "00004587345" in e.tokens)
    out = augment(ex, random.Random(0), QUIET)
    spoken = "zero zero zero zero four five eight seven three four five"
    assert _entities(out.tokens, out.tags) == [("order_id", spoken.split(" "))]


@needs_data
def test_augment_is_deterministic_for_a_seed() -> None:
    pool = _pool()[:100]
    first = [augment(e, random.Random(5)) for e in pool]
    again = [augment(e, random.Random(5)) for e in pool]
    assert first == again
    other = [augment(e, random.Random(6)) for e in pool]
    assert other != first
    shared = random.Random(9)
    run = [augment(e, shared) for e in pool]
    shared = random.Random(9)
    assert run == [augment(e, shared) for e in pool]
