"""BIO-constrained decoding: the best valid tag sequence, never a stray I- or a type switch inside a span."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from voicebot.nlu.viterbi import BIODecoder

TAGS = ["O", "B-city", "I-city", "B-state", "I-state"]


def logp(*rows: dict[str, float]) -> np.ndarray:
    """Per-word probabilities given by name (the rest share what is left), as log-probs."""
    out = []
    for row in rows:
        rest = (1.0 - sum(row.values())) / (len(TAGS) - len(row))
        out.append([row.get(t, rest) for t in TAGS])
    return np.log(np.array(out, dtype=np.float32))


def names(ids: list[int]) -> list[str]:
    return [TAGS[i] for i in ids]


def valid(seq: list[str]) -> bool:
    previous = "O"
    for tag in seq:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def test_a_valid_argmax_is_kept() -> None:
    decoded = BIODecoder(TAGS).decode(logp({"O": 0.9}, {"B-city": 0.8}, {"I-city": 0.7}, {"O": 0.9}))
    assert names(decoded) == ["O", "B-city", "I-city", "O"]


def test_a_stray_inside_tag_becomes_the_best_valid_choice() -> None:
    # argmax would say O I-city: the decoder must either begin the city or drop it, whichever scores higher.
    decoded = BIODecoder(TAGS).decode(logp({"O": 0.9}, {"I-city": 0.6, "B-city": 0.3}))
    assert names(decoded) == ["O", "B-city"]
    decoded = BIODecoder(TAGS).decode(logp({"O": 0.9}, {"I-city": 0.5, "O": 0.45}))
    assert names(decoded) == ["O", "O"]


def test_no_type_switch_inside_a_span() -> None:
    decoded = BIODecoder(TAGS).decode(logp({"B-city": 0.9}, {"I-state": 0.5, "I-city": 0.4}))
    assert names(decoded) == ["B-city", "I-city"]


def test_first_word_cannot_be_inside() -> None:
    decoded = BIODecoder(TAGS).decode(logp({"I-state": 0.7, "B-state": 0.2}, {"I-state": 0.9}))
    assert names(decoded) == ["B-state", "I-state"]


def test_empty_utterance() -> None:
    assert BIODecoder(TAGS).decode(np.zeros((0, len(TAGS)), np.float32)) == []


def test_matches_brute_force_on_random_scores() -> None:
    """Exhaustive search over every valid sequence: Viterbi must find the same best score."""
    rng = np.random.default_rng(7)
    decoder = BIODecoder(TAGS)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        scores = np.log(rng.dirichlet(np.ones(len(TAGS)), size=n)).astype(np.float32)
        decoded = decoder.decode(scores)
        assert valid(names(decoded))
        best = max(
            (seq for seq in itertools.product(range(len(TAGS)), repeat=n) if valid(names(list(seq)))),
            key=lambda seq: sum(scores[i, t] for i, t in enumerate(seq)),
        )
        got = sum(scores[i, t] for i, t in enumerate(decoded))
        want = sum(scores[i, t] for i, t in enumerate(best))
        assert got == pytest.approx(want, abs=1e-5)


def test_only_o_tag_set() -> None:
    assert BIODecoder(["O"]).decode(np.zeros((3, 1), np.float32)) == [0, 0, 0]
