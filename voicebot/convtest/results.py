"""What a conversation test run found: per step, per conversation, per suite; plain data for the reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StepResult:
    """One step of a conversation. `failures` are the step's problems, without the step prefix."""

    number: int  # 1-based position in the file's `steps`
    label: str
    records: list[dict[str, Any]] = field(default_factory=list)
    reply: str | None = None
    failures: list[str] = field(default_factory=list)
    skipped: bool = False  # not played: the call had already ended or broken off
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def summary(self) -> str:
        """'step 3 (caller: 'where is my order'): intent: expected …; reply: …'"""
        return f"step {self.number} ({self.label}): {'; '.join(self.failures)}"

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.number,
            "label": self.label,
            "passed": self.passed,
            "skipped": self.skipped,
            "failures": self.failures,
            "reply": self.reply,
            "records": self.records,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ConversationResult:
    """`errors` are problems that kept the test from running properly (bad file, timeout), not mismatches."""

    name: str
    path: Path | None = None
    steps: list[StepResult] = field(default_factory=list)
    end_failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    greeting: str | None = None
    ended: str | None = None  # why the call ended, if it did
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.errors and not self.end_failures and all(s.passed for s in self.steps)

    @property
    def failure_lines(self) -> list[str]:
        """Every reason this conversation failed, one line each, in call order."""
        lines = [f"error: {e}" for e in self.errors]
        lines += [s.summary for s in self.steps if not s.passed]
        lines += [f"end: {f}" for f in self.end_failures]
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "passed": self.passed,
            "seconds": round(self.seconds, 3),
            "greeting": self.greeting,
            "ended": self.ended,
            "errors": self.errors,
            "end_failures": self.end_failures,
            "steps": [s.as_json() for s in self.steps],
        }


@dataclass
class SuiteResult:
    conversations: list[ConversationResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.conversations)

    @property
    def failed(self) -> list[ConversationResult]:
        return [c for c in self.conversations if not c.passed]

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "total": len(self.conversations),
            "failed": len(self.failed),
            "seconds": round(self.seconds, 3),
            "conversations": [c.as_json() for c in self.conversations],
        }
