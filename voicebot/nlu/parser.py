"""`NLU.parse(text)`: what the pipeline asks on each caller turn.

All heads are loaded once and read one encoder pass. Any text — empty, 5,000 characters, emoji, another
language, only "um" — gets a well-formed parse: at worst intent "oos" with low confidence, never an exception.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from voicebot.nlu.infer import Outputs, run
from voicebot.nlu.model import OOS, SENTIMENTS, JointNLU, Labels
from voicebot.nlu.normalise import normalise
from voicebot.nlu.tokens import bio_spans, merge_adjacent, word_lists, words

MAX_CHARS = 2_000  # beyond this a "turn" is not speech; the encoder would truncate anyway
RANKING = 5


@dataclass
class Entity:
    type: str
    raw: str
    value: str | None  # normalised ("four five seven" → "457"); None when the words are not a valid value
    start: int
    end: int


@dataclass
class Parse:
    text: str
    intent: str
    confidence: float
    ranking: list[tuple[str, float]] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    sentiment: dict[str, Any] | None = None
    answer: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def entity_values(self) -> dict[str, str | None]:
        return {e.type: e.value for e in self.entities}


class Parser(Protocol):
    """What the brains ask of an NLU: its labels and a parse (`NLU`; `ScriptedNLU` in the fast tests)."""

    @property
    def labels(self) -> Labels: ...  # read-only: a live swap (nlu/swap.py) replaces the whole model

    def parse(self, text: str, today: date | None = None) -> Parse: ...


class NLU:
    """Loads a model directory made by `voicebot train` / the recipes in models/."""

    def __init__(self, model_dir: Path, threads: int = 1, int8: bool = False) -> None:
        self.model, self.tokenizer = JointNLU.load(Path(model_dir), int8=int8)
        self.labels = self.model.labels
        self.threads = threads
        self._lock = threading.Lock()  # torch modules are not re-entrant across threads
        answers_file = Path(model_dir) / "answers.json"
        self.answers: dict[str, str] = json.loads(answers_file.read_text()) if answers_file.is_file() else {}
        self._answer_ids = list(self.answers)
        self._answer_emb = (
            run(self.model, self.tokenizer, word_lists(list(self.answers.values()))).match
            if self.answers
            else np.zeros((0, 1), np.float32)
        )

    def parse(self, text: str, today: date | None = None) -> Parse:
        return self.parse_batch([text], today)[0]

    def parse_batch(self, texts: list[str], today: date | None = None) -> list[Parse]:
        clipped = [t[:MAX_CHARS] if isinstance(t, str) else "" for t in texts]
        spans = [words(t) for t in clipped]
        live = [i for i, s in enumerate(spans) if s]
        if not live:
            return [self._empty(t) for t in clipped]
        with self._lock:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                out = run(self.model, self.tokenizer, [[w for w, _, _ in spans[i]] for i in live])
            finally:
                torch.set_num_threads(previous)
        results = [self._empty(t) for t in clipped]
        for row, i in enumerate(live):
            results[i] = self._read(clipped[i], spans[i], out, row, today)
        return results

    def _empty(self, text: str) -> Parse:
        return Parse(text=text, intent=OOS, confidence=0.0)

    def _read(
        self, text: str, spans: list[tuple[str, int, int]], out: Outputs, row: int, today: date | None
    ) -> Parse:
        probs = out.intent_probs[row]
        order = np.argsort(-probs)[:RANKING]
        ranking = [(self.labels.intents[int(i)], round(float(probs[i]), 4)) for i in order]
        intent, confidence = ranking[0]
        if confidence < self.labels.oos_threshold:
            intent = OOS
        tags = [self.labels.tags[t] for t in out.tags[row]]
        entities = []
        for kind, first, last in merge_adjacent(bio_spans(tags), [w for w, _, _ in spans]):
            start, end = spans[first][1], spans[last - 1][2]
            raw = text[start:end]
            entities.append(
                Entity(type=kind, raw=raw, value=normalise(kind, raw, today), start=start, end=end)
            )
        sentiment = None
        if self.labels.sentiment:
            scores = {
                name: round(float(p), 4) for name, p in zip(SENTIMENTS, out.sentiment_probs[row], strict=True)
            }
            sentiment = {
                "label": max(scores, key=lambda k: scores[k]),
                "scores": scores,
                "frustration": round(float(out.frustration[row]), 4),
                "frustrated": bool(out.frustration[row] >= self.labels.frustration_threshold),
            }
        return Parse(text, intent, confidence, ranking, entities, sentiment, self._answer(out, row))

    def _answer(self, out: Outputs, row: int) -> dict[str, Any] | None:
        if not self._answer_ids:
            return None
        scores = self._answer_emb @ out.match[row]
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < self.labels.answer_threshold:
            return {"id": None, "text": None, "score": round(score, 4)}
        answer_id = self._answer_ids[best]
        return {"id": answer_id, "text": self.answers[answer_id], "score": round(score, 4)}
