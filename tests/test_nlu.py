"""The NLU recipe and inference API, trained for real on tiny subsets (a few seconds, the real encoder)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data import Example, load_dataset, load_sentiment
from models.eval_nlu import spoken_example
from models.train_joint import FAQ, JointTrainConfig, JointTrainer, TailAverage
from tests.conftest import needs_data
from voicebot.filecall import FileCall
from voicebot.nlu.brain import UnderstandingBrain
from voicebot.nlu.model import OOS, JointNLU
from voicebot.nlu.parser import NLU
from voicebot.pipeline import Services

pytestmark = needs_data  # trains on real public data

FAQ_DATA = FAQ(
    answers={
        "payment": "We accept Visa, Mastercard and PayPal.",
        "delivery": "Standard delivery takes three to five working days.",
    },
    questions=[
        ("what payment methods do you accept", "payment"),
        ("can i pay with paypal", "payment"),
        ("do you take mastercard", "payment"),
        ("how long does delivery take", "delivery"),
        ("when will my parcel arrive", "delivery"),
        ("how many days is shipping", "delivery"),
    ],
    valid=[("which cards can i use", "payment"), ("how fast is shipping", "delivery")],
)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = load_dataset("bitext")
    rng = random.Random(1)
    keep = {"cancel_order", "track_order", "get_refund", "contact_human_agent"}
    train = [e for e in data.train if e.intent in keep]
    train = rng.sample(train, 96) + [
        Example(text=t, intent=OOS) for t in ("what is the weather", "tell me a joke")
    ]
    valid = rng.sample([e for e in data.valid if e.intent in keep], 24)
    senti = load_sentiment()
    cfg = JointTrainConfig(epochs=1, batch_size=16, threads=2)
    sentiment = (senti.train[:96], senti.valid[:8])
    trainer = JointTrainer(
        train, valid, sorted(keep | {OOS}), data.entity_types, cfg, sentiment, FAQ_DATA, progress=False
    )
    out = tmp_path_factory.mktemp("nlu") / "model"
    result = trainer.fit(out)
    assert result["best_epoch"] == 1 and (out / "metrics.json").is_file()
    return out


def test_saved_model_directory(tiny_model: Path) -> None:
    for name in (
        "labels.json",
        "heads.pt",
        "encoder/config.json",
        "answers.json",
        "metrics.json",
        "train_config.json",
    ):
        assert (tiny_model / name).is_file(), name
    model, _ = JointNLU.load(tiny_model)
    assert model.labels.sentiment and model.labels.tags[0] == "O" and "B-order_id" in model.labels.tags
    assert 0.25 <= model.labels.temperature <= 8.0


def test_parse_shape_and_round_trip(tiny_model: Path) -> None:
    nlu = NLU(tiny_model)
    parse = nlu.parse("I want to cancel order 457219")
    assert parse.intent in {"cancel_order", "track_order", "get_refund", "contact_human_agent", OOS}
    assert 0.0 <= parse.confidence <= 1.0 and len(parse.ranking) == 5
    assert abs(sum(p for _, p in nlu.parse_batch(["x"])[0].ranking) - 1.0) < 0.2
    assert parse.sentiment is not None and set(parse.sentiment["scores"]) == {
        "negative",
        "neutral",
        "positive",
    }
    assert 0.0 <= parse.sentiment["frustration"] <= 1.0
    assert parse.answer is not None and "score" in parse.answer
    again = NLU(tiny_model).parse("I want to cancel order 457219")  # reload gives the same numbers
    assert again.ranking == parse.ranking and again.sentiment == parse.sentiment
    batch = nlu.parse_batch(["I want to cancel order 457219", "where is my refund"])
    assert batch[0].ranking == parse.ranking


@pytest.mark.parametrize(
    "text", ["", "   ", "x" * 5000, "🙂🙂🙂", "je voudrais annuler ma commande", "um uh um"]
)
def test_bad_input_gives_a_well_formed_parse(tiny_model: Path, text: str) -> None:
    parse = NLU(tiny_model).parse(text)
    assert isinstance(parse.intent, str) and 0.0 <= parse.confidence <= 1.0
    if not text.strip() or text.startswith("🙂"):
        assert parse.intent == OOS or parse.confidence < 1.0
    assert parse.as_dict()["text"] == text[:2000]


def test_oos_threshold_behaviour(tiny_model: Path) -> None:
    nlu = NLU(tiny_model)
    nlu.labels.oos_threshold = 1.01  # nothing is confident enough
    assert nlu.parse("cancel my order").intent == OOS
    nlu.labels.oos_threshold = 0.0  # everything is: the top-ranked intent wins
    parse = nlu.parse("cancel my order")
    assert parse.intent == parse.ranking[0][0]
    nlu.labels.answer_threshold = 1.01
    answer = nlu.parse("can i pay with paypal").answer
    assert answer is not None and answer["id"] is None and answer["text"] is None
    nlu.labels.answer_threshold = -1.0
    answer = nlu.parse("can i pay with paypal").answer
    assert answer is not None and answer["id"] in FAQ_DATA.answers


def test_entities_are_normalised(tiny_model: Path) -> None:
    nlu = NLU(tiny_model)
    nlu.model.labels.tags = list(nlu.labels.tags)
    parse = nlu.parse("cancel order 457219 please")
    for entity in parse.entities:  # whatever a 1-epoch tagger finds must be a consistent span
        assert parse.text[entity.start : entity.end] == entity.raw
        if entity.type == "order_id" and entity.raw == "457219":
            assert entity.value == "457219"


@pytest.mark.models
def test_unknown_intent_and_bad_tags_are_clear_errors(tmp_path: Path) -> None:
    cfg = JointTrainConfig(epochs=1)
    bad = [Example(text="hi", intent="greet", source="train.jsonl:7")]
    with pytest.raises(ValueError, match=r"train\.jsonl:7: unknown intent 'greet'"):
        JointTrainer(bad, [], ["cancel_order"], [], cfg, progress=False)
    tagged = [Example(text="order 1", intent="a", tokens=["order", "1"], tags=["O", "B-zzz"], source="f:3")]
    trainer = JointTrainer(tagged, [], ["a"], ["order_id"], cfg, progress=False)
    with pytest.raises(ValueError, match=r"f:3.*unknown tag 'B-zzz'"):
        trainer.fit(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"missing labels\.json"):
        NLU(tmp_path / "nowhere")


def test_spoken_test_examples_keep_tags_aligned() -> None:
    data = load_dataset("bitext")
    for example in [e for e in data.test if e.tags and any(t != "O" for t in e.tags)][:50]:
        spoken = spoken_example(example)
        assert spoken.tokens is not None and spoken.tags is not None
        assert len(spoken.tokens) == len(spoken.tags)
        assert spoken.text == spoken.text.lower()


@pytest.mark.models
def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    data = load_dataset("bitext")
    train = [replace(e) for e in data.train[:32]]
    intents = sorted({e.intent for e in train})
    cfg = JointTrainConfig(epochs=1, batch_size=16)
    outs = []
    for run in range(2):
        JointTrainer(train, train[:8], intents, data.entity_types, cfg, progress=False).fit(
            tmp_path / str(run)
        )
        outs.append(np.array([p for _, p in NLU(tmp_path / str(run)).parse("cancel my order").ranking]))
    assert np.allclose(outs[0], outs[1], atol=1e-5)


@pytest.mark.models
def test_epoch_is_chosen_on_intent_accuracy_and_entity_f1() -> None:
    data = load_dataset("bitext")
    train = data.train[:32]
    with_entities = [e for e in data.valid if e.tags and any(t != "O" for t in e.tags)][:12]
    intents = sorted({e.intent for e in train + with_entities})
    cfg = JointTrainConfig(epochs=1)
    trainer = JointTrainer(train, with_entities, intents, data.entity_types, cfg, progress=False)
    metrics = trainer.validate()
    assert set(metrics) == {"intent_acc", "tag_sentence_acc", "entity_f1", "score"}
    assert metrics["score"] == pytest.approx((metrics["intent_acc"] + metrics["entity_f1"]) / 2)
    trainer.valid = [replace(e, tags=["O"] * len(e.tags or [])) for e in with_entities]
    metrics = trainer.validate()
    assert "entity_f1" not in metrics and metrics["score"] == metrics["intent_acc"]


def test_tail_average_is_the_mean_of_the_last_epochs_weights() -> None:
    tail = TailAverage(first=2)
    for epoch, w in ((1, 100.0), (2, 1.0), (3, 2.0), (4, 6.0)):
        tail.add(epoch, {"w": torch.full((2,), w), "ids": torch.tensor([epoch])})
    state = tail.state()
    assert tail.count == 3 and torch.equal(state["w"], torch.full((2,), 3.0))
    assert torch.equal(state["ids"], torch.tensor([4]))  # integer buffers come from the latest epoch


def snips_trainer(cfg: JointTrainConfig, n_train: int = 48, drop: str | None = None) -> JointTrainer:
    """A trainer on the first SNIPS utterances (16 to validate), without intent `drop` if given."""
    data = load_dataset("snips")
    train = [e for e in data.train[:n_train] if e.intent != drop]
    valid = [e for e in data.valid[:16] if e.intent != drop]
    intents = sorted({e.intent for e in train + valid})
    return JointTrainer(train, valid, intents, data.entity_types, cfg, progress=False)


@pytest.mark.models
def test_the_schedule_runs_to_its_end_and_the_last_epochs_are_averaged(tmp_path: Path) -> None:
    trainer = snips_trainer(JointTrainConfig(epochs=4, batch_size=16, average_last=3, tolerance=1.0))
    snapshots: list[dict[str, torch.Tensor]] = []
    validate = trainer.validate

    def validate_and_snapshot() -> dict[str, float]:
        snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return validate()

    trainer.validate = validate_and_snapshot  # type: ignore[method-assign]
    result = trainer.fit(tmp_path / "avg")
    # 3 asked for, but only the second half of a 4-epoch schedule is averaged
    assert result["kept"] == "epochs 3-4 averaged" and len(result["history"]) == 4
    assert len(snapshots) == 5  # four epochs, then the average itself
    for name in ("intent.weight", "tagger.bias"):  # a head and, below, an encoder weight
        mean = (snapshots[2][name] + snapshots[3][name]) / 2
        assert torch.allclose(trainer.model.state_dict()[name], mean)
        assert torch.equal(snapshots[4][name], mean)
        assert not torch.allclose(snapshots[3][name], mean)
    encoder = next(k for k in snapshots[0] if k.startswith("encoder.") and "layer.0." in k and "weight" in k)
    mean = (snapshots[2][encoder] + snapshots[3][encoder]) / 2
    assert torch.allclose(trainer.model.state_dict()[encoder], mean)
    saved = (tmp_path / "avg" / "metrics.json").read_text()
    assert '"kept": "epochs 3-4 averaged"' in saved


@pytest.mark.models
def test_without_averaging_the_best_epoch_is_kept_and_a_falling_score_stops_early(tmp_path: Path) -> None:
    result = snips_trainer(JointTrainConfig(epochs=3, batch_size=16, average_last=0)).fit(tmp_path / "a")
    scores = [h["score"] for h in result["history"]]
    assert result["kept"] == f"epoch {result['best_epoch']}" and len(scores) == 3
    assert scores[result["best_epoch"] - 1] == max(scores)
    # a negative tolerance makes every epoch count as "behind the best": patience 1 stops after epoch 1,
    # and an unfinished schedule is never averaged
    cfg = JointTrainConfig(epochs=3, batch_size=16, patience=1, tolerance=-1.0)
    result = snips_trainer(cfg).fit(tmp_path / "b")
    assert len(result["history"]) == 1 and result["kept"] == "epoch 1"


async def test_understanding_brain_fills_the_turn_record(
    tiny_model: Path, services: Services, speech_files: dict[str, Path]
) -> None:
    call = FileCall(services, UnderstandingBrain(NLU(tiny_model)), fast=True)
    result = await call.run([speech_files["track"], speech_files["agent"]])
    first = result.turns[0]
    assert isinstance(first["intent"], str) and 0.0 <= first["confidence"] <= 1.0
    assert isinstance(first["entities"], dict) and first["sentiment"] in {"negative", "neutral", "positive"}
    assert first["timings_ms"]["nlu"] > 0 and first["reply"]
    assert "automated assistant" in (result.greeting or "")


def test_int8_model_parses_like_the_fp32_one(tiny_model: Path) -> None:
    fp32, int8 = NLU(tiny_model), NLU(tiny_model, int8=True)
    text = "I want to cancel order 457219"
    a, b = fp32.parse(text), int8.parse(text)
    assert b.intent in [*fp32.labels.intents, OOS] and len(b.ranking) == len(a.ranking)
    assert b.sentiment is not None and "frustrated" in b.sentiment


def test_cli_parses_with_a_model_directory(tiny_model: Path) -> None:
    """`voicebot nlu --model DIR`: its --model is the NLU model (it was once taken for the Whisper model)."""
    command = ["nlu", "--compact", "--model", str(tiny_model), "where is my order"]
    proc = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", *command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    parse = json.loads(proc.stdout)
    intents = {"cancel_order", "track_order", "get_refund", "contact_human_agent", OOS}
    assert parse["text"] == "where is my order" and parse["intent"] in intents
