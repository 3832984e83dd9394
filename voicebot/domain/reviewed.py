"""A domain's reviewed training file, `reviewed.jsonl` beside its nlu.yaml: what operators said the bot
should have understood of callers' turns (written by the console, telephony/console/review.py), read here by
both the console and the trainer (models/train_domain.py).

One JSON object per line, appended, never rewritten. An intent review carries `verdict` ("confirmed" or
"corrected"), `intent` and `example` (the caller's words with the slots marked as in nlu.yaml); an FAQ review
carries `verdict: "faq"`, `faq` (an answer id), `answer` (the words of a new answer, or null) and `example`
(the question). The latest review of a turn (`call`, `turn`) wins, so a supervisor's second thought replaces
the first. Training takes the reviews as they are: a person has already looked at each one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

REVIEWED_FILE = "reviewed.jsonl"


def reviewed_path(domain: Path) -> Path:
    """The domain's reviewed training file (it may not exist yet)."""
    return domain / REVIEWED_FILE


def read_reviews(path: Path) -> list[dict[str, Any]]:
    """Every review, oldest first; a line that is not a JSON object (a hand edit gone wrong) is skipped."""
    if not path.is_file():
        return []
    found = []
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            review = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(review, dict):
            found.append(review)
    return found


def _latest(reviews: list[dict[str, Any]], faq: bool) -> list[dict[str, Any]]:
    """The latest review of each turn, of the one kind (FAQ or intent)."""
    latest = {(r.get("call"), r.get("turn")): r for r in reviews}
    return [r for r in latest.values() if (r.get("verdict") == "faq") == faq]


def reviewed_faq(reviews: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """faq.yaml's `answers:` shape: each answer id with the new answer's words (None: the domain's own
    answer) and its reviewed questions."""
    answers: dict[str, dict[str, Any]] = {}
    for review in _latest(reviews, faq=True):
        if not isinstance(review.get("faq"), str) or not isinstance(review.get("example"), str):
            continue
        entry = answers.setdefault(review["faq"], {"id": review["faq"], "answer": None, "questions": []})
        entry["answer"] = review.get("answer") or entry["answer"]
        if review["example"] not in entry["questions"]:
            entry["questions"].append(review["example"])
    return list(answers.values())


def reviewed_examples(reviews: list[dict[str, Any]]) -> dict[str, list[str]]:
    """nlu.yaml's `intents:` shape from the reviews, the latest review of each turn winning."""
    intents: dict[str, list[str]] = defaultdict(list)
    for review in _latest(reviews, faq=False):
        intent, example = review.get("intent"), review.get("example")
        if isinstance(intent, str) and isinstance(example, str) and example not in intents[intent]:
            intents[intent].append(example)
    return dict(intents)
