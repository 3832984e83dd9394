"""The first model against the full one: training time and held-out scores, one run.

Trains the domain's first model (models/train_first.py) from scratch into `--cache` and scores it, and the
full model when `--full DIR` names one (or the cache holds one), on the Bitext test split neither trained
on: intent accuracy and entity F1, typed and spoken-style. Prints one JSON object; docs/benchmarks.md
("First model") has the figures with the machine.

    .venv/bin/python scripts/bench_first_model.py --cache /tmp/first [--full ~/.cache/voicebot/models/shop-…]
    .venv/bin/python scripts/bench_first_model.py --cache /tmp/first --trainable-layers 1 --epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from models.data import load_dataset
from models.eval_nlu import spoken_example
from models.evaluate import intent_metrics
from models.train_domain import model_dir, train_domain
from models.train_first import FirstModelConfig
from voicebot.nlu.model import JointNLU


def scores(model: Path) -> dict[str, Any]:
    """Bitext test intent accuracy and entity F1, typed and spoken-style."""
    nlu, tokenizer = JointNLU.load(model)
    test = load_dataset("bitext").test
    out: dict[str, Any] = {"model": str(model), "n": len(test)}
    for kind, examples in (("typed", test), ("spoken", [spoken_example(e) for e in test])):
        m = intent_metrics(nlu, tokenizer, examples)
        out[kind] = {k: round(100 * m[k], 2) for k in ("intent_acc", "entity_f1") if k in m}
    out["training"] = {
        k: v for k, v in json.loads((model / "metrics.json").read_text()).items() if k != "history"
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", type=Path, default=Path("domains/shop"))
    parser.add_argument(
        "--cache", type=Path, required=True, help="model cache the first model is trained into"
    )
    parser.add_argument("--full", type=Path, help="full model directory to compare with")
    for f in fields(FirstModelConfig):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    args = parser.parse_args()
    first = FirstModelConfig(**{f.name: getattr(args, f.name) for f in fields(FirstModelConfig)})
    started = time.perf_counter()
    model, _ = train_domain(args.domain, args.cache, force=True, progress=True, first=first)
    wall = time.perf_counter() - started
    full = args.full or model_dir(args.domain, args.cache)
    report = {
        "config": vars(first),
        "wall_s": round(wall, 1),
        "cpu_s": round(sum(os.times()[:2]), 1),
        "first": scores(model),
        "full": scores(full) if (full / "metrics.json").is_file() else None,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
