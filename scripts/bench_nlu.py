"""NLU benchmark: fine-tune the joint model on each public dataset, evaluate typed and ASR-style test text,
and write the NLU table of docs/benchmarks.md beside the published numbers.

    python scripts/bench_nlu.py                       # all datasets (about an hour on 2 cores)
    python scripts/bench_nlu.py --datasets snips --epochs 2
    python scripts/bench_nlu.py --datasets snips --epochs 3 --encoder "$(python scripts/get_mpnet.py)"
    python scripts/bench_nlu.py --datasets snips --teacher out/bench_nlu/snips-all-mpnet-base-v2/model
    python scripts/bench_nlu.py --datasets snips --augment 0.3

A run with another encoder, a teacher or augmentation is its own row (`snips-all-mpnet-base-v2`,
`snips-distilled-all-mpnet-base-v2`, `snips-augment-0.3`), beside the default MiniLM row.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _bench_common import machine_info, machine_line, md_table, write_section

from models.data import load_dataset, load_sentiment
from models.eval_nlu import eval_nlu
from models.train_joint import JointTrainConfig
from voicebot.nlu.infer import run
from voicebot.nlu.model import SENTIMENTS, JointNLU, mean_pool
from voicebot.nlu.tokens import encode, word_lists

PUBLISHED = {
    "banking77": "BERT-class ≈ 93 % (best reported ≈ 94.9 %)",
    "clinc150": "BERT 96.9 % in-scope / 40.3 % OOS recall; Rasa 91.5 % / 45.3 %",
    "snips": "JointBERT 99.1 % intent, slot F1 96.9–97.2",
    "bitext": "—",
    "nlupp": "multi-label; reported as exact label-set accuracy",
}
TARGETS = {
    "banking77": {"intent_acc": 0.935},
    "clinc150": {"in_scope_acc": 0.96, "oos_recall": 0.60},
    "snips": {"intent_acc": 0.985, "entity_f1": 0.96},
    "bitext": {"intent_acc": 0.97, "entity_f1": 0.95},
}


def frozen_baseline(dataset: str, encoder: Path) -> dict[str, float]:
    """Frozen encoder mean-pooled embeddings + logistic regression: the bar fine-tuning must clear."""
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    data = load_dataset(dataset)
    tok, enc = AutoTokenizer.from_pretrained(str(encoder)), AutoModel.from_pretrained(str(encoder)).eval()

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 128):
            b = encode(tok, word_lists(texts[i : i + 128]), 64)
            hidden = enc(input_ids=b.input_ids, attention_mask=b.attention_mask).last_hidden_state
            out.append(torch.nn.functional.normalize(mean_pool(hidden, b.attention_mask), dim=-1).numpy())
        return np.concatenate(out)

    started = time.perf_counter()
    train = data.train + data.valid
    clf = LogisticRegression(C=10.0, max_iter=3000).fit(
        embed([e.text for e in train]), [e.intent for e in train]
    )
    acc = float(
        (clf.predict(embed([e.text for e in data.test])) == np.array([e.intent for e in data.test])).mean()
    )
    return {"intent_acc": acc, "seconds": round(time.perf_counter() - started, 1)}


def sentiment_eval(model_dir: Path) -> dict[str, float]:
    from sklearn.metrics import f1_score, precision_score, recall_score

    model, tok = JointNLU.load(model_dir)
    test = load_sentiment().test
    out = run(model, tok, word_lists([e.text for e in test]))
    gold = [SENTIMENTS.index(e.label) for e in test]
    frustrated = np.array([e.frustrated for e in test])
    flagged = out.frustration >= model.labels.frustration_threshold
    return {
        "macro_f1": float(f1_score(gold, out.sentiment_probs.argmax(1), average="macro")),
        "frustration_recall": float(recall_score(frustrated, flagged)),
        "frustration_precision": float(precision_score(frustrated, flagged)),
        "frustration_threshold": model.labels.frustration_threshold,
        "n": len(test),
    }


def domain_report(domain: Path, out: Path) -> dict[str, Any]:
    """The default domain's model (Bitext intents + own examples + GoEmotions sentiment + FAQ matcher, one
    encoder), trained with `voicebot train`'s recipe, scored on the Bitext test split it never saw."""
    from models.eval_nlu import spoken_example
    from models.evaluate import evaluate
    from models.train_domain import train_domain
    from voicebot.config import load_config

    model, _ = train_domain(domain, load_config().cache_dir, progress=False)
    training = json.loads((model / "metrics.json").read_text())
    test = load_dataset("bitext").test
    title = f"Bitext test, {domain} model"
    return {
        "dataset": "bitext",
        "model": str(model),
        "training": {k: v for k, v in training.items() if k != "history"},
        "typed": evaluate(model, test, out, title),
        "spoken": evaluate(model, [spoken_example(e) for e in test], None, title),
        "sentiment": sentiment_eval(model),
    }


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f} %"


ORDER = ("banking77", "clinc150", "snips", "bitext", "nlupp", "shop")


def _place(key: str, dataset: str) -> float:
    """Rows in ORDER; another encoder's row right after its dataset's."""
    if key in ORDER:
        return ORDER.index(key)
    return ORDER.index(dataset) + 0.5 if dataset in ORDER else len(ORDER)


def _latest(reports: dict[str, dict[str, Any]]) -> str:
    """The machine line of the newest row: the table is re-drawn from every saved row, not just this run's."""
    lines: list[str] = [str(rep.get("machine", "")) for rep in reports.values()]

    def when(line: str) -> str:
        found = re.search(r"run (\S+ \S+) UTC", line)
        return found.group(1) if found else ""

    return max(lines, key=when, default="")


def teacher_encoder(teacher: Path) -> str:
    """The encoder a teacher model was fine-tuned from, which names its distilled rows."""
    config = teacher / "train_config.json"
    if not config.is_file():
        raise SystemExit(f"{teacher}: no train_config.json, not a trained model folder")
    return Path(json.loads(config.read_text())["encoder"]).name


def row_key(name: str, encoder: Path | None, teacher: Path | None, augment: float) -> str:
    """A run's own row: the dataset, then what differs from the default recipe (read back by row_label)."""
    key = name if encoder is None else f"{name}-{encoder.name}"
    key += f"-distilled-{teacher_encoder(teacher)}" if teacher is not None else ""
    return key + (f"-augment-{augment:g}" if augment else "")


def row_label(name: str, key: str) -> str:
    """The table's name for a row key: "snips (encoder X, distilled from Y, ASR-style augmentation P)"."""
    rest, _, augment = key[len(name) + 1 :].partition("augment-")
    encoder, _, teacher = rest.rstrip("-").partition("distilled-")
    parts = [f"encoder {encoder.rstrip('-')}"] if encoder.rstrip("-") else []
    parts += [f"distilled from {teacher}"] if teacher else []
    parts += [f"ASR-style augmentation {augment}"] if augment else []
    return f"{name} ({', '.join(parts)})" if parts else name


def kept(training: dict[str, Any]) -> str:
    """Which weights a row's model kept; rows from before checkpoint averaging name only their best epoch."""
    return str(training.get("kept", f"epoch {training['best_epoch']}"))


def rows(reports: dict[str, dict[str, Any]]) -> list[list[str]]:
    out = []
    for key in sorted(reports, key=lambda k: (_place(k, reports[k]["dataset"]), k)):
        rep = reports[key]
        name = rep["dataset"]
        typed, spoken = rep["typed"], rep["spoken"]
        scores = []
        for metric in ("intent_acc", "in_scope_acc", "oos_recall", "entity_f1", "sentence_acc"):
            if metric in typed:
                goal = TARGETS.get(name, {}).get(metric)
                mark = (
                    "" if goal is None else (" ✅" if typed[metric] >= goal else f" ❌ (target {pct(goal)})")
                )
                scores.append(f"{metric} {pct(typed[metric])}{mark} / spoken {pct(spoken[metric])}")
        lat = typed["latency"]
        label = f"{name} ({key} domain model)" if key == "shop" else row_label(name, key)
        out.append(
            [
                label,
                "<br>".join(scores),
                PUBLISHED.get(name, ""),
                f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}",
                f"{typed['model_mb']}",
                f"{rep['training']['train_seconds']:.0f} s ({kept(rep['training'])})",
                f"`{rep.get('command', 'python scripts/bench_nlu.py')}`",
            ]
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--datasets", nargs="*", default=["banking77", "clinc150", "snips", "bitext", "nlupp"]
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--domain", type=Path, help="also train and score a domain model (e.g. domains/shop)")
    parser.add_argument("--int8", action="store_true", help="also score the domain model int8-quantised")
    parser.add_argument("--work", type=Path, default=Path("out/bench_nlu"), help="models and reports")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--encoder", type=Path, help="another Hugging Face encoder folder (own table rows)")
    parser.add_argument(
        "--teacher", type=Path, help="a trained model folder of the same dataset to distil from (own rows)"
    )
    parser.add_argument(
        "--augment", type=float, default=0.0, help="share of training text rewritten ASR-style (own rows)"
    )
    args = parser.parse_args()
    info = machine_info()
    command = ("python scripts/bench_nlu.py " + " ".join(sys.argv[1:])).strip()
    cfg = JointTrainConfig(epochs=args.epochs, teacher=args.teacher, augment=args.augment)
    if args.encoder is not None:
        cfg.encoder = args.encoder
    results = args.out / "results"
    results.mkdir(parents=True, exist_ok=True)
    (args.out / "img").mkdir(parents=True, exist_ok=True)
    done: dict[str, dict[str, Any]] = {}
    for name in args.datasets:
        key = row_key(name, args.encoder, args.teacher, args.augment)
        print(f"== {key}", flush=True)
        done[key] = eval_nlu(name, args.work / key, cfg)
        shutil.copy(args.work / key / "confusion.png", args.out / "img" / f"nlu_{key}_confusion.png")
        if key == "banking77":
            done[key]["frozen_baseline"] = frozen_baseline("banking77", cfg.encoder)
    if args.domain is not None:
        print(f"== domain {args.domain}", flush=True)
        done["shop"] = domain_report(args.domain, args.work / "shop")
        shutil.copy(args.work / "shop" / "confusion.png", args.out / "img" / "nlu_shop_confusion.png")
    shop_file = results / "nlu_shop.json"
    if args.int8 and shop_file.is_file():
        from models.evaluate import evaluate

        shop = done.get("shop") or json.loads(shop_file.read_text())
        shop["int8"] = evaluate(Path(shop["model"]), load_dataset("bitext").test, None, "int8", int8=True)
        shop["int8"]["command"] = command
        done["shop"] = shop
    for key, rep in done.items():  # each row keeps the command and machine that produced it
        fresh = key != "shop" or args.domain is not None  # else the shop row was read back for --int8
        if fresh or "command" not in rep:
            rep |= {"command": command, "machine": machine_line(info)}
        (results / f"nlu_{key}.json").write_text(json.dumps(rep, indent=2))
    reports = {p.stem[4:]: json.loads(p.read_text()) for p in sorted(results.glob("nlu_*.json"))}
    body = [
        "## NLU (joint intent + entity model, fine-tuned per dataset)",
        "",
        "Encoder: packaged all-MiniLM-L6-v2 (22 M parameters) unless the row names another, fine-tuned "
        "with early stopping on a validation split, seed 13. *Spoken* = the same test set rewritten as an "
        "ideal ASR prints it (lower case, no punctuation, numbers as words). Latency: one utterance, all "
        "heads, one thread. Each row was produced by the command beside it; machines and dates are in "
        "`docs/results/nlu_*.json`.",
        "",
        "Latest run: " + _latest(reports),
        "",
        md_table(
            ["dataset", "measured (typed / spoken)", "published", "p50/p95 ms", "MB", "training", "command"],
            rows(reports),
        ),
    ]
    frozen = reports.get("banking77", {}).get("frozen_baseline")
    if frozen:
        body += ["", f"Frozen baseline (Banking77, frozen MiniLM embeddings + logistic regression): "
                 f"{pct(frozen['intent_acc'])}."]  # fmt: skip
    balanced = reports.get("clinc150", {}).get("balanced_operating_point")
    if balanced:
        body += [
            "",
            "CLINC150 operating points (same model, OOS threshold chosen on validation): max overall "
            "accuracy (default, in the table) vs. mean of in-scope accuracy and OOS recall: in-scope "
            f"{pct(balanced['in_scope_acc'])}, OOS recall {pct(balanced['oos_recall'])}. With no threshold "
            "(explicit oos class only) the model gives 96.53 % / 38.50 %.",
        ]
    int8 = reports.get("shop", {}).get("int8")
    if int8:
        fp32 = reports["shop"]["typed"]
        body += [
            "",
            "int8 dynamic quantisation of the shop model (`--int8`, Bitext test, typed): intent acc "
            f"{pct(int8['intent_acc'])} (fp32 {pct(fp32['intent_acc'])}), entity F1 {pct(int8['entity_f1'])} "
            f"(fp32 {pct(fp32['entity_f1'])}), latency p50/p95 {int8['latency']['p50_ms']:.1f} / "
            f"{int8['latency']['p95_ms']:.1f} ms (fp32 {fp32['latency']['p50_ms']:.1f} / "
            f"{fp32['latency']['p95_ms']:.1f} ms).",
        ]
    senti = reports.get("shop", {}).get("sentiment")
    if senti:
        body += [
            "",
            "Sentiment head (same encoder as the shop domain model, trained alongside it on GoEmotions, 3 "
            f"classes): macro-F1 {senti['macro_f1']:.4f}, "
            f"frustration recall {senti['frustration_recall']:.4f} "
            f"(precision {senti['frustration_precision']:.4f}) on the {senti['n']} GoEmotions test comments.",
        ]
    body += ["", "Confusion matrices: " + ", ".join(f"[{n}](img/nlu_{n}_confusion.png)" for n in reports)]
    write_section(args.out / "benchmarks.md", "bench_nlu", "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
