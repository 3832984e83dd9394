"""Words, sub-tokens and BIO tags: the one tokenisation shared by training data, training and inference.

Entity spans are tagged per *word* (whitespace-separated, with punctuation split off so "123?" gives "123"
and "?"); each word's first sub-token carries its tag, as in JointBERT. Training and inference must cut text
the same way, so both go through `words()`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100
_WORD = re.compile(r"[\w@.'$€£%/+#-]+|[^\w\s]", re.UNICODE)
_EDGE = re.compile(r"^[.'\-]+|[.'\-]+$")


def words(text: str) -> list[tuple[str, int, int]]:
    """(word, start, end) character spans; trailing dots/quotes/dashes split off ("order 12." → "12", ".")."""
    out: list[tuple[str, int, int]] = []
    for m in _WORD.finditer(text):
        token, start = m.group(), m.start()
        core = _EDGE.sub("", token)
        if not core or len(core) == len(token):
            out.append((token, start, m.end()))
            continue
        lead = token.index(core)
        if lead:
            out.append((token[:lead], start, start + lead))
        out.append((core, start + lead, start + lead + len(core)))
        if lead + len(core) < len(token):
            out.append((token[lead + len(core) :], start + lead + len(core), m.end()))
    return out


def word_lists(texts: list[str]) -> list[list[str]]:
    """Just the words of each text, the form `encode` and `infer.run` take."""
    return [[w for w, _, _ in words(t)] for t in texts]


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    word_ids: list[list[int | None]]


def encode(tokenizer: PreTrainedTokenizerBase, batch_words: list[list[str]], max_length: int) -> Batch:
    enc = tokenizer(
        [w or [""] for w in batch_words],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )
    word_ids = [enc.word_ids(i) for i in range(len(batch_words))]
    return Batch(enc["input_ids"], enc["attention_mask"], word_ids)


def align_tags(word_ids: list[list[int | None]], tags: list[list[int] | None], length: int) -> torch.Tensor:
    """Tag ids on each word's first sub-token, IGNORE elsewhere (and everywhere for untagged examples)."""
    out = torch.full((len(word_ids), length), IGNORE, dtype=torch.long)
    for row, (ids, seq) in enumerate(zip(word_ids, tags, strict=True)):
        if seq is None:
            continue
        previous = None
        for col, word in enumerate(ids):
            if word is not None and word != previous and word < len(seq):
                out[row, col] = seq[word]
            previous = word
    return out


def first_subtokens(word_ids: list[int | None], n_words: int) -> list[tuple[int, int]]:
    """(word, column of its first sub-token) in order; words cut off by truncation are missing."""
    out: list[tuple[int, int]] = []
    previous = None
    for col, word in enumerate(word_ids):
        if word is not None and word != previous and word < n_words:
            out.append((word, col))
        previous = word
    return out


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first_word, last_word_exclusive) for each entity; a stray I- starts a new entity."""
    spans: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None
    for i, tag in enumerate([*tags, "O"]):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        continues = tag.startswith("I-") and current is not None and current[0] == kind
        if current is not None and not continues:
            spans.append((current[0], current[1], i))
            current = None
        if kind is not None and not continues:
            current = (kind, i)
    return spans


_PUNCT = re.compile(r"[,.\-/]+")


def merge_adjacent(
    spans: list[tuple[str, int, int]], words: list[str] | None = None
) -> list[tuple[str, int, int]]:
    """Join spans of one type that only punctuation separates: Whisper writes spoken digits as "830,112",
    and the tagger sometimes starts a new entity at each group where the caller said one number."""
    out: list[tuple[str, int, int]] = []
    for kind, first, last in spans:
        between = words[out[-1][2] : first] if out and words is not None else []
        joins = out and out[-1][0] == kind and all(_PUNCT.fullmatch(w) for w in between)
        if joins and (out[-1][2] == first or words is not None):
            out[-1] = (kind, out[-1][1], last)
        else:
            out.append((kind, first, last))
    return out
