"""Fine-tuning recipe for the joint NLU model: intent + BIO entities, optionally sentiment and answer matching
as extra tasks on the same encoder (so inference stays one forward pass).

Each step takes one batch of domain utterances (intent cross-entropy + tag cross-entropy where tags exist)
and, when given, one batch of GoEmotions (3-class sentiment + frustration) and one batch of FAQ
(question, answer) pairs with an in-batch-negatives contrastive loss. The encoder gets a smaller learning
rate than the fresh heads, decayed per layer, under a linear warm-up and decay to zero. With a `teacher`,
its softened intent and tag distributions are added as targets (distillation, see distill.py).

Which weights are kept: the schedule is run to its end, and the weights of its last `average_last` epochs
(at most its second half) are averaged (checkpoint averaging): with a decaying rate the late epochs generalise
best, while validation differences between them are noise (on SNIPS, validation picked epoch 3 of 8 and lost
0.7 test F1 points to the last epoch). The average is kept unless its validation score falls more than
`tolerance` below the best epoch's, and then the best epoch is kept; training stops early only when
validation stays more than `tolerance` below its best for `patience` epochs. Thresholds are then fitted on
validation (see calibrate.py).
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.augment import augment
from models.bio import entity_f1, predicted_tags
from models.calibrate import answer_threshold, best_f1_threshold, fit_temperature, oos_threshold
from models.data import Example, SentimentExample
from models.distill import SoftTargets, distill_loss, teacher_targets
from voicebot.nlu.infer import logits_for_calibration, run
from voicebot.nlu.model import OOS, SENTIMENTS, JointNLU, Labels, default_encoder
from voicebot.nlu.tokens import IGNORE, Batch, align_tags, encode, word_lists
from voicebot.progress import progress

SENTIMENT_INDEX = {name: i for i, name in enumerate(SENTIMENTS)}


@dataclass
class JointTrainConfig:
    encoder: Path = field(default_factory=default_encoder)
    epochs: int = 8
    batch_size: int = 32
    lr: float = 8e-5  # encoder (top layer); lower layers get lr * layer_decay**depth
    head_lr: float = 2e-3
    layer_decay: float = 0.9
    warmup: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.05
    patience: int = 2  # epochs in a row more than `tolerance` below the best validation score: stop
    tolerance: float = 0.005  # validation score differences below this are treated as noise
    average_last: int = 3  # last epochs whose weights are averaged (at most half the schedule); 0: keep best
    seed: int = 13
    max_length: int = 64
    augment: float = 0.0  # probability of an ASR-style rewrite of a training utterance
    sentiment_weight: float = 0.5
    match_weight: float = 0.5
    match_temperature: float = 0.05
    threads: int = 0  # 0 = all cores
    teacher: Path | None = None  # a trained model directory on the same labels: distil from it (distill.py)
    distill_weight: float = 1.0
    distill_temperature: float = 2.0


@dataclass
class FAQ:
    answers: dict[str, str]  # answer id → spoken answer text
    questions: list[tuple[str, str]]  # (question paraphrase, answer id)
    valid: list[tuple[str, str]] = field(default_factory=list)


def example_words(example: Example) -> list[str]:
    return list(example.tokens) if example.tokens is not None else word_lists([example.text])[0]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(model: JointNLU, cfg: JointTrainConfig) -> torch.optim.Optimizer:
    layers = getattr(getattr(model.encoder, "encoder", None), "layer", [])
    depth = {f"encoder.encoder.layer.{i}.": len(layers) - 1 - i for i in range(len(layers))}
    groups: list[dict[str, Any]] = []
    for name, param in model.named_parameters():
        if name.startswith("encoder."):
            d = next((v for k, v in depth.items() if name.startswith(k)), len(layers))
            lr = cfg.lr * cfg.layer_decay**d
        else:
            lr = cfg.head_lr
        decay = 0.0 if name.endswith("bias") or "LayerNorm" in name else cfg.weight_decay
        groups.append({"params": [param], "lr": lr, "weight_decay": decay})
    return torch.optim.AdamW(groups)


class _Cycle:
    """Endless shuffled batches of a list (sentiment/FAQ data run alongside the domain epochs)."""

    def __init__(self, items: list[Any], size: int, rng: random.Random) -> None:
        self.items, self.size, self.rng, self.pos = list(items), size, rng, len(items)

    def next(self) -> list[Any]:
        if self.pos + self.size > len(self.items):
            self.rng.shuffle(self.items)
            self.pos = 0
        self.pos += self.size
        return self.items[self.pos - self.size : self.pos]


class TailAverage:
    """Running mean of the weights of every epoch from `first` on (checkpoint averaging); integer buffers
    such as position ids are not averaged but taken from the latest epoch."""

    def __init__(self, first: int) -> None:
        self.first, self.count, self.sums = first, 0, dict[str, torch.Tensor]()

    def add(self, epoch: int, state: dict[str, torch.Tensor]) -> None:
        if epoch < self.first:
            return
        self.count += 1
        for name, value in state.items():
            if value.is_floating_point() and name in self.sums:
                self.sums[name] += value.detach()
            else:
                self.sums[name] = value.detach().clone()

    def state(self) -> dict[str, torch.Tensor]:
        return {n: v / self.count if v.is_floating_point() else v for n, v in self.sums.items()}


def build_labels(
    train: list[Example], intents: list[str], entity_types: list[str], cfg: JointTrainConfig
) -> Labels:
    unknown = sorted({e.intent for e in train} - set(intents))
    if unknown:
        first = next(e for e in train if e.intent in unknown)
        raise ValueError(f"{first.source or 'training data'}: unknown intent {first.intent!r}")
    tags = ["O"] + [f"{p}-{t}" for t in entity_types for p in ("B", "I")]
    return Labels(intents=list(intents), tags=tags, max_length=cfg.max_length)


def fit_frustration(
    model: JointNLU, tokenizer: object, valid: list[SentimentExample], show: bool = False
) -> float:
    bar = progress(desc="calibration (frustration)", total=len(valid), unit="comments", enabled=show)
    with bar:
        scores = run(model, tokenizer, word_lists([e.text for e in valid]), done=bar.update).frustration
    return best_f1_threshold(scores, np.array([e.frustrated for e in valid]))


class JointTrainer:
    def __init__(
        self,
        train: list[Example],
        valid: list[Example],
        intents: list[str],
        entity_types: list[str],
        cfg: JointTrainConfig,
        sentiment: tuple[list[SentimentExample], list[SentimentExample]] | None = None,
        faq: FAQ | None = None,
        progress: bool = True,
    ) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _seed(cfg.seed)
        self.cfg, self.train, self.valid, self.sentiment, self.faq, self.progress = (
            cfg, train, valid, sentiment, faq, progress,
        )  # fmt: skip
        self.labels = build_labels(train, intents, entity_types, cfg)
        self.labels.sentiment = sentiment is not None
        self.labels.matcher_answers = list(faq.answers) if faq else []
        self.intent_index = {name: i for i, name in enumerate(self.labels.intents)}
        self.tag_index = {name: i for i, name in enumerate(self.labels.tags)}
        self.model, self.tokenizer = JointNLU.create(cfg.encoder, self.labels)
        self.rng = random.Random(cfg.seed)
        self.soft: SoftTargets | None = None

    def _tag_ids(self, example: Example) -> list[int] | None:
        if example.tags is None:
            return None
        try:
            return [self.tag_index[t] for t in example.tags]
        except KeyError as exc:
            raise ValueError(f"{example.source or example.text!r}: unknown tag {exc.args[0]!r}") from exc

    def _forward(self, batch_words: list[list[str]]) -> tuple[dict[str, torch.Tensor], Batch]:
        """One training forward pass: tokenise, then the whole model (`FirstModelTrainer` caches the
        frozen lower layers' output instead)."""
        enc = encode(self.tokenizer, batch_words, self.cfg.max_length)
        return self.model(enc.input_ids, enc.attention_mask), enc

    def _epoch_order(self) -> list[Example]:
        """The training examples in this epoch's order; consecutive `batch_size` runs are the batches."""
        order = list(self.train)
        self.rng.shuffle(order)
        return order

    def _domain_loss(self, batch: list[Example]) -> torch.Tensor:
        if self.cfg.augment:
            batch = [augment(e, self.rng) if self.rng.random() < self.cfg.augment else e for e in batch]
        words = [example_words(e) for e in batch]
        out, enc = self._forward(words)
        gold = torch.tensor([self.intent_index[e.intent] for e in batch])
        loss = nn.functional.cross_entropy(out["intent"], gold, label_smoothing=self.cfg.label_smoothing)
        if self.soft is not None:
            soft = distill_loss(self.soft, words, enc, out, self.cfg.distill_temperature)
            loss = loss if soft is None else loss + self.cfg.distill_weight * soft
        tags = align_tags(enc.word_ids, [self._tag_ids(e) for e in batch], enc.input_ids.shape[1])
        if (tags != IGNORE).any():
            loss = loss + nn.functional.cross_entropy(
                out["tags"].flatten(0, 1), tags.flatten(), ignore_index=IGNORE
            )
        return loss

    def _sentiment_loss(self, batch: list[SentimentExample]) -> torch.Tensor:
        out, _ = self._forward(word_lists([e.text for e in batch]))
        gold = torch.tensor([SENTIMENT_INDEX[e.label] for e in batch])
        frustrated = torch.tensor([float(e.frustrated) for e in batch])
        return nn.functional.cross_entropy(
            out["sentiment"], gold
        ) + nn.functional.binary_cross_entropy_with_logits(out["frustration"], frustrated)

    def _match_loss(self, batch: list[tuple[str, str]]) -> torch.Tensor:
        assert self.faq is not None
        ids = list(dict.fromkeys(a for _, a in batch))  # one positive per answer in the batch
        questions = [next(q for q, a in batch if a == i) for i in ids]
        texts = questions + [self.faq.answers[i] for i in ids]
        emb = self._forward(word_lists(texts))[0]["match"]
        sims = emb[: len(ids)] @ emb[len(ids) :].T / self.cfg.match_temperature
        target = torch.arange(len(ids))
        return 0.5 * (nn.functional.cross_entropy(sims, target) + nn.functional.cross_entropy(sims.T, target))

    def validate(self) -> dict[str, float]:
        """Validation metrics; `score` (which picks the epoch kept) is the mean of intent accuracy and
        entity F1, the two figures a domain is judged on — tag-sentence accuracy is shown, not selected on."""
        if not self.valid:
            return {"score": 0.0}
        bar = progress(desc="validation", total=len(self.valid), unit="utterances", enabled=self.progress)
        with bar:
            out = run(self.model, self.tokenizer, [example_words(e) for e in self.valid], done=bar.update)
        pred = out.intent_probs.argmax(1)
        gold = np.array([self.intent_index[e.intent] for e in self.valid])
        metrics = {"intent_acc": float((pred == gold).mean())}
        gold_tags = [list(e.tags) for e in self.valid if e.tags is not None]
        if gold_tags:
            rows = [t for e, t in zip(self.valid, out.tags, strict=True) if e.tags is not None]
            pred_tags = predicted_tags(self.labels.tags, rows, gold_tags)
            same = [p == g for p, g in zip(pred_tags, gold_tags, strict=True)]
            metrics["tag_sentence_acc"] = float(np.mean(same))
            if any(tag != "O" for g in gold_tags for tag in g):
                metrics["entity_f1"] = entity_f1(gold_tags, pred_tags)
        metrics["score"] = (metrics["intent_acc"] + metrics.get("entity_f1", metrics["intent_acc"])) / 2
        return metrics

    def fit(self, out_dir: Path) -> dict[str, Any]:
        cfg = self.cfg
        started = time.perf_counter()
        if cfg.teacher is not None:
            self.soft = teacher_targets(cfg.teacher, [example_words(e) for e in self.train], self.labels)
        steps_per_epoch = max(1, math.ceil(len(self.train) / cfg.batch_size))
        total = steps_per_epoch * cfg.epochs
        optim = _optimizer(self.model, cfg)
        base = [g["lr"] for g in optim.param_groups]
        warm = max(1, int(cfg.warmup * total))
        senti = _Cycle(self.sentiment[0], cfg.batch_size, self.rng) if self.sentiment else None
        faq = _Cycle(self.faq.questions, cfg.batch_size, self.rng) if self.faq else None
        best: tuple[float, dict[str, Any], int] = (-1.0, {}, 0)
        # averaged: the last `average_last` epochs, within the low-learning-rate second half of the schedule
        span = min(cfg.average_last, max(1, cfg.epochs // 2))
        tail = TailAverage(cfg.epochs - span + 1) if cfg.average_last else None
        history: list[dict[str, float]] = []
        step = 0
        behind = 0
        for epoch in range(cfg.epochs):
            self.model.train()
            order = self._epoch_order()
            bar = progress(
                range(steps_per_epoch),
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                unit="steps",
                enabled=self.progress,
            )
            for i in bar:
                scale = min(1.0, (step + 1) / warm) * max(0.0, (total - step) / max(1, total - warm))
                for group, lr in zip(optim.param_groups, base, strict=True):
                    group["lr"] = lr * min(1.0, scale)
                loss = self._domain_loss(order[i * cfg.batch_size : (i + 1) * cfg.batch_size])
                if senti is not None:
                    loss = loss + cfg.sentiment_weight * self._sentiment_loss(senti.next())
                if faq is not None:
                    loss = loss + cfg.match_weight * self._match_loss(faq.next())
                optim.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                optim.step()
                step += 1
                bar.set_postfix(loss=f"{loss.item():.3f}")
            metrics = self.validate() | {"epoch": epoch + 1}
            history.append(metrics)
            self._log(f"epoch {epoch + 1}/{cfg.epochs}", metrics)
            if metrics["score"] > best[0]:
                best = (metrics["score"], copy.deepcopy(self.model.state_dict()), epoch + 1)
            if tail is not None:
                tail.add(epoch + 1, self.model.state_dict())
            behind = behind + 1 if metrics["score"] < best[0] - cfg.tolerance else 0
            if behind >= cfg.patience:
                break
        kept, score = self._keep(best, tail, finished=len(history) == cfg.epochs)
        self.calibrate()
        elapsed = time.perf_counter() - started
        result = {
            "best_epoch": best[2],
            "kept": kept,
            "validation": score,
            "history": history,
            "train_seconds": round(elapsed, 1),
        } | ({"teacher": str(cfg.teacher)} if cfg.teacher is not None else {})
        self.save(out_dir, result)
        return result

    def _keep(
        self, best: tuple[float, dict[str, Any], int], tail: TailAverage | None, finished: bool
    ) -> tuple[str, float]:
        """Load the weights kept (see the module docstring); return which they are and their score."""
        score, state, epoch = best
        if tail is not None and tail.count and finished:
            self.model.load_state_dict(tail.state())
            averaged = self.validate()
            last = self.cfg.epochs
            name = f"epochs {tail.first}-{last} averaged" if tail.count > 1 else f"epoch {last}"
            self._log(name, averaged)
            if averaged["score"] >= score - self.cfg.tolerance:
                return name, averaged["score"]
        self.model.load_state_dict(state)
        return f"epoch {epoch}", score

    def _log(self, what: str, metrics: dict[str, float]) -> None:
        if self.progress:  # one line per epoch even where the bar is off (a log file, CI)
            scores = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch")
            tqdm.write(f"{what}: {scores}", file=sys.stderr)

    def calibrate(self) -> None:
        if not self.valid:
            return
        batch_words = [example_words(e) for e in self.valid]
        logits = logits_for_calibration(self.model, self.tokenizer, batch_words)
        gold = np.array([self.intent_index[e.intent] for e in self.valid])
        self.labels.temperature = fit_temperature(logits, gold)
        probs = run(self.model, self.tokenizer, batch_words).intent_probs
        oos = self.intent_index.get(OOS)
        self.labels.oos_threshold = oos_threshold(probs.max(1), probs.argmax(1), gold, oos)
        if self.faq is not None and self.faq.valid:
            self.labels.answer_threshold = self._fit_answer_threshold()
        if self.sentiment is not None and self.sentiment[1]:
            self.labels.frustration_threshold = fit_frustration(
                self.model, self.tokenizer, self.sentiment[1], self.progress
            )

    def _fit_answer_threshold(self) -> float:
        assert self.faq is not None
        answers = list(self.faq.answers)
        emb = run(self.model, self.tokenizer, word_lists([self.faq.answers[a] for a in answers])).match
        q = run(self.model, self.tokenizer, word_lists([t for t, _ in self.faq.valid])).match
        scores = q @ emb.T
        best = scores.max(1)
        right = np.array(
            [answers[int(i)] == a for i, (_, a) in zip(scores.argmax(1), self.faq.valid, strict=True)]
        )
        # Out-of-scope turns are the negatives. The matcher never trains on them (it learns from question and
        # answer pairs only), so the training split's are held out for it as much as validation's; validation
        # alone holds a tenth of a domain's few dozen, 3 in the shop's, and a cut-off fitted on 3 fell low
        # enough that "what's the weather like today" got the account answer (docs/benchmarks.md).
        negatives = [example_words(e) for e in self.valid + self.train if e.intent == OOS][:200]
        neg = (run(self.model, self.tokenizer, negatives).match @ emb.T).max(1) if negatives else best[:0]
        wrong = np.concatenate([best[~right], neg])
        return answer_threshold(best[right], wrong.astype(np.float32))

    def save(self, out_dir: Path, result: dict[str, Any]) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.labels = self.labels
        self.model.save(out_dir, self.tokenizer)
        config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.cfg).items()}
        (out_dir / "train_config.json").write_text(json.dumps(config, indent=2))
        if self.faq is not None:
            (out_dir / "answers.json").write_text(json.dumps(self.faq.answers, indent=2))
        (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
