"""Word tokens and BIO tags for training data: character spans to BIO tags, BIO checks, and BIO to spans.

The corpus loaders and the ASR-style augmentation both convert between spans and tags, so the conversion lives
here once; words are cut by the runtime tokeniser so training tags the same words inference will see.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from voicebot.nlu.tokens import bio_spans
from voicebot.nlu.tokens import words as _words

Span = tuple[str, int, int]  # (type, start, end), end exclusive; characters or tokens depending on use

# Training words must be cut exactly like runtime words, so the tokeniser is the inference one.
tokenize = _words


def spans_to_bio(text: str, spans: Iterable[Span]) -> tuple[list[str], list[str]]:
    """Character spans to tokens + BIO tags; a span covering part of a token takes the whole token."""
    toks = tokenize(text)
    tags = ["O"] * len(toks)
    for kind, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if not 0 <= start < end <= len(text):
            raise ValueError(f"span {kind} [{start}, {end}) outside text of length {len(text)}")
        hit = [i for i, (_, s, e) in enumerate(toks) if s < end and e > start]
        if not hit:
            raise ValueError(f"span {kind} [{start}, {end}) covers only whitespace")
        if any(tags[i] != "O" for i in hit):
            raise ValueError(f"span {kind} [{start}, {end}) overlaps another entity")
        for n, i in enumerate(hit):
            tags[i] = ("B-" if n == 0 else "I-") + kind
    return [t for t, _, _ in toks], tags


def bio_error(tags: Sequence[str]) -> str | None:
    """The first BIO violation, described, or None: an I- must continue a B-/I- of the same type."""
    prev = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and not (tag[:2] in ("B-", "I-") and len(tag) > 2):
            return f"tag {i + 1} {tag!r} is not O, B-<type> or I-<type>"
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return f"tag {i + 1} {tag!r} follows {prev!r} (an I- needs a B-/I- of the same type before it)"
        prev = tag
    return None


def bio_to_spans(tokens: Sequence[str], tags: Sequence[str], strict: bool = True) -> list[Span]:
    """Token spans (type, start, end) from BIO; strict raises on bad BIO, lenient reads it as inference does.

    Lenient is the runtime's `bio_spans`: a stray I- starts a new entity, a tag not O/B-/I- is skipped.
    """
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tags)} tags for {len(tokens)} tokens")
    if strict and (err := bio_error(tags)):
        raise ValueError(err)
    return bio_spans(list(tags))


def predicted_tags(
    names: Sequence[str], rows: Sequence[Sequence[int]], gold: Sequence[Sequence[str]]
) -> list[list[str]]:
    """Predicted tag ids as names, each row cut to its gold sequence's length (validation and test alike)."""
    return [[names[i] for i in row[: len(g)]] for row, g in zip(rows, gold, strict=True)]


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Entity-level F1 as published for SNIPS/CoNLL (seqeval: an entity counts if type and span match)."""
    from seqeval.metrics import f1_score

    return float(f1_score(gold, pred))
