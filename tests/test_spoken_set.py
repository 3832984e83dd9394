"""The spoken intent set (models/eval_sets/shop_spoken_intents.yaml): it loads, it is big enough, its labels
are intents the shop domain's model has, it is independent of the training data, and the evaluator's
arithmetic is right. No model is loaded: the evaluator is checked on a parser that looks answers up."""

from __future__ import annotations

import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from models.data import load_dataset
from models.eval_spoken import DEFAULT, SpokenItem, accuracy_by_split, intent_accuracy, load_spoken_set
from tests.conftest import needs_data
from voicebot.domain.nlu_spec import load_nlu_spec, parse_markup
from voicebot.nlu.model import OOS, Labels
from voicebot.nlu.parser import Parse

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"
TASKS = (
    "track_order",
    "cancel_order",
    "change_order",
    "change_shipping_address",
    "get_refund",
    "track_refund",
    "check_invoice",
    "get_invoice",
    "contact_human_agent",
)


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


def test_set_is_big_split_and_covers_what_callers_ask() -> None:
    items = load_spoken_set()
    counts = Counter(i.intent for i in items)
    splits = Counter(i.split for i in items)
    assert len(items) >= 300
    assert len({_norm(i.text) for i in items}) == len(items), "an utterance is in the set twice"
    assert 0.25 <= splits["dev"] / len(items) <= 0.4 and splits["dev"] + splits["test"] == len(items)
    for intent in TASKS:
        assert counts[intent] >= 10, intent
    assert counts["complaint"] >= 30 and counts["payment_issue"] >= 30
    assert counts[OOS] >= 15


@needs_data
def test_labels_are_the_shop_models_intents() -> None:
    """The intents `train_domain` gives the shop's model: its inline intents and its datasets' intents."""
    spec, _ = load_nlu_spec(SHOP)
    known = set(spec.intents)
    for ref in spec.datasets:
        intents = load_dataset(ref.name).intents
        known |= set(ref.intents or intents) & set(intents)
    unknown = {i.intent for i in load_spoken_set()} - known
    assert not unknown


def test_set_is_independent_of_the_domains_training_examples() -> None:
    spec, faq = load_nlu_spec(SHOP)
    trained = {_norm(parse_markup(example)[0]) for examples in spec.intents.values() for example in examples}
    trained |= {_norm(q) for answer in faq.answers for q in answer.questions}
    overlap = [i.text for i in load_spoken_set() if _norm(i.text) in trained]
    assert not overlap


@needs_data
def test_set_is_independent_of_bitext() -> None:
    data = load_dataset("bitext")
    corpus = {_norm(e.text) for e in data.train + data.valid + data.test}
    assert not [i.text for i in load_spoken_set() if _norm(i.text) in corpus]


def test_loader_names_a_bad_item(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(
        "utterances:\n  - {text: hi, intent: greet, split: test}\n  - {text: yo, intent: greet}\n"
    )
    with pytest.raises(ValueError, match=r"utterances\.1: needs exactly text, intent and split"):
        load_spoken_set(path)
    path.write_text("utterances:\n  - {text: hi, intent: greet, split: train}\n")
    with pytest.raises(ValueError, match=r"utterances\.0\.split"):
        load_spoken_set(path)
    assert DEFAULT.is_file()


class LookupParser:
    """Answers from a table (anything else is out of scope), like a model that learnt exactly that."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.labels = Labels(intents=sorted(set(answers.values()) | {OOS}))
        self.seen: list[str] = []

    def parse(self, text: str, today: date | None = None) -> Parse:
        self.seen.append(text)
        return Parse(text=text, intent=self.answers.get(text, OOS), confidence=1.0)


ITEMS = [
    SpokenItem("i was charged twice", "payment_issue", "dev"),
    SpokenItem("my card got declined", "payment_issue", "test"),
    SpokenItem("nobody answers my emails", "complaint", "test"),
    SpokenItem("still nothing after two weeks", "track_order", "test"),
    SpokenItem("what's the weather", OOS, "dev"),
]


def test_accuracy_overall_by_split_and_by_intent() -> None:
    parser = LookupParser(
        {
            "i was charged twice": "payment_issue",
            "my card got declined": "get_refund",  # wrong
            "nobody answers my emails": "complaint",
            # "still nothing after two weeks" → oos (wrong); "what's the weather" → oos (right)
        }
    )
    report = intent_accuracy(parser, ITEMS)
    assert (report["n"], report["correct"]) == (5, 3) and report["accuracy"] == pytest.approx(0.6)
    assert report["by_split"]["dev"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    assert report["by_split"]["test"]["correct"] == 1 and report["by_split"]["test"]["n"] == 3
    assert report["by_intent"]["payment_issue"]["accuracy"] == pytest.approx(0.5)
    assert report["by_intent"]["track_order"]["accuracy"] == 0.0
    assert report["by_intent"][OOS] == {"n": 1, "correct": 1, "accuracy": 1.0}
    assert report["confusions"] == [
        {
            "text": "my card got declined",
            "intent": "payment_issue",
            "predicted": "get_refund",
            "split": "test",
        },
        {"text": "still nothing after two weeks", "intent": "track_order", "predicted": OOS, "split": "test"},
    ]


def test_transcripts_replace_the_written_text_but_keep_the_labels() -> None:
    heard = [
        "i was charged twice",
        "my car got declined",
        "nobody answers my emails",
        "",
        "what's the weather",
    ]
    parser = LookupParser({"i was charged twice": "payment_issue", "my car got declined": "payment_issue"})
    report = intent_accuracy(parser, ITEMS, texts=heard)
    assert parser.seen == heard
    assert report["correct"] == 3  # charged twice, car/card declined, weather → oos
    assert report["confusions"][0] == {
        "text": "nobody answers my emails",
        "intent": "complaint",
        "predicted": OOS,
        "split": "test",
    }
    with pytest.raises(ValueError, match="4 texts for 5 items"):
        intent_accuracy(parser, ITEMS, texts=heard[:4])


def test_splits_are_scored_apart_on_the_same_transcripts() -> None:
    """What `eval_spoken` prints per model: dev and test each alone, typed or heard (one transcript list for
    all the items, cut by split), so a dev item never counts in the test figure."""
    parser = LookupParser({"i was charged twice": "payment_issue", "my car got declined": "payment_issue"})
    typed = accuracy_by_split(parser, ITEMS, None)
    assert (typed["dev"]["n"], typed["dev"]["correct"]) == (2, 2)
    assert (typed["test"]["n"], typed["test"]["correct"]) == (3, 0)
    heard = ["i was charged twice", "my car got declined", "", "", "what's the weather"]
    spoken = accuracy_by_split(parser, ITEMS, heard)
    assert spoken["test"]["correct"] == 1 and spoken["test"]["by_split"] == {
        "test": {"n": 3, "correct": 1, "accuracy": pytest.approx(1 / 3)}
    }
    assert [c["text"] for c in spoken["test"]["confusions"]] == ["", ""]
    only_test = accuracy_by_split(parser, ITEMS[1:4], heard[1:4])
    assert set(only_test) == {"test"}
