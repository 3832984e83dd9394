"""Learning from calls: an operator confirms or corrects what the bot understood of a turn, into a reviewed
training file beside the domain, and may start the configured retraining command.

The file (`reviewed.jsonl` in the domain folder, or `console.reviews_file`) takes one JSON object per line,
appended, never rewritten: who reviewed which turn of which call and when, the words as heard, what the bot
made of them (`heard_intent`, `heard_confidence`), and the verdict: `intent` and `example`, the words with the
slots marked as in nlu.yaml (`[four five seven two one nine](order_id)`). Nothing is edited into the domain's
YAML: `reviewed_examples` gives the examples in nlu.yaml's `intents:` shape (the latest review of a turn
wins) for a training recipe to take in, once a person has looked at them. Text is masked before it is
written, like the call records: a training file must hold no card numbers, emails or phone numbers.

A caller's question can also be reviewed as a question for an FAQ answer (`verdict: "faq"`, `faq`: the
answer's id, and for a new id the spoken `answer`); `reviewed_faq` gives those in faq.yaml's shape.

Retraining is only a hook: `console.retrain_command` runs as a subprocess (one at a time, output kept);
loading the retrained model into the running gateway is the live model swap's business, not this module's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from voicebot.domain.nlu_spec import FAQAnswer, parse_markup
from voicebot.pii import mask_text

Verdict = Literal["confirmed", "corrected"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MARK_LEFT = re.compile(r"\[[^\]]+\]\([a-z_][a-z0-9_]*\)")
OUTPUT_CHARS = 4000  # the tail of the retraining command's output a console shows


def check_review(verdict: str, intent: str, example: str, known: Sequence[str]) -> tuple[Verdict, str, str]:
    """A review as written, or ValueError naming what is wrong with it."""
    if verdict not in ("confirmed", "corrected"):
        raise ValueError("verdict must be confirmed or corrected")
    if not _NAME.match(intent):
        raise ValueError(f"intent {intent!r} must be lower_snake_case")
    if known and intent not in known:
        raise ValueError(f"intent {intent!r} is not one the domain's model knows")
    example = " ".join(example.split())
    if not example or len(example) > 500:
        raise ValueError("the example must have 1 to 500 characters")
    rest = _MARK_LEFT.sub("", example)
    if "[" in rest or "](" in rest:
        raise ValueError(f"malformed slot markup in {example!r} (use [words](slot))")
    return verdict, intent, mask_text(example)  # type: ignore[return-value]


def check_faq(
    answer_id: str, answer: str | None, question: str, known: Sequence[str]
) -> tuple[str, str | None, str]:
    """An FAQ review as written (id, the new answer or None, the question), or ValueError."""
    if not _NAME.match(answer_id):
        raise ValueError(f"answer id {answer_id!r} must be lower_snake_case")
    question = " ".join(question.split())
    if not question or len(question) > 500:
        raise ValueError("the question must have 1 to 500 characters")
    answer = " ".join(str(answer or "").split()) or None
    if answer is None and answer_id not in known:
        raise ValueError(f"{answer_id!r} is no answer of the domain's faq.yaml: give the new answer's words")
    if answer is not None:
        try:
            FAQAnswer(id=answer_id, answer=answer)  # spoken: no URLs, markdown or markup
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"]) from exc
        answer = mask_text(answer)
    return answer_id, answer, mask_text(question)


def slots_of(example: str) -> dict[str, str]:
    """The marked words of an example by slot: '[four five](order_id)' → {'order_id': 'four five'}."""
    text, spans = parse_markup(example)
    return {name: text[start:end] for name, start, end in spans}


@dataclass
class Reviews:
    """The reviewed training file of one gateway."""

    path: Path
    known_intents: list[str] = field(default_factory=list)
    known_answers: list[str] = field(default_factory=list)

    def add(
        self, call_id: str, turn: dict[str, Any], by: str, verdict: Verdict, intent: str, example: str
    ) -> dict[str, Any]:
        """Append one review of a turn's intent and slots (blocking file I/O: run it in a thread)."""
        fields = {"verdict": verdict, "intent": intent, "example": example, "slots": slots_of(example)}
        return self._append(call_id, turn, by, fields)

    def add_faq(
        self, call_id: str, turn: dict[str, Any], by: str, answer_id: str, answer: str | None, question: str
    ) -> dict[str, Any]:
        """Append one review of a turn as an FAQ question (blocking file I/O: run it in a thread)."""
        fields = {"verdict": "faq", "faq": answer_id, "answer": answer, "example": question}
        return self._append(call_id, turn, by, fields)

    def _append(self, call_id: str, turn: dict[str, Any], by: str, fields: dict[str, Any]) -> dict[str, Any]:
        review = {
            "at": datetime.now(UTC).isoformat(), "by": by, "call": call_id, "turn": turn["index"],
            "heard": turn.get("transcript"), "heard_intent": turn.get("intent"),
            "heard_confidence": turn.get("confidence"),
        } | fields  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(review, ensure_ascii=False) + "\n")
        return review

    def read(self) -> list[dict[str, Any]]:
        """Every review, oldest first; a line that is not JSON (a hand edit gone wrong) is skipped."""
        if not self.path.is_file():
            return []
        found = []
        for text in self.path.read_text(encoding="utf-8").splitlines():
            try:
                found.append(json.loads(text))
            except json.JSONDecodeError:
                continue
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
        entry = answers.setdefault(review["faq"], {"id": review["faq"], "answer": None, "questions": []})
        entry["answer"] = review.get("answer") or entry["answer"]
        if review["example"] not in entry["questions"]:
            entry["questions"].append(review["example"])
    return list(answers.values())


def reviewed_examples(reviews: list[dict[str, Any]]) -> dict[str, list[str]]:
    """nlu.yaml's `intents:` shape from the reviews, the latest review of each turn winning."""
    intents: dict[str, list[str]] = defaultdict(list)
    for review in _latest(reviews, faq=False):
        if review.get("example") not in intents[review["intent"]]:
            intents[review["intent"]].append(review["example"])
    return dict(intents)


@dataclass
class Retrain:
    """The retraining hook: one run of `console.retrain_command` at a time, its output kept in memory."""

    command: list[str] | None
    reviews: Path
    started: float | None = None
    returncode: int | None = None
    output: str = ""
    _task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        return {"configured": self.command is not None, "running": self.running, "started": self.started,
                "returncode": self.returncode, "output": self.output[-OUTPUT_CHARS:]}  # fmt: skip

    def start(self) -> None:
        """Start the command (VOICEBOT_REVIEWED names the reviewed file); ValueError when it cannot."""
        if self.command is None:
            raise ValueError("no console.retrain_command configured")
        if self.running:
            raise ValueError("a retraining run is already going")
        self.started, self.returncode, self.output = time.time(), None, ""
        self._task = asyncio.create_task(self._run(self.command), name="console-retrain")

    async def _run(self, command: list[str]) -> None:
        env = os.environ | {"VOICEBOT_REVIEWED": str(self.reviews)}
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
            )
        except OSError as exc:
            self.output, self.returncode = f"cannot start {command[0]}: {exc.strerror or exc}", 127
            return
        assert process.stdout is not None
        while chunk := await process.stdout.read(4096):
            self.output = (self.output + chunk.decode(errors="replace"))[-4 * OUTPUT_CHARS :]
        self.returncode = await process.wait()
