"""Dataset loaders: every public corpus and a user's own JSONL into one `Example` format.

The fine-tuning recipes (joint intent + BIO entities) and the benchmarks read only this format, so each
corpus's quirks (broken offsets, CSV quoting, label grouping, overlapping slots) are handled once, here.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from models.bio import Span as Span
from models.bio import bio_error as bio_error
from models.bio import bio_to_spans as bio_to_spans
from models.bio import spans_to_bio as spans_to_bio
from models.bio import tokenize as tokenize

OOS = "oos"
NO_INTENT = "none"  # NLU++ turns that carry only slots ("today") have no intent label
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRUSTRATION = frozenset({"anger", "annoyance", "disapproval", "disappointment"})


@dataclass
class Example:
    text: str
    intent: str
    tokens: list[str] | None = None
    tags: list[str] | None = None
    labels: list[str] | None = None
    source: str = ""


@dataclass
class Dataset:
    name: str
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    intents: list[str]
    entity_types: list[str]
    has_oos: bool
    multi_label: bool = False
    notes: dict[str, int] = field(default_factory=dict)  # data-repair counts a benchmark should report


@dataclass
class SentimentExample:
    text: str
    label: str  # negative | neutral | positive
    frustrated: bool
    emotions: list[str]
    source: str = ""


@dataclass
class SentimentData:
    train: list[SentimentExample]
    valid: list[SentimentExample]
    test: list[SentimentExample]
    notes: dict[str, int] = field(default_factory=dict)


class DataError(ValueError):
    """A malformed row; the message starts with file:line (and the field) so the user can go and fix it."""

    def __init__(self, source: str, message: str, field: str | None = None) -> None:
        self.source, self.field = source, field
        super().__init__(f"{source}: {field + ': ' if field else ''}{message}")


def data_root(data_dir: Path | str | None = None) -> Path:
    """Argument, else $VOICEBOT_DATA, else ../shared/data next to the repository."""
    return Path(data_dir if data_dir is not None else os.environ.get("VOICEBOT_DATA") or DEFAULT_DATA_DIR)


# ------------------------------------------------------------------------------------------ helpers


def _csv_rows(path: Path, **fmt: Any) -> Iterator[tuple[str, list[str]]]:
    """CSV rows with the file:line where each record starts (records may span several lines)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader, line = csv.reader(f, **fmt), 1
        for row in reader:
            yield f"{path}:{line}", row
            line = reader.line_num + 1


def _columns(path: Path, wanted: Sequence[str]) -> tuple[list[int], Iterator[tuple[str, list[str]]]]:
    rows = _csv_rows(path)
    src, header = next(rows, (f"{path}:1", []))
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(src, f"missing column(s) {missing}", "header")
    return [header.index(c) for c in wanted], rows


def _split(
    items: list[Example], frac: float, seed: int, key: Callable[[Example], str] = lambda e: e.intent
) -> tuple[list[Example], list[Example]]:
    """Seeded split stratified by `key`; texts equal up to case/spacing stay on one side (no leakage)."""
    rng, held = random.Random(seed), set()
    strata: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for i, ex in enumerate(items):
        strata[key(ex)].setdefault(" ".join(ex.text.lower().split()), []).append(i)
    for k in sorted(strata):
        groups = list(strata[k].values())
        rng.shuffle(groups)
        target, taken = round(sum(map(len, groups)) * frac), 0
        for g in groups:
            if taken < target:
                held.update(g)
                taken += len(g)
    return [e for i, e in enumerate(items) if i not in held], [e for i, e in enumerate(items) if i in held]


def _need(value: Any, src: str, name: str, kind: type = str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise DataError(src, f"expected a {'non-empty ' * (kind is str)}{kind.__name__}, got {value!r}", name)
    return value


def _types(examples: Iterable[Example]) -> list[str]:
    return sorted({t[2:] for e in examples for t in e.tags or [] if t != "O"})


# ------------------------------------------------------------------------------------------ corpora


def _banking77(root: Path, seed: int) -> Dataset:
    def read(name: str) -> list[Example]:
        (ti, ci), rows = _columns(root / "banking77" / name, ["text", "category"])
        return [Example(_need(r[ti], s, "text"), _need(r[ci], s, "category"), source=s) for s, r in rows]

    train, valid = _split(read("train.csv"), 0.1, seed)
    return Dataset("banking77", train, valid, read("test.csv"), sorted({e.intent for e in train}), [], False)


def _clinc150(root: Path, seed: int) -> Dataset:
    path = root / "clinc150" / "data_full.json"
    raw = json.loads(path.read_text(encoding="utf-8"))

    def part(*keys: str) -> list[Example]:
        out = []
        for key in keys:
            for i, pair in enumerate(raw.get(key) or []):
                src = f"{path}:{key}[{i}]"
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise DataError(src, f"expected [text, intent], got {pair!r}")
                intent = OOS if key.startswith("oos_") else _need(pair[1], src, "intent")
                out.append(Example(_need(pair[0], src, "text"), intent, source=src))
        return out

    train = part("train", "oos_train")
    return Dataset("clinc150", train, part("val", "oos_val"), part("test", "oos_test"),
                   sorted({e.intent for e in train}), [], True)  # fmt: skip


def _snips(root: Path, seed: int) -> Dataset:
    def read(split: str) -> list[Example]:
        d = root / "snips" / split
        files = [d / "seq.in", d / "seq.out", d / "label"]
        cols = [p.read_text(encoding="utf-8").rstrip("\n").split("\n") for p in files]
        if len({len(c) for c in cols}) != 1:
            raise DataError(str(d), f"seq.in/seq.out/label have {[len(c) for c in cols]} lines")
        out = []
        for n, (words, bio, label) in enumerate(zip(*cols, strict=True), 1):
            tokens, tags, src = words.split(), bio.split(), f"{files[1]}:{n}"
            if len(tokens) != len(tags):
                raise DataError(src, f"{len(tags)} tags for {len(tokens)} tokens in seq.in", "tags")
            if err := bio_error(tags):
                raise DataError(src, err, "tags")
            intent = _need(label.strip(), f"{files[2]}:{n}", "label")
            out.append(Example(" ".join(tokens), intent, tokens, tags, source=src))
        return out

    train, valid, test = read("train"), read("valid"), read("test")
    intents = sorted({e.intent for e in train})
    return Dataset("snips", train, valid, test, intents, _types(train + valid + test), False)


def _locate(text: str, value: str, start: str, end: str) -> tuple[tuple[int, int] | None, str]:
    """Where a Bitext entity really is, and which rule found it (the offsets are off in ~590 rows)."""
    s, e = (int(start), int(end)) if start.strip().isdigit() and end.strip().isdigit() else (-1, -1)
    ok = 0 <= s < e <= len(text)
    if ok and text[s:e] == value:
        return (s, e), "entity_offsets_exact"
    # The off rows point at the right text but the value is truncated or re-cased ("00004587345" vs
    # "4587345", "160" vs "1", "pro" vs "Pro"); searching first would find "pro" inside "problems".
    if ok and value.lower() in text[s:e].lower():
        return (s, e), "entity_offsets_contain_value"
    whole_word, anywhere = rf"(?<!\w){re.escape(value)}(?!\w)", re.escape(value)
    for pattern in (whole_word, anywhere, r"\s+".join(map(re.escape, value.split()))):  # any spacing
        if pattern and (m := re.search(pattern, text, re.IGNORECASE)):
            return (m.start(), m.end()), "entity_found_in_text"
    return None, "entity_dropped"


def _bitext(root: Path, seed: int) -> Dataset:
    """Bitext sample: fixed seeded 80/20 split stratified by intent, valid = 10 % of the 80 (same seed)."""
    path = root / "bitext_customer_support" / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    cols = ["instruction", "intent", "entity_type", "entity_value", "start_offset", "end_offset"]
    idx, rows = _columns(path, cols)
    rules = ["offsets_exact", "offsets_contain_value", "found_in_text", "dropped", "widened_to_token"]
    notes = Counter({"entity_rows": 0, **{f"entity_{r}": 0 for r in rules}})
    items = []
    for src, row in rows:
        text, intent, kind, value, start, end = (row[i] if i < len(row) else "" for i in idx)
        spans: list[Span] = []
        if kind.strip() and value.strip():
            notes["entity_rows"] += 1
            where, rule = _locate(_need(text, src, "instruction"), value, start, end)
            notes[rule] += 1
            if where:
                spans.append((kind.strip(), *where))
                bounds = {b for _, s, e in tokenize(text) for b in (s, e)}
                notes["entity_widened_to_token"] += not {where[0], where[1]} <= bounds
        tokens, tags = spans_to_bio(_need(text, src, "instruction"), spans)
        items.append(Example(text, _need(intent, src, "intent"), tokens, tags, source=src))
    train, test = _split(items, 0.2, seed)
    train, valid = _split(train, 0.1, seed)
    intents = sorted({e.intent for e in items})
    return Dataset("bitext", train, valid, test, intents, _types(items), False, notes=dict(notes))


def _nlupp(root: Path, seed: int, domains: Sequence[str], test_folds: Sequence[int] = (0, 1)) -> Dataset:
    """NLU++ in the paper's "large" regime, first pair: train on folds 2-19, test on folds 0+1.

    The paper repeats this for 10 consecutive test pairs and averages; one pair is what a single training run
    can reproduce. Valid is a seeded 10 % of the 18 training folds (the paper has none). Both domains = the
    paper's ALL setup (fold k of each domain joined). Slots sharing a token (3 turns) keep the longer span.
    """
    base = root / "nlupp" / "data"
    ontology = json.loads((base / "ontology.json").read_text(encoding="utf-8"))
    notes = Counter({"slot_overlaps_dropped": 0, "no_intent_turns": 0})
    train: list[Example] = []
    test: list[Example] = []
    for domain, fold in ((d, k) for d in domains for k in range(20)):
        path = base / domain / f"fold{fold}.json"
        for i, turn in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            src = f"{path}:[{i}]"
            text = _need(turn.get("text"), src, "text")
            labels = sorted(_need(turn.get("intents", []), src, "intents", list))
            spans: list[Span] = []
            for kind, slot in (turn.get("slots") or {}).items():
                s, e = _need(slot.get("span"), src, f"slots.{kind}.span", list)
                if text[s:e] != slot.get("text"):
                    raise DataError(src, f"span is {text[s:e]!r}, not {slot.get('text')!r}", kind)
                spans.append((kind, s, e))
            kept: list[Span] = []
            for sp in sorted(spans, key=lambda x: x[1] - x[2]):  # longest first; overlaps checked per token
                try:
                    spans_to_bio(text, [*kept, sp])
                    kept.append(sp)
                except ValueError:
                    notes["slot_overlaps_dropped"] += 1
            notes["no_intent_turns"] += not labels
            tokens, tags = spans_to_bio(text, kept)
            ex = Example(text, "+".join(labels) or NO_INTENT, tokens, tags, labels, src)
            (test if fold in test_folds else train).append(ex)
    train, valid = _split(train, 0.1, seed, key=lambda e: "")
    wanted = {*domains, "general"}
    intents = sorted(k for k, v in ontology["intents"].items() if wanted & set(v["domain"]))
    types = sorted(k for k, v in ontology["slots"].items() if wanted & set(v["domain"]))
    name = "nlupp" if len(domains) > 1 else f"nlupp-{domains[0]}"
    return Dataset(name, train, valid, test, intents, types, False, True, dict(notes))


def _polarity(emotions: Sequence[str], groups: dict[str, str]) -> str:
    """Negative wins over positive: for escalation a missed complaint costs more than a false alarm."""
    kinds = {groups.get(e, "neutral") for e in emotions}
    return "negative" if "negative" in kinds else "positive" if "positive" in kinds else "neutral"


def load_sentiment(data_dir: Path | str | None = None) -> SentimentData:
    """GoEmotions as 3-class polarity + a `frustrated` flag (anger/annoyance/disapproval/disappointment).

    Mapping by the paper's sentiment_dict.json: any negative emotion -> negative (also when mixed with
    positive, ~2 % of rows); else any positive -> positive; neutral and ambiguous-only (surprise, confusion,
    curiosity, realization) -> neutral. The original emotions are kept for finer-grained use.
    """
    base = data_root(data_dir) / "sentiment"
    names = (base / "emotions.txt").read_text(encoding="utf-8").split()
    grouping = json.loads((base / "sentiment_dict.json").read_text("utf-8"))
    groups = {e: g for g, es in grouping.items() for e in es}
    notes = Counter({"mixed_positive_negative": 0, "ambiguous_only": 0})

    def read(name: str) -> list[SentimentExample]:
        out = []
        for src, row in _csv_rows(base / name, delimiter="\t"):  # default quoting undoes the doubled quotes
            if len(row) != 3:
                raise DataError(src, f"expected 3 tab-separated fields, got {len(row)}")
            ids = row[1].split(",")
            if not all(i.isdigit() and int(i) < len(names) for i in ids):
                raise DataError(src, f"bad emotion ids {row[1]!r}", "labels")
            emotions = [names[int(i)] for i in ids]
            kinds = {groups.get(e, "neutral") for e in emotions}
            notes["mixed_positive_negative"] += {"positive", "negative"} <= kinds
            notes["ambiguous_only"] += kinds == {"ambiguous"}
            frustrated = bool(FRUSTRATION & set(emotions))
            out.append(SentimentExample(row[0], _polarity(emotions, groups), frustrated, emotions, src))
        return out

    return SentimentData(read("train.tsv"), read("dev.tsv"), read("test.tsv"), dict(notes))


def _goemotions(root: Path, seed: int) -> Dataset:
    """Polarity as the "intent", for the classification benchmarks; load_sentiment keeps `frustrated`."""
    data = load_sentiment(root)
    train, valid, test = (
        [Example(s.text, s.label, source=s.source) for s in p] for p in (data.train, data.valid, data.test)
    )
    return Dataset(
        "goemotions", train, valid, test, ["negative", "neutral", "positive"], [], False, notes=data.notes
    )


_LOADERS: dict[str, Callable[[Path, int], Dataset]] = {
    "banking77": _banking77, "clinc150": _clinc150, "snips": _snips, "bitext": _bitext,
    "nlupp": partial(_nlupp, domains=["banking", "hotels"]),
    "nlupp-banking": partial(_nlupp, domains=["banking"]),
    "nlupp-hotels": partial(_nlupp, domains=["hotels"]),
    "goemotions": _goemotions,
}  # fmt: skip
DATASETS = tuple(_LOADERS)


def load_dataset(name: str, data_dir: Path | str | None = None, seed: int = 13) -> Dataset:
    """Load a public corpus by name (see DATASETS) from `data_dir`, $VOICEBOT_DATA or ../shared/data."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    root = data_root(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} not found; pass data_dir or set VOICEBOT_DATA")
    return _LOADERS[name](root, seed)


# ------------------------------------------------------------------------------------------ user data


def load_jsonl(
    path: Path | str, intents: Sequence[str] | None = None, entity_types: Sequence[str] | None = None
) -> list[Example]:
    """A user's own data: one {"text", "intent", optional "entities": [{"start", "end", "type"}]} per line.

    Blank lines are skipped; anything else malformed raises DataError naming file:line and the field.
    `entities` present (even empty) means the row is annotated and gets tokens + BIO tags.
    """
    path = Path(path)
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            src = f"{path}:{n}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(src, f"invalid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(src, f"expected a JSON object, got {type(row).__name__}")
            text, intent = _need(row.get("text"), src, "text"), _need(row.get("intent"), src, "intent")
            if intents is not None and intent not in intents:
                raise DataError(src, f"unknown intent {intent!r}", "intent")
            ex = Example(text, intent, source=src)
            if "entities" in row:
                ents = _need(row["entities"], src, "entities", list)
                spans = [_entity(ent, k, text, src, entity_types) for k, ent in enumerate(ents)]
                try:
                    ex.tokens, ex.tags = spans_to_bio(text, spans)
                except ValueError as err:
                    raise DataError(src, str(err), "entities") from None
            out.append(ex)
    return out


def _entity(ent: Any, k: int, text: str, src: str, types: Sequence[str] | None) -> Span:
    where = f"entities[{k}]"
    if not isinstance(ent, dict):
        raise DataError(src, f"expected an object, got {ent!r}", where)
    kind = _need(ent.get("type"), src, f"{where}.type")
    if types is not None and kind not in types:
        raise DataError(src, f"unknown entity type {kind!r}", f"{where}.type")
    s, e = ent.get("start"), ent.get("end")
    if not (type(s) is int and type(e) is int and 0 <= s < e <= len(text)):
        raise DataError(src, f"bad span start={s!r} end={e!r} for text of length {len(text)}", where)
    if not text[s:e].strip():
        raise DataError(src, f"span [{s}, {e}) is only whitespace", where)
    return kind, s, e
