"""Knowledge distillation: a fine-tuned larger model (the teacher, e.g. all-mpnet-base-v2) lends its soft
intent and tag distributions to the small encoder the phone line runs (the student, MiniLM).

Why: the teacher is too slow for live turns (51 ms against 8 ms per utterance here) but knows more; its
full distributions say which wrong answers are nearly right (a movie title that could be a creative work),
which one-hot labels cannot. The teacher is run once over the training set before the first epoch, and
each step adds temperature-softened KL divergences (Hinton et al., 2015) for the intent and for each word's
tag to the hard-label loss. Utterances the teacher never saw (an ASR-style rewrite) get no soft target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from voicebot.nlu.model import JointNLU, Labels
from voicebot.nlu.tokens import Batch, encode, first_subtokens

Words = tuple[str, ...]


@dataclass
class SoftTargets:
    """The teacher's raw logits for each training utterance, keyed by its words."""

    intent: dict[Words, torch.Tensor] = field(default_factory=dict)  # (intents,)
    tags: dict[Words, torch.Tensor] = field(default_factory=dict)  # (words seen, tags)


def _word_columns(batch: Batch, row: int, n_words: int) -> list[int]:
    """Where each word's first sub-token sits in `row` (the column its tag is read from)."""
    return [col for _, col in first_subtokens(batch.word_ids[row], n_words)]


def _same_labels(teacher: Labels, student: Labels, where: Path) -> None:
    for what in ("intents", "tags"):
        if getattr(teacher, what) != getattr(student, what):
            raise ValueError(
                f"{where / 'labels.json'}: the teacher's {what} differ from the training data's; "
                "a teacher must be trained on the same dataset"
            )


@torch.inference_mode()
def teacher_targets(
    teacher_dir: Path, utterances: Sequence[Sequence[str]], student: Labels, batch_size: int = 64
) -> SoftTargets:
    """Run the teacher over every distinct utterance (a list of words) once."""
    teacher, tokenizer = JointNLU.load(teacher_dir)
    _same_labels(teacher.labels, student, teacher_dir)
    unique = list(dict.fromkeys(tuple(w) for w in utterances))
    out = SoftTargets()
    for start in range(0, len(unique), batch_size):
        chunk = unique[start : start + batch_size]
        batch = encode(tokenizer, [list(w) for w in chunk], student.max_length)
        logits = teacher(batch.input_ids, batch.attention_mask)
        for i, words in enumerate(chunk):
            out.intent[words] = logits["intent"][i].clone()
            out.tags[words] = logits["tags"][i, _word_columns(batch, i, len(words))].clone()
    return out


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of KL(teacher ‖ student) at `temperature`, scaled by T² so its gradients keep the
    size of the hard-label loss's."""
    s = nn.functional.log_softmax(student / temperature, -1)
    t = nn.functional.log_softmax(teacher / temperature, -1)
    kl = nn.functional.kl_div(s, t, log_target=True, reduction="batchmean")
    return kl * temperature**2


def distill_loss(
    targets: SoftTargets,
    batch_words: Sequence[Sequence[str]],
    batch: Batch,
    out: dict[str, torch.Tensor],
    temperature: float,
) -> torch.Tensor | None:
    """Intent KL plus per-word tag KL over the utterances the teacher has targets for; None if none."""
    rows = [i for i, w in enumerate(batch_words) if tuple(w) in targets.intent]
    if not rows:
        return None
    keys = [tuple(batch_words[i]) for i in rows]
    loss = _kl(out["intent"][rows], torch.stack([targets.intent[k] for k in keys]), temperature)
    student_tags, teacher_tags = [], []
    for i, key in zip(rows, keys, strict=True):
        columns = _word_columns(batch, i, len(key))
        n = min(len(columns), len(targets.tags[key]))  # either tokenizer may cut a long utterance
        student_tags.append(out["tags"][i, columns[:n]])
        teacher_tags.append(targets.tags[key][:n])
    if sum(len(t) for t in teacher_tags):
        loss = loss + _kl(torch.cat(student_tags), torch.cat(teacher_tags), temperature)
    return loss
