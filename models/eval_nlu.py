"""`voicebot eval-nlu`: fine-tune on a public dataset's train split, evaluate on its test split as typed
and in an ASR-style spoken form, and save the report (JSON, Markdown row, confusion-matrix PNG)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.augment import spoken_tokens
from models.data import Example, load_dataset
from models.evaluate import evaluate
from models.train_joint import JointTrainConfig, JointTrainer, example_words


def spoken_example(example: Example) -> Example:
    """The test utterance as an ideal ASR prints it (lower case, no punctuation, numbers as words)."""
    tokens, tags = spoken_tokens(example_words(example), example.tags)
    return replace(
        example, text=" ".join(tokens), tokens=tokens, tags=tags if example.tags is not None else None
    )


def eval_nlu(
    dataset: str,
    out_dir: Path,
    config: JointTrainConfig,
    data_dir: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, evaluate, write `out_dir/{model,report.json,confusion.png}`; `limit` caps each split."""
    data = load_dataset(dataset, data_dir, seed=config.seed)
    train, valid, test = (split[:limit] if limit else split for split in (data.train, data.valid, data.test))
    intents = sorted({e.intent for e in train + valid})
    if data.has_oos and "oos" not in intents:
        intents.append("oos")
    trainer = JointTrainer(train, valid, intents, data.entity_types, config, progress=progress)
    training = trainer.fit(out_dir / "model")
    title = f"{dataset} ({config.encoder.name}, {training['kept']})"
    report = {
        "dataset": dataset,
        "encoder": str(config.encoder),
        "train_size": len(train),
        "test_size": len(test),
        "training": {k: v for k, v in training.items() if k != "history"},
        "history": training["history"],
        "notes": data.notes,
        "typed": evaluate(out_dir / "model", test, out_dir, title),
        "spoken": evaluate(out_dir / "model", [spoken_example(e) for e in test], None, title),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def summary_line(report: dict[str, Any]) -> str:
    typed, spoken = report["typed"], report["spoken"]
    parts = [f"{report['dataset']}: intent acc {typed['intent_acc']:.4f} (spoken {spoken['intent_acc']:.4f})"]
    for key in ("in_scope_acc", "oos_recall", "entity_f1", "sentence_acc"):
        if key in typed:
            parts.append(f"{key} {typed[key]:.4f} (spoken {spoken[key]:.4f})")
    seconds = report["training"]["train_seconds"]
    parts.append(f"p50 {typed['latency']['p50_ms']:.1f} ms, train {seconds:.0f} s")
    return "; ".join(parts)
