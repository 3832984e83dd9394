"""Learning from calls: an operator confirms or corrects what the bot understood of a turn, into a reviewed
training file beside the domain.

The file (`reviewed.jsonl` in the domain folder, or `console.reviews_file`) takes one JSON object per line,
appended, never rewritten: who reviewed which turn of which call and when, the words as heard, what the bot
made of them (`heard_intent`, `heard_confidence`), and the verdict: `intent` and `example`, the words with the
slots marked as in nlu.yaml (`[four five seven two one nine](order_id)`). Nothing is edited into the domain's
YAML: `voicebot train` takes the examples in (the latest review of a turn wins), and
`voicebot.domain.reviewed.reviewed_examples` gives them in nlu.yaml's `intents:` shape for the console to
show. Text is masked before it is written, like the call records: a training file must hold no card
numbers, emails or phone numbers.

A caller's question can also be reviewed as a question for an FAQ answer (`verdict: "faq"`, `faq`: the
answer's id, and for a new id the spoken `answer`); `reviewed_faq` (same module) gives those in faq.yaml's
shape.

The file's format and its readers are voicebot/domain/reviewed.py's (the trainer reads it too); retraining
is telephony/console/retrain.py's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from voicebot.domain.nlu_spec import FAQAnswer, parse_markup
from voicebot.domain.reviewed import read_reviews
from voicebot.pii import mask_text

Verdict = Literal["confirmed", "corrected"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_MARK_LEFT = re.compile(r"\[[^\]]+\]\([a-z_][a-z0-9_]*\)")


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
        """Every review, oldest first (blocking file I/O: run it in a thread)."""
        return read_reviews(self.path)
