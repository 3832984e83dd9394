"""Distillation from a teacher model: soft targets, the loss they add, and a student trained with them
(a real MiniLM teacher and student on a tiny SNIPS subset)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.data import load_dataset
from models.distill import distill_loss, teacher_targets
from models.train_joint import JointTrainConfig, example_words
from tests.conftest import needs_data
from tests.test_nlu import snips_trainer
from voicebot.nlu.model import JointNLU
from voicebot.nlu.tokens import encode

pytestmark = needs_data


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "model"
    snips_trainer(JointTrainConfig(epochs=1, batch_size=16, seed=3), n_train=64).fit(out)
    return out


@torch.inference_mode()
def test_soft_targets_cost_nothing_for_the_teacher_itself_and_something_for_another_model(
    teacher: Path,
) -> None:
    model, tokenizer = JointNLU.load(teacher)
    data = load_dataset("snips")
    words = [example_words(e) for e in data.train[:8]]
    soft = teacher_targets(teacher, words + words[:3], model.labels)
    assert len(soft.intent) == len({tuple(w) for w in words})  # each distinct utterance run once
    assert all(len(soft.tags[tuple(w)]) == len(w) for w in words)
    batch = encode(tokenizer, words, model.labels.max_length)
    loss = distill_loss(soft, words, batch, model(batch.input_ids, batch.attention_mask), 2.0)
    assert loss is not None and float(loss) < 1e-5
    other, _ = JointNLU.create(JointTrainConfig().encoder, model.labels)  # untrained heads
    other.eval()
    loss = distill_loss(soft, words, batch, other(batch.input_ids, batch.attention_mask), 2.0)
    assert loss is not None and float(loss) > 0.1
    unseen = [["words", "the", "teacher", "never", "saw"]]
    batch = encode(tokenizer, unseen, model.labels.max_length)
    assert distill_loss(soft, unseen, batch, model(batch.input_ids, batch.attention_mask), 2.0) is None


def test_a_student_trains_on_the_teachers_targets_and_says_so(teacher: Path, tmp_path: Path) -> None:
    cfg = JointTrainConfig(epochs=1, batch_size=16, teacher=teacher)
    student = snips_trainer(cfg, n_train=64)
    train = student.train
    result = student.fit(tmp_path / "student")
    assert result["teacher"] == str(teacher)
    assert '"teacher"' in (tmp_path / "student" / "train_config.json").read_text()
    distinct = {tuple(example_words(e)) for e in train}
    assert student.soft is not None and len(student.soft.intent) == len(distinct)
    # the step's loss is the hard-label loss plus the distillation term (dropout off to compare)
    student.model.eval()
    with torch.no_grad():
        with_soft = float(student._domain_loss(train[:16]))
        soft, student.soft = student.soft, None
        hard = float(student._domain_loss(train[:16]))
    words = [example_words(e) for e in train[:16]]
    batch = encode(student.tokenizer, words, cfg.max_length)
    with torch.no_grad():
        extra = distill_loss(soft, words, batch, student.model(batch.input_ids, batch.attention_mask), 2.0)
    assert extra is not None and float(extra) > 0
    assert with_soft == pytest.approx(hard + cfg.distill_weight * float(extra), rel=1e-4)


def test_a_teacher_with_other_labels_is_a_clear_error(teacher: Path, tmp_path: Path) -> None:
    cfg = JointTrainConfig(epochs=1, batch_size=16, teacher=teacher)
    student = snips_trainer(cfg, n_train=64, drop="PlayMusic")
    with pytest.raises(ValueError, match=r"labels\.json: the teacher's intents differ"):
        student.fit(tmp_path / "student")
