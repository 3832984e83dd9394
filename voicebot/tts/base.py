"""What every TTS backend promises, and the sentence splitter that feeds them.

Replies are spoken sentence by sentence: the first sentence's audio can play while the rest is still being
synthesised, so time-to-first-audio depends on the *first chunk's* length, not the whole reply's.
"""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from voicebot.frames import PCM


class TTSError(RuntimeError):
    """A backend cannot speak (missing voice file or binary, synthesiser crashed); the message says why."""


@runtime_checkable
class TTSBackend(Protocol):
    """One synthesiser. A single shared instance serves many calls, so `synthesize` must be thread-safe."""

    sample_rate: int
    name: str

    def synthesize(self, text: str) -> PCM:
        """One sentence → mono int16 at `sample_rate`; empty or whitespace text → an empty array."""
        ...


# Longer sentences are cut at commas/semicolons so the first chunk (and so the first audio) comes quickly.
MAX_WORDS = 25
# ...but not into choppy fragments like "Well," — a chunk is at least this many words where possible.
MIN_CHUNK_WORDS = 4

# Abbreviations that (almost) never end a sentence: a title before a name, "e.g." before an example.
_NEVER_END = frozenset(
    {
        *("mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "gen", "col", "capt"),
        *("lt", "sgt", "hon", "gov", "pres", "vs", "cf", "e.g", "i.e", "approx", "dept", "apt", "ave"),
        *("blvd", "rd", "fig", "est"),
    }
)
# Abbreviations that end a sentence unless a number follows: "order No. 123", "Jan. 5", but "No. Sorry".
_BEFORE_NUMBER = frozenset(
    {
        *("no", "nos", "nr", "tel", "ext", "vol", "pt", "pp", "p", "ch", "sec", "art"),
        *("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"),
    }
)
# Abbreviations that end a sentence only when a capitalised word follows: "Acme Inc. How can I help?"
_END_IF_CAPITAL = frozenset(
    {"etc", "inc", "ltd", "co", "corp", "llc", "plc", "bros", "a.m", "p.m", "am", "pm", "u.s", "u.k"}
)

# Terminal punctuation (runs like "?!" or "..."), closing quotes/brackets, then whitespace or the end.
_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")
_CLAUSE_END = re.compile(r"[,;:](?=\s)")
_WORD_BEFORE = re.compile(r"(\S+)$")
_WORD_AFTER = re.compile(r"\s*(\S+)")


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    """Whether a '.' really ends a sentence; '!' '?' and '…' always do."""
    punct = match.group().rstrip("\"'”’)]")
    if punct != ".":
        return True
    before = _WORD_BEFORE.search(text, 0, match.start())
    if before is None:
        return True
    word = before.group(1).lstrip("\"'“‘([").lower()
    after = _WORD_AFTER.match(text, match.end())
    nxt = after.group(1).lstrip("\"'“‘([") if after else ""
    if not nxt:
        return True
    if word in _NEVER_END:
        return False
    if word in _BEFORE_NUMBER:
        return not (nxt[0].isdigit() or nxt[0] == "#")
    if word in _END_IF_CAPITAL:
        return nxt[0].isupper()
    # Initials ("J. Smith") and list markers at a line start ("1. Check the box") are not sentence ends.
    if len(word) == 1 and word.isalpha():
        return False
    return not (word.isdigit() and not text[: before.start()].strip())


def _split_long(sentence: str) -> list[str]:
    """Cut an over-long sentence at clause punctuation: a short first chunk, then chunks ≤ MAX_WORDS."""
    if len(sentence.split()) <= MAX_WORDS:
        return [sentence]
    clauses: list[str] = []
    start = 0
    for m in _CLAUSE_END.finditer(sentence):
        clauses.append(sentence[start : m.end()].strip())
        start = m.end()
    clauses.append(sentence[start:].strip())
    chunks: list[str] = []
    current: list[str] = []
    words = 0
    for clause in filter(None, clauses):
        n = len(clause.split())
        limit = MIN_CHUNK_WORDS if not chunks else MAX_WORDS
        if current and words >= MIN_CHUNK_WORDS and words + n > limit:
            chunks.append(" ".join(current))
            current, words = [], 0
        current.append(clause)
        words += n
    if current:
        # A tiny tail ("okay?") sounds better glued onto the chunk before it.
        if chunks and words < MIN_CHUNK_WORDS:
            chunks[-1] = f"{chunks[-1]} {' '.join(current)}"
        else:
            chunks.append(" ".join(current))
    return chunks


def split_sentences(text: str, quick_start: bool = False) -> list[str]:
    """Split a reply into speakable chunks, in order, whitespace-normalised, never empty.

    Ends on ". ! ?" followed by whitespace or the end of text, and on line breaks (bullet lists); keeps
    "Mr. Smith", "e.g. Tuesday", "order No. 12345", "$49.99" and "A-1042.7" in one piece. `quick_start`
    also cuts the first sentence at its first clause break: the caller hears the bot as soon as that short
    chunk is made (Piper makes a whole chunk before any of it plays), the rest is made while it plays.
    """
    out = _sentences(text)
    if quick_start and out:
        out[:1] = _first_clause(out[0])
    return out


def _first_clause(sentence: str) -> list[str]:
    """'Good news, order 8 3 0 1 1 2, a pair of shoes, has shipped.' → the part up to the first clause
    break with at least MIN_CHUNK_WORDS words, then the rest; short sentences stay whole."""
    if len(sentence.split()) < 2 * MIN_CHUNK_WORDS:
        return [sentence]
    for m in _CLAUSE_END.finditer(sentence):
        head, tail = sentence[: m.end()].strip(), sentence[m.end() :].strip()
        if len(head.split()) >= MIN_CHUNK_WORDS:
            return [head, tail] if len(tail.split()) >= 2 else [sentence]
    return [sentence]


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _END.finditer(line):
            if _is_boundary(line, m):
                out.extend(_split_long(" ".join(line[start : m.end()].split())))
                start = m.end()
        out.extend(_split_long(" ".join(line[start:].split())))
    return [s for s in out if s and any(c.isalnum() for c in s)]
