"""The first model's trainer (models/train_first.py) on a tiny random encoder: its cached forward pass is the
model's own, its frozen layers stay as they were, and what it saves loads as an ordinary NLU model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.data import Example
from models.train_domain import held_out, train_domain
from models.train_first import FirstModelConfig, FirstModelTrainer
from models.train_joint import JointTrainConfig, JointTrainer
from tests.tiny import tiny_domain, tiny_encoder
from voicebot.nlu.parser import NLU
from voicebot.nlu.tokens import encode

pytestmark = pytest.mark.models

TRAIN = [
    Example(
        "cancel order 4 5 7", "cancel", ["cancel", "order", "4", "5", "7"], ["O", "O", "B-id", "I-id", "I-id"]
    ),
    Example("cancel my order", "cancel", ["cancel", "my", "order"], ["O", "O", "O"]),
    Example(
        "where is order 9 1", "track", ["where", "is", "order", "9", "1"], ["O", "O", "O", "B-id", "I-id"]
    ),
    Example("where is my parcel", "track", ["where", "is", "my", "parcel"], ["O", "O", "O", "O"]),
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), layers=3)


def trainer(encoder: Path, trainable: int = 1, epochs: int = 2) -> FirstModelTrainer:
    cfg = JointTrainConfig(encoder=encoder, batch_size=2, average_last=0)
    first = FirstModelConfig(trainable_layers=trainable, epochs=epochs)
    return FirstModelTrainer(TRAIN, TRAIN[:2], ["cancel", "track"], ["id"], cfg, first, progress=False)


@pytest.mark.parametrize("trainable", [0, 1, 3])
def test_cached_forward_is_the_models_forward(encoder: Path, trainable: int) -> None:
    t = trainer(encoder, trainable)
    t.model.eval()
    words = [e.tokens or [] for e in TRAIN]
    with torch.no_grad():
        cached, enc = t._forward(words)
        again = encode(t.tokenizer, words, t.cfg.max_length)
        whole = t.model(again.input_ids, again.attention_mask)
    assert torch.equal(enc.input_ids, again.input_ids) and enc.word_ids == again.word_ids
    for head in ("intent", "match"):
        assert torch.allclose(cached[head], whole[head], atol=1e-5), head
    real = enc.attention_mask.bool()  # padding positions differ (zeros in the cache) and are never read
    assert torch.allclose(cached["tags"][real], whole["tags"][real], atol=1e-5)


def test_only_the_top_layers_train_and_the_model_loads(encoder: Path, tmp_path: Path) -> None:
    t = trainer(encoder, trainable=1)
    before = {k: v.clone() for k, v in t.model.encoder.state_dict().items()}
    t.fit(tmp_path / "model")
    after = t.model.encoder.state_dict()
    changed = {
        k.split(".")[2]
        for k in before
        if k.startswith("encoder.layer.") and not torch.equal(before[k], after[k])
    }
    assert changed == {"2"}  # of layers 0-2, only the top one
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("embeddings."))
    parse = NLU(tmp_path / "model").parse("cancel order 4 5 7")
    assert parse.intent in {"cancel", "track"}


def test_the_second_stage_trains_sentiment_and_answer_heads_only(encoder: Path, tmp_path: Path) -> None:
    from models.data import SentimentExample
    from models.train_joint import FAQ

    comments = [
        SentimentExample("this is awful", "negative", True, ["anger"]),
        SentimentExample("great thanks", "positive", False, ["gratitude"]),
    ]
    faq = FAQ(answers={"hours": "We are open nine to five."}, questions=[("when are you open", "hours")] * 2)
    cfg = JointTrainConfig(encoder=encoder, batch_size=2, average_last=0)
    first = FirstModelConfig(trainable_layers=1, epochs=1, aux_steps=3)
    t = FirstModelTrainer(
        TRAIN, TRAIN[:2], ["cancel", "track"], ["id"], cfg, first, (comments, comments), faq, False
    )
    assert t.sentiment is None and t.faq is None  # the first stage is the domain's alone
    heads = {k: v.clone() for k, v in t.model.heads_state().items()}
    t.fit(tmp_path / "model")
    after = t.model.heads_state()
    changed = {k.split(".")[0] for k in heads if not torch.equal(heads[k], after[k])}
    assert {"sentiment", "frustration", "matcher", "intent", "tagger"} <= changed
    nlu = NLU(tmp_path / "model")
    parse = nlu.parse("when are you open")
    assert parse.sentiment is not None and parse.answer is not None


def test_an_epoch_is_every_example_once_in_batches_of_similar_length(encoder: Path) -> None:
    t = trainer(encoder)
    t.train = [Example("w " * n, "cancel", ["w"] * n, ["O"] * n) for n in range(1, 40)]
    order = t._epoch_order()
    assert sorted(len(e.tokens or []) for e in order) == list(range(1, 40))
    batches = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert len(batches[-1]) == 1  # 39 examples: the short batch last

    # far less padding than the full recipe's plain shuffle of the same examples
    def padding(examples: list[Example]) -> int:
        runs = [examples[i : i + 2] for i in range(0, len(examples), 2)]
        return sum(max(len(e.tokens or []) for e in r) - min(len(e.tokens or []) for e in r) for r in runs)

    assert padding(order) * 3 < padding(JointTrainer._epoch_order(t))


def test_an_faq_answer_never_loses_its_last_question_to_validation() -> None:
    """The FAQ's held-out questions are never an answer's last: the matcher could not learn that answer,
    and a one-question FAQ left the trainers no question to draw a batch from (FirstModelTrainer crashed)."""
    pairs = [("when are you open", "hours"), *((f"question {n}", "refunds") for n in range(20))]
    train, valid = held_out(pairs, 2)
    assert valid == pairs[1:3] and train == pairs[:1] + pairs[3:]
    assert held_out(pairs[:1], 1) == (pairs[:1], [])


def test_a_domain_with_a_one_question_faq_trains_its_first_model(encoder: Path, tmp_path: Path) -> None:
    """The whole first-model path (`voicebot train`'s) on a tiny domain whose FAQ is one question."""
    answer = {"id": "hours", "answer": "We are open nine to five.", "questions": ["when are you open"]}
    domain = tiny_domain(tmp_path / "tiny", encoder, faq={"answers": [answer]})
    out, trained = train_domain(
        domain, tmp_path / "cache", progress=False, first=FirstModelConfig(aux_steps=5)
    )
    assert trained and (out / "answers.json").is_file()
    assert NLU(out).parse("when are you open").intent in {"greet", "track_order", "oos"}  # loads, parses
