"""Intent accuracy on spoken, indirect caller requests: `models/eval_sets/shop_spoken_intents.yaml`.

The domain's own validation examples are written by the same hand as its training examples, so they say
little about callers who ramble, complain or only hint at what they want ("it's been two weeks and still
nothing"). This set is written separately and never trained on; its `dev` split may guide what training
data to add, its `test` split is only reported.

    .venv/bin/python -m models.eval_spoken --quick            # the shop's quick model, typed text
    .venv/bin/python -m models.eval_spoken --first --asr mulaw   # the first model (what a fresh install
                                 # serves), typed and as the TTS's speech over the line, heard by Whisper
    .venv/bin/python -m models.eval_spoken --asr mulaw --model BEFORE --model AFTER   # before/after, one run

With several `--model`s the set is spoken and transcribed once and every model parses the same transcripts,
so a before/after comparison differs only in the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voicebot.nlu.parser import Parser

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = Path(__file__).resolve().parent / "eval_sets" / "shop_spoken_intents.yaml"
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class SpokenItem:
    text: str
    intent: str
    split: str  # "dev" (may guide training data) or "test" (only reported)


def load_spoken_set(path: Path = DEFAULT) -> list[SpokenItem]:
    """The set's items, in file order; a malformed item stops with its index rather than being skipped,
    since a silently dropped item would change every accuracy figure."""
    data = yaml.safe_load(Path(path).read_text())
    rows = data.get("utterances") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a mapping with an `utterances` list")
    items = []
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"text", "intent", "split"}:
            raise ValueError(f"{path}: utterances.{n}: needs exactly text, intent and split")
        text, intent, split = row["text"], row["intent"], row["split"]
        if not isinstance(text, str) or not text.strip() or not isinstance(intent, str):
            raise ValueError(f"{path}: utterances.{n}: text and intent must be non-empty strings")
        if split not in SPLITS:
            raise ValueError(f"{path}: utterances.{n}.split: {split!r} is not one of {SPLITS}")
        items.append(SpokenItem(text=text, intent=intent, split=split))
    return items


def _share(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def intent_accuracy(
    parser: Parser, items: Sequence[SpokenItem], texts: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy overall, by split and by gold intent, and every miss.

    `texts`: what to parse instead of each item's written text (ASR transcripts of the same items, in the
    same order), so typed and heard accuracy are scored against the same labels.
    """
    if texts is not None and len(texts) != len(items):
        raise ValueError(f"{len(texts)} texts for {len(items)} items")
    heard = list(texts) if texts is not None else [item.text for item in items]
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    confusions = []
    for item, text in zip(items, heard, strict=True):
        predicted = parser.parse(text).intent
        ok = predicted == item.intent
        for key in ("all", f"split:{item.split}", f"intent:{item.intent}"):
            total[key] += 1
            right[key] += ok
        if not ok:
            confusions.append(
                {"text": text, "intent": item.intent, "predicted": predicted, "split": item.split}
            )

    def block(key: str) -> dict[str, Any]:
        return {"n": total[key], "correct": right[key], "accuracy": _share(right[key], total[key])}

    return {
        **block("all"),
        "by_split": {s: block(f"split:{s}") for s in SPLITS if total[f"split:{s}"]},
        "by_intent": {k.removeprefix("intent:"): block(k) for k in sorted(total) if k.startswith("intent:")},
        "confusions": confusions,
    }


def transcribe_items(
    items: Sequence[SpokenItem], line: str = "mulaw", prompt: str | None = None
) -> list[str]:
    """Each item spoken by the server's TTS, sent over the simulated phone `line` and transcribed by the
    configured Whisper: what the NLU would get on a call (minus the caller's own voice and accent)."""
    from voicebot.asr.base import judge
    from voicebot.audio import resample, to_float
    from voicebot.config import VoicebotConfig
    from voicebot.line import simulate
    from voicebot.pipeline import Services

    services = Services.load(VoicebotConfig())
    try:
        out = []
        for item in items:
            pcm = services.tts.synthesize_at(item.text, 16_000)
            heard = resample(simulate(pcm, 16_000, line), 8_000, 16_000)
            result = judge(services.asr.transcribe(to_float(heard), prompt), services.config.asr)
            out.append(result.text)
        return out
    finally:
        services.close()


def _asr_hints(domain: Path) -> str | None:
    """The domain's Whisper prompt, as its dialogue engine gives it on a call."""
    settings = domain / "settings.yaml"
    data = yaml.safe_load(settings.read_text()) if settings.is_file() else None
    hints = data.get("asr_hints") if isinstance(data, dict) else None
    return ", ".join(hints) if hints else None


def _summary(name: str, report: dict[str, Any]) -> str:
    parts = [f"{name}: {report['accuracy']:.3f} ({report['correct']}/{report['n']})"]
    weak = [
        f"{intent} {b['correct']}/{b['n']}"
        for intent, b in report["by_intent"].items()
        if b["accuracy"] < 0.9
    ]
    if weak:
        parts.append("weak: " + ", ".join(weak))
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domain", type=Path, default=ROOT / "domains" / "shop")
    ap.add_argument(
        "--model",
        type=Path,
        action="append",
        help="a trained model directory; again for more models scored on the same transcripts "
        "(default: the domain's, trained if missing)",
    )
    kind = ap.add_mutually_exclusive_group()
    kind.add_argument("--quick", action="store_true", help="the domain's quick model")
    kind.add_argument(
        "--first", action="store_true", help="the domain's first model (what `make run` serves)"
    )
    ap.add_argument("--set", type=Path, default=DEFAULT, dest="path")
    ap.add_argument("--split", choices=SPLITS, help="only this split (default: both, reported apart)")
    ap.add_argument(
        "--asr", metavar="LINE", help="also parse Whisper's transcripts of the TTS over this line preset"
    )
    ap.add_argument("--json", type=Path, help="write the full report (with every miss) here")
    args = ap.parse_args(argv)

    from models.train_domain import train_domain
    from models.train_first import FirstModelConfig
    from voicebot.config import VoicebotConfig
    from voicebot.nlu.parser import NLU

    config = VoicebotConfig()
    first = FirstModelConfig() if args.first else None
    models = args.model or [
        train_domain(args.domain, config.cache_dir, quick=args.quick, first=first, progress=False)[0]
    ]
    items = [i for i in load_spoken_set(args.path) if args.split is None or i.split == args.split]
    texts = transcribe_items(items, args.asr, _asr_hints(args.domain)) if args.asr else None
    heard = {"typed": None, **({args.asr: texts} if texts is not None else {})}
    reports: dict[str, dict[str, Any]] = {}
    for model in models:
        nlu = NLU(model, threads=config.nlu.threads, int8=config.nlu.int8)
        reports[str(model)] = {name: accuracy_by_split(nlu, items, said) for name, said in heard.items()}
        for name, by_split in reports[str(model)].items():
            for split, report in by_split.items():
                print(_summary(f"{model.name} {name} {split}", report))
    if args.json:
        payload = {"set": str(args.path), "asr": args.asr, "models": reports}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


def accuracy_by_split(
    parser: Parser, items: Sequence[SpokenItem], texts: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    """`intent_accuracy` of each split apart (the dev split may have guided training data, the test split
    not)."""
    out = {}
    for split in SPLITS:
        chosen = [n for n, i in enumerate(items) if i.split == split]
        if chosen:
            said = [texts[n] for n in chosen] if texts is not None else None
            out[split] = intent_accuracy(parser, [items[n] for n in chosen], said)
    return out


if __name__ == "__main__":
    sys.exit(main())
