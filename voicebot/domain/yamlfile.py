"""YAML loading that remembers line numbers, so a domain error says `file:line: field: problem`.

Companies edit domain folders by hand; "validation error at intents.3.examples" is useless to them, while
"domains/shop/nlu.yaml:42: intents.greet: ..." takes them straight to the mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class Strict(BaseModel):
    """Base of every hand-edited YAML model: an unknown key is a typo, reported, never ignored."""

    model_config = ConfigDict(extra="forbid")


class DomainError(ValueError):
    """A domain file problem, with file, line and field in the message."""


class _LineLoader(yaml.SafeLoader):
    pass


def _load_with_lines(text: str) -> tuple[Any, dict[Loc, int]]:
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, loc: Loc) -> None:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*loc, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*loc, index))

    root = yaml.compose(text, Loader=_LineLoader)
    if root is not None:
        walk(root, ())
    return yaml.safe_load(text), lines


def load_yaml(path: Path) -> tuple[Any, dict[Loc, int]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DomainError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return _load_with_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DomainError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of `loc`, or of its nearest ancestor that has one."""
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


def load_model(path: Path, model: type[M]) -> M:
    """Parse and validate a YAML file into a pydantic model; the first error names file, line and field."""
    data, lines = load_yaml(path)
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        line = line_of(lines, loc)
        where = f"{path}:{line}" if line else str(path)
        field = ".".join(str(p) for p in loc) or "(top level)"
        raise DomainError(f"{where}: {field}: {first['msg']}") from exc
