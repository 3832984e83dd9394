"""The conversation test format: one YAML file is one scripted call, its caller turns and what must follow.

Validated strictly (unknown keys are errors) through `load_model`, so a typo in a test names file, line and
field instead of quietly testing nothing. An `expect` key that is absent is not checked; one given as null
means "must be absent", which is why the checks look at which keys were *set*, not at their values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from voicebot.domain.yamlfile import DomainError, Strict, line_of, load_model, load_yaml
from voicebot.line.config import LineField

INPUTS = ("bot", "caller", "audio", "dtmf", "silence", "hangup")


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PydanticCustomError(
            "regex",
            "invalid regular expression {pattern}: {error}",
            {"pattern": repr(pattern), "error": str(exc)},
        ) from exc
    return pattern


Regex = Annotated[str, AfterValidator(_compiles)]


class _Checks(Strict):
    _nullable: ClassVar[frozenset[str]] = frozenset()  # keys where null means "must be absent"

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls._nullable:
            raise PydanticCustomError("null", "must not be null (leave the key out to skip this check)")
        return value

    def checked(self) -> dict[str, Any]:
        """The expectations written in the file, in declaration order."""
        return {
            name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set
        }


class Expect(_Checks):
    """What one step's turn records must show. Only the keys written in the file are checked."""

    _nullable: ClassVar[frozenset[str]] = frozenset({"intent", "action", "action_result", "act", "flow"})

    intent: str | None = None
    slots: dict[str, Any] = Field(default_factory=dict)
    action: str | None = None
    action_result: str | None = None
    act: str | None = None
    flow: str | None = None
    reply: Regex | None = None
    no_reply: Regex | None = None
    transfer: str | bool | None = None
    hangup: bool | None = None
    silent: bool | None = None
    interrupted: bool | None = None
    previous_interrupted: bool | None = None
    previous_heard: Regex | None = None
    transcript: Regex | None = None


class Step(Strict):
    """One thing the caller does (or, first, the greeting the bot must say), and what must follow."""

    bot: Regex | None = None
    caller: str | None = Field(None, min_length=1)
    audio: str | None = Field(None, min_length=1, description="audio file, relative to the YAML file")
    dtmf: str | None = Field(None, pattern=r"^[0-9*#A-Da-d]+$")
    silence: Literal[True] | None = None
    hangup: Literal[True] | None = None
    barge_in_after_ms: int | None = Field(None, ge=0, description="talk over the previous reply, N ms in")
    line: LineField | None = Field(None, description="this step's audio over this line (preset or fields)")
    expect: Expect = Field(default_factory=Expect)

    @field_validator("caller", mode="before")
    @classmethod
    def _as_typed(cls, value: Any) -> Any:
        """YAML reads an unquoted `no` as false and `830112` as a number; a caller turn means the words."""
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value) if isinstance(value, int | float) else value

    @field_validator("dtmf", mode="before")
    @classmethod
    def _quoted_digits(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):  # 0123 would already be octal 83
            raise PydanticCustomError(
                "dtmf", 'put the digits in quotes (dtmf: "{digits}")', {"digits": value}
            )
        return value

    @model_validator(mode="after")
    def _one_input(self) -> Step:
        given = [name for name in INPUTS if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise PydanticCustomError(
                "step",
                "a step needs exactly one of {inputs}; got {got}",
                {"inputs": ", ".join(INPUTS), "got": got},
            )
        if self.barge_in_after_ms is not None and self.kind not in ("caller", "audio"):
            raise PydanticCustomError(
                "barge_in", "barge_in_after_ms needs a caller or audio step (someone has to talk)"
            )
        if self.line is not None and self.audio is None and not self.barges_in:
            raise PydanticCustomError(
                "line", "line needs an audio step or a barge-in (typed caller turns have no audio)"
            )
        return self

    @property
    def kind(self) -> str:
        return next(name for name in INPUTS if getattr(self, name) is not None)

    @property
    def barges_in(self) -> bool:
        return self.barge_in_after_ms is not None

    @property
    def label(self) -> str:
        """How reports name the step: what the caller did, shortened."""
        kind = self.kind
        if kind == "bot":
            text = f"bot: /{self.bot}/"
        elif kind in ("silence", "hangup"):
            text = kind
        else:
            value = str(getattr(self, kind))
            text = f"{kind}: {value!r}" if len(value) <= 40 else f"{kind}: {value[:39]!r}…"
        if self.barge_in_after_ms is not None:
            text += f", barging in at {self.barge_in_after_ms} ms"
        return text


class End(_Checks):
    """How the call must have ended, checked after the last step."""

    ended: bool | None = None
    transfer: str | bool | None = None
    hangup: bool | None = None
    reason: Regex | None = None


class Conversation(Strict):
    name: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    line: LineField | None = Field(None, description="caller audio over this line (unless a step sets one)")
    steps: list[Step] = Field(min_length=1)
    end: End | None = None
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The YAML file this came from; audio paths are relative to its folder."""
        return self._source

    def audio_path(self, step: Step) -> Path:
        assert step.audio is not None
        base = self._source.parent if self._source is not None else Path.cwd()
        return base / step.audio


def _fail(path: Path, loc: tuple[str | int, ...], message: str) -> DomainError:
    line = line_of(load_yaml(path)[1], loc)
    where = f"{path}:{line}" if line else str(path)
    return DomainError(f"{where}: {'.'.join(str(p) for p in loc)}: {message}")


def load_conversation(path: Path) -> Conversation:
    """Read and validate one test file; every problem comes back as a DomainError naming file:line:field."""
    conversation = load_model(path, Conversation)
    conversation._source = path
    for index, step in enumerate(conversation.steps):
        if step.bot is not None and index > 0:
            raise _fail(path, ("steps", index, "bot"), "only the first step can be the bot's greeting")
        if step.audio is not None and not conversation.audio_path(step).is_file():
            raise _fail(path, ("steps", index, "audio"), f"no such file {conversation.audio_path(step)}")
    return conversation


def collect_files(paths: Sequence[Path]) -> list[Path]:
    """Test files from files and folders (every *.yaml below a folder, sorted), each once."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("*.yaml")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    if not found:
        raise ValueError(f"no *.yaml conversation files in {', '.join(str(p) for p in paths)}")
    return list(dict.fromkeys(found))
