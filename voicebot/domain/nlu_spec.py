"""The NLU part of a domain folder: `nlu.yaml` (what to train on) and `faq.yaml` (answers to match).

Inline examples mark entities Rasa-style: `cancel order [four five seven two one nine](order_id)`. A
dataset reference pulls a public corpus's *training* split in (its test split stays held out for the
benchmarks). Everything here is validated with the file and line of the first mistake.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from voicebot.domain.yamlfile import DomainError, Strict, line_of, load_model, load_yaml

_MARK = re.compile(r"\[([^\]]+)\]\(([a-z_][a-z0-9_]*)\)")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _intent_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"intent name {name!r} must be lower_snake_case")
    return name


def _marked_example(example: str) -> str:
    rest = _MARK.sub("", example)
    if "[" in rest or "](" in rest:
        raise ValueError(f"malformed entity markup in {example!r} (use [words](type))")
    return example


# Validated per key and per item, so an error's location (and so its line) is the bad key or example.
IntentName = Annotated[str, AfterValidator(_intent_name)]
MarkedExample = Annotated[str, AfterValidator(_marked_example)]


class DatasetRef(Strict):
    name: str = Field(description="a public dataset in ../shared/data: bitext, banking77, clinc150, snips")
    intents: list[str] | None = Field(None, description="only these intents (default: all)")


class TrainingSpec(Strict):
    epochs: int = Field(6, ge=1, le=50)
    augment: float = Field(0.3, ge=0.0, le=1.0, description="share of ASR-style rewritten training turns")
    sentiment: bool = Field(True, description="train the sentiment/frustration head on GoEmotions")
    encoder: Path | None = Field(None, description="a Hugging Face encoder directory (default: MiniLM-L6)")
    seed: int = 13


class NLUSpec(Strict):
    datasets: list[DatasetRef] = Field(default_factory=list)
    intents: dict[IntentName, list[MarkedExample]] = Field(default_factory=dict)
    training: TrainingSpec = Field(default_factory=TrainingSpec)


class FAQAnswer(Strict):
    id: str
    answer: str = Field(min_length=1, description="spoken answer: short, no URLs or markdown")
    intent: str | None = Field(None, description="use this intent's training examples as questions too")
    questions: list[str] = Field(default_factory=list)

    @field_validator("answer")
    @classmethod
    def _speakable(cls, answer: str) -> str:
        if re.search(r"https?://|www\.|[*_#`]|\[.*\]\(", answer):
            raise ValueError("answers are spoken: no URLs, markdown or markup")
        return answer


class FAQSpec(Strict):
    answers: list[FAQAnswer] = Field(default_factory=list)


def parse_markup(example: str) -> tuple[str, list[tuple[str, int, int]]]:
    """'cancel [four five](order_id)' → ('cancel four five', [('order_id', 7, 16)])."""
    text, spans, pos = "", [], 0
    for m in _MARK.finditer(example):
        text += example[pos : m.start()]
        start = len(text)
        text += m.group(1)
        spans.append((m.group(2), start, len(text)))
        pos = m.end()
    return text + example[pos:], spans


def load_nlu_spec(domain: Path) -> tuple[NLUSpec, FAQSpec]:
    nlu_file, faq_file = domain / "nlu.yaml", domain / "faq.yaml"
    if not nlu_file.is_file():
        raise DomainError(f"{nlu_file}: missing (a domain needs nlu.yaml)")
    nlu = load_model(nlu_file, NLUSpec)
    faq = load_model(faq_file, FAQSpec) if faq_file.is_file() else FAQSpec()
    seen: set[str] = set()
    for n, answer in enumerate(faq.answers):
        if answer.id in seen:
            line = line_of(load_yaml(faq_file)[1], ("answers", n, "id"))
            raise DomainError(f"{faq_file}:{line}: answers.{n}.id: duplicate answer id {answer.id!r}")
        seen.add(answer.id)
    return nlu, faq
