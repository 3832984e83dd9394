"""Dataset loaders on the real public files, plus the error paths on small broken files."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from models.data import (
    OOS,
    DataError,
    Dataset,
    Example,
    bio_error,
    bio_to_spans,
    data_root,
    load_dataset,
    load_jsonl,
    load_sentiment,
    spans_to_bio,
    tokenize,
)
from tests.conftest import needs_data

ROOT = data_root()
_cache: dict[tuple[str, int], Dataset] = {}


def dataset(name: str, seed: int = 13) -> Dataset:
    if (name, seed) not in _cache:
        _cache[name, seed] = load_dataset(name, seed=seed)
    return _cache[name, seed]


def texts(examples: list[Example]) -> set[str]:
    return {e.text for e in examples}


# ------------------------------------------------------------------------------------------ public corpora


@needs_data
def test_banking77_counts_and_seeded_stratified_valid() -> None:
    d = dataset("banking77")
    assert len(d.train) + len(d.valid) == 10003 and len(d.test) == 3080
    assert len(d.intents) == 77 and not d.has_oos and d.entity_types == []
    assert 950 <= len(d.valid) <= 1050
    per_class = Counter(e.intent for e in d.valid)
    assert set(per_class) == set(d.intents) and min(per_class.values()) >= 3
    assert not texts(d.train) & texts(d.valid)
    assert [e.text for e in load_dataset("banking77", seed=13).valid] == [e.text for e in d.valid]
    assert texts(dataset("banking77", seed=14).valid) != texts(d.valid)
    first = min(d.train + d.valid, key=lambda e: int(e.source.rsplit(":", 1)[1]))
    assert first.source.endswith("train.csv:2") and first.text == "I am still waiting on my card?"
    assert first.tokens is None


@needs_data
def test_clinc150_counts_include_out_of_scope() -> None:
    d = dataset("clinc150")
    assert (len(d.train), len(d.valid), len(d.test)) == (15100, 3100, 5500)
    assert d.has_oos and OOS in d.intents and len(d.intents) == 151
    oos = [sum(e.intent == OOS for e in part) for part in (d.train, d.valid, d.test)]
    assert oos == [100, 100, 1000]


@needs_data
def test_snips_counts_tokens_and_tags() -> None:
    d = dataset("snips")
    assert (len(d.train), len(d.valid), len(d.test)) == (13084, 700, 700)
    assert len(d.intents) == 7 and len(d.entity_types) == 39
    for e in d.train + d.valid + d.test:
        assert e.tokens is not None and e.tags is not None and len(e.tokens) == len(e.tags)
    first = d.train[0]
    assert first.tokens == ["listen", "to", "westbam", "alumb", "allergic", "on", "google", "music"]
    assert first.tags is not None and bio_to_spans(first.tokens, first.tags) == [
        ("artist", 2, 3), ("album", 4, 5), ("service", 6, 8)]  # fmt: skip


@needs_data
def test_bitext_split_is_fixed_and_stratified() -> None:
    d = dataset("bitext")
    assert (len(d.train), len(d.valid), len(d.test)) == (3253, 359, 902)  # 4514 rows: 72 / 8 / 20 %
    assert len(d.intents) == 27
    # A stable fingerprint: the benchmark's bitext numbers are comparable only while this holds.
    digest = hashlib.sha256("\n".join(sorted(texts(d.test))).encode()).hexdigest()[:16]
    assert digest == "68cedcfee1c7ca90"
    counts = Counter(e.intent for e in d.test)
    assert counts["cancel_order"] == 28 and counts["delivery_period"] == 41
    every = Counter(e.intent for e in d.train + d.valid + d.test)
    assert all(abs(counts[k] - 0.2 * n) <= 2 for k, n in every.items())
    norm = {" ".join(t.lower().split()) for t in texts(d.test)}
    assert not norm & {" ".join(t.lower().split()) for t in texts(d.train + d.valid)}
    assert texts(dataset("bitext", seed=14).test) != texts(d.test)


@needs_data
def test_bitext_entities_recovered_from_broken_offsets() -> None:
    d = dataset("bitext")
    assert d.entity_types == sorted(
        ["account_type", "delivery_city", "delivery_country", "invoice_id", "order_id", "person_name",
         "refund_amount"])  # fmt: skip
    notes = d.notes
    assert notes["entity_rows"] == 1686 and notes.get("entity_dropped", 0) == 0
    assert (
        notes["entity_offsets_exact"] + notes["entity_offsets_contain_value"] + notes["entity_found_in_text"]
        == 1686
    )
    assert notes["entity_offsets_contain_value"] == 591 and notes["entity_found_in_text"] == 99
    by_text = {e.text: e for e in d.train + d.valid + d.test}

    def tagged(text: str) -> list[tuple[str, str]]:
        e = by_text[text]
        assert e.tokens is not None and e.tags is not None
        return [(t, g) for t, g in zip(e.tokens, e.tags, strict=True) if g != "O"]

    # value "4587345", text "00004587345": the whole token is the order id
    assert tagged("can you help me canceling purchase 00004587345?") == [("00004587345", "B-order_id")]
    assert tagged("refund 160 dollars") == [("160", "B-refund_amount")]  # value "1"
    assert tagged("problems with pro account cancellations") == [("pro", "B-account_type")]  # not "problems"
    assert tagged("cancel purchase 3707955617") == [("3707955617", "B-order_id")]  # end offset past the text
    assert tagged("see bill from Mr. Smith") == [("Mr", "B-person_name"), (".", "I-person_name"),
                                                 ("Smith", "I-person_name")]  # fmt: skip


@needs_data
def test_nlupp_large_regime_multi_label() -> None:
    d = dataset("nlupp")
    assert d.multi_label and len(d.intents) == 62 and len(d.entity_types) == 17
    assert len(d.train) + len(d.valid) + len(d.test) == 2071 + 1009
    assert all(e.source.split("/fold")[1].startswith(("0.json", "1.json")) for e in d.test)
    assert not any(e.source.split("/fold")[1].startswith(("0.json", "1.json")) for e in d.train + d.valid)
    for e in d.train + d.valid + d.test:
        assert e.labels is not None and e.labels == sorted(e.labels)
        assert e.intent == ("+".join(e.labels) or "none") and set(e.labels) <= set(d.intents)
        assert e.tokens is not None and e.tags is not None and bio_error(e.tags) is None
    banking, hotels = dataset("nlupp-banking"), dataset("nlupp-hotels")
    sizes = [(len(x.intents), len(x.entity_types)) for x in (banking, hotels)]
    assert sizes == [(48, 13), (40, 14)]
    assert sum(len(x.train) + len(x.valid) + len(x.test) for x in (banking, hotels)) == 3080
    assert d.notes["slot_overlaps_dropped"] == 3


@needs_data
def test_goemotions_counts_and_three_class_mapping() -> None:
    data = load_sentiment()
    assert (len(data.train), len(data.valid), len(data.test)) == (43410, 5426, 5427)
    share = Counter(e.label for e in data.train)
    assert set(share) == {"negative", "neutral", "positive"}
    assert all(0.2 < n / len(data.train) < 0.45 for n in share.values())
    frustrated = sum(e.frustrated for e in data.train)
    assert 2470 <= frustrated <= 1567 + 2470 + 2022 + 1500  # at least annoyance, at most the sum
    quoted = next(e for e in data.train if e.text.startswith('Three words, no subtlety. "Dude.'))
    assert quoted.text.endswith('Seriously." ') and quoted.label == "negative"
    d = dataset("goemotions")
    assert (len(d.train), len(d.valid), len(d.test)) == (43410, 5426, 5427)
    assert d.intents == ["negative", "neutral", "positive"]


def test_sentiment_mapping_rules(tmp_path: Path) -> None:
    base = tmp_path / "sentiment"
    base.mkdir()
    names = ["joy", "anger", "surprise", "neutral", "annoyance"]
    (base / "emotions.txt").write_text("\n".join(names))
    groups = {"positive": ["joy"], "negative": ["anger", "annoyance"], "ambiguous": ["surprise"]}
    (base / "sentiment_dict.json").write_text(json.dumps(groups))
    rows = [
        "great\t0\ta",
        "mixed\t0,1\tb",
        "hm\t2\tc",
        "ok\t3\td",
        'wow "nice"\t0,2,3\te',
        '"a ""q"" b"\t4\tf',
    ]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (base / name).write_text("\n".join(rows) + "\n")
    data = load_sentiment(tmp_path)
    got = [(e.text, e.label, e.frustrated) for e in data.train]
    assert got == [("great", "positive", False), ("mixed", "negative", True), ("hm", "neutral", False),
                   ("ok", "neutral", False), ('wow "nice"', "positive", False),
                   ('a "q" b', "negative", True)]  # fmt: skip
    assert data.notes["mixed_positive_negative"] == 3 and data.notes["ambiguous_only"] == 3
    (base / "dev.tsv").write_text("fine\t0\tx\nbroken\t9\ty\n")
    with pytest.raises(DataError, match=r"dev\.tsv:2: labels: bad emotion ids"):
        load_sentiment(tmp_path)


@needs_data
def _snips_dir(tmp_path: Path, seq_in: str, seq_out: str, label: str) -> Path:
    for split in ("train", "valid", "test"):
        d = tmp_path / "snips" / split
        d.mkdir(parents=True)
        (d / "seq.in").write_text(seq_in)
        (d / "seq.out").write_text(seq_out)
        (d / "label").write_text(label)
    return tmp_path


@pytest.mark.parametrize(
    ("seq_out", "message"),
    [
        ("O O\nO I-artist O\n", r"seq\.out:2: tags: tag 2 'I-artist' follows 'O'"),
        ("O O\nB-album I-artist O\n", r"seq\.out:2: tags: tag 2 'I-artist' follows 'B-album'"),
        ("O O\nO O\n", r"seq\.out:2: tags: 2 tags for 3 tokens"),
        ("O O\nO X-artist O\n", r"seq\.out:2: tags: tag 2 'X-artist' is not O"),
    ],
)
def test_snips_bio_errors_name_file_and_line(tmp_path: Path, seq_out: str, message: str) -> None:
    root = _snips_dir(tmp_path, "play music\nplay some westbam\n", seq_out, "PlayMusic\nPlayMusic\n")
    with pytest.raises(DataError, match=message):
        load_dataset("snips", root)


def test_snips_valid_small_files_load(tmp_path: Path) -> None:
    root = _snips_dir(tmp_path, "play westbam\n", "O B-artist\n", "PlayMusic\n")
    d = load_dataset("snips", root)
    assert d.train[0].tags == ["O", "B-artist"] and d.entity_types == ["artist"]


def test_data_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_DATA", str(tmp_path / "elsewhere"))
    assert data_root() == tmp_path / "elsewhere"
    assert data_root(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="VOICEBOT_DATA"):
        load_dataset("banking77")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("atis", tmp_path)


def test_load_jsonl_reads_entities(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    rows = [
        {"text": "track order 457219 please", "intent": "track_order",
         "entities": [{"start": 12, "end": 18, "type": "order_id"}]},
        {"text": "hello", "intent": "greet"},
    ]  # fmt: skip
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    got = load_jsonl(path, intents=["track_order", "greet"], entity_types=["order_id"])
    assert got[0].tokens == ["track", "order", "457219", "please"]
    assert got[0].tags == ["O", "O", "B-order_id", "O"] and got[0].source == f"{path}:1"
    assert got[1].tokens is None and got[1].source == f"{path}:3"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r":2: invalid JSON"),
        ('["text"]', r":2: expected a JSON object"),
        ('{"intent": "greet"}', r":2: text: expected a non-empty str"),
        ('{"text": "hi"}', r":2: intent: expected a non-empty str"),
        ('{"text": "hi", "intent": "shout"}', r":2: intent: unknown intent 'shout'"),
        ('{"text": "hi", "intent": "greet", "entities": {}}', r":2: entities: expected a list, got {}"),
        ('{"text": "hi", "intent": "greet", "entities": [{"start": 0, "end": 9, "type": "name"}]}',
         r":2: entities\[0\]: bad span start=0 end=9"),
        ('{"text": "hi", "intent": "greet", "entities": [{"start": 1, "end": 0, "type": "name"}]}',
         r":2: entities\[0\]: bad span"),
        ('{"text": "hi", "intent": "greet", "entities": [{"start": 0, "end": 2}]}',
         r":2: entities\[0\]\.type: expected a non-empty str"),
        ('{"text": "hi", "intent": "greet", "entities": [{"start": 0, "end": 2, "type": "pet"}]}',
         r":2: entities\[0\]\.type: unknown entity type 'pet'"),
        ('{"text": "hi bob", "intent": "greet", "entities": [{"start": 0, "end": 2, "type": "name"}, '
         '{"start": 1, "end": 6, "type": "name"}]}', r":2: entities: span name \[1, 6\) overlaps"),
        ('{"text": "hi  bob", "intent": "greet", "entities": [{"start": 2, "end": 4, "type": "name"}]}',
         r":2: entities\[0\]: span \[2, 4\) is only whitespace"),
    ],
)  # fmt: skip
def test_load_jsonl_errors_name_file_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "hello", "intent": "greet"}\n' + line + "\n")
    with pytest.raises(DataError, match=f"bad.jsonl{message}"):
        load_jsonl(path, intents=["greet"], entity_types=["name"])


# ------------------------------------------------------------------------------------------ BIO helpers


def test_spans_to_bio_and_back_round_trip() -> None:
    rng = random.Random(3)
    words = ["order", "457219", "for", "Mr.", "Jones", "in", "New", "York", "today", "$49.99", "please?"]
    for _ in range(300):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
        toks = tokenize(text)
        spans, i = [], 0
        while i < len(toks):
            n = rng.randint(1, 3)
            if rng.random() < 0.4 and i + n <= len(toks):
                spans.append((rng.choice(["a", "b"]), toks[i][1], toks[i + n - 1][2]))
            i += n
        tokens, tags = spans_to_bio(text, spans)
        assert tokens == [t for t, _, _ in toks] and bio_error(tags) is None
        back = [(k, toks[s][1], toks[e - 1][2]) for k, s, e in bio_to_spans(tokens, tags)]
        assert back == spans


def test_bio_helpers_edge_cases() -> None:
    assert tokenize("order 123?") == [("order", 0, 5), ("123", 6, 9), ("?", 9, 10)]
    assert spans_to_bio("order 00123?", [("order_id", 8, 11)]) == (
        ["order", "00123", "?"],
        ["O", "B-order_id", "O"],
    )
    with pytest.raises(ValueError, match="outside text"):
        spans_to_bio("abc", [("x", 1, 9)])
    with pytest.raises(ValueError, match=r"follows 'O'"):
        bio_to_spans(["a", "b"], ["O", "I-x"])
    assert bio_to_spans(["a", "b", "c"], ["O", "I-x", "I-y"], strict=False) == [("x", 1, 2), ("y", 2, 3)]
    with pytest.raises(ValueError, match="1 tags for 2 tokens"):
        bio_to_spans(["a", "b"], ["O"])
