"""Evaluating a trained joint model on a test split: intent accuracy, out-of-scope handling, entity F1,
sentence accuracy, latency — and a confusion-matrix PNG. Used by `voicebot eval-nlu` and the benchmark."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bio import entity_f1, predicted_tags
from models.train_joint import example_words
from voicebot.nlu.infer import run
from voicebot.nlu.model import OOS, JointNLU
from voicebot.nlu.parser import NLU


def intent_metrics(model: JointNLU, tokenizer: object, test: list[Any]) -> dict[str, Any]:
    labels = model.labels
    index = {name: i for i, name in enumerate(labels.intents)}
    out = run(model, tokenizer, [example_words(e) for e in test])
    conf, pred = out.intent_probs.max(1), out.intent_probs.argmax(1)
    oos = index.get(OOS)
    has_oos = oos is not None and any(e.intent == OOS for e in test)
    if has_oos:
        assert oos is not None
        pred = np.where(conf < labels.oos_threshold, oos, pred)
    gold = np.array([index.get(e.intent, -1) for e in test])
    metrics: dict[str, Any] = {"n": len(test), "intent_acc": float((pred == gold).mean())}
    if has_oos:
        in_scope = gold != oos
        metrics["in_scope_acc"] = float((pred[in_scope] == gold[in_scope]).mean())
        metrics["oos_recall"] = float((pred[~in_scope] == oos).mean())
        metrics["oos_precision"] = float((gold[pred == oos] == oos).mean()) if (pred == oos).any() else 0.0
    tagged = [i for i, e in enumerate(test) if e.tags is not None]
    if tagged and len(labels.tags) > 1:
        gold_tags = [list(test[i].tags) for i in tagged]
        pred_tags = predicted_tags(labels.tags, [out.tags[i] for i in tagged], gold_tags)
        metrics["entity_f1"] = entity_f1(gold_tags, pred_tags)
        same = [p == g and pred[i] == gold[i] for i, p, g in zip(tagged, pred_tags, gold_tags, strict=True)]
        metrics["sentence_acc"] = float(np.mean(same))
    metrics["_pred"], metrics["_gold"] = pred, gold
    return metrics


def latency(model_dir: Path, texts: list[str], n: int = 200, int8: bool = False) -> dict[str, float]:
    """Per-utterance parse latency on one thread (all heads, normalisers included)."""
    nlu = NLU(model_dir, threads=1, int8=int8)
    for text in texts[:10]:
        nlu.parse(text)
    times = []
    for text in (texts * (1 + n // max(1, len(texts))))[:n]:
        start = time.perf_counter()
        nlu.parse(text)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def model_size_mb(model_dir: Path) -> float:
    return round(sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) / 1e6, 1)


def confusion_png(pred: np.ndarray, gold: np.ndarray, names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(names)
    matrix = np.zeros((n, n), np.int64)
    for g, p in zip(gold, pred, strict=True):
        if g >= 0:
            matrix[g, p] += 1
    size = max(6.0, min(24.0, n * 0.18))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    ticks = range(n)
    ax.set_xticks(ticks, names, rotation=90, fontsize=max(3, 9 - n // 25))
    ax.set_yticks(ticks, names, fontsize=max(3, 9 - n // 25))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def evaluate(
    model_dir: Path, test: list[Any], report_dir: Path | None, title: str, int8: bool = False
) -> dict[str, Any]:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, tokenizer = JointNLU.load(model_dir, int8=int8)
    metrics = intent_metrics(model, tokenizer, test)
    pred, gold = metrics.pop("_pred"), metrics.pop("_gold")
    metrics["latency"] = latency(model_dir, [e.text for e in test[:200]], int8=int8)
    metrics["model_mb"] = model_size_mb(model_dir)
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        confusion_png(pred, gold, model.labels.intents, report_dir / "confusion.png", title)
        (report_dir / "report.json").write_text(json.dumps(metrics, indent=2))
    return metrics
