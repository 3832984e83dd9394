"""What the policy decided for one caller event: the reply's parts, the dialogue act, and what was done."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Decision:
    parts: list[str] = field(default_factory=list)
    act: str = ""
    action: str | None = None
    action_result: str | None = None
    transfer: str | None = None  # reason
    transfer_code: str | None = None  # the reason as a code (`voicebot.handoff.REASONS`)
    hangup: str | None = None  # reason
    action_started: float | None = None  # when the back end was called and answered (perf_counter): its
    # time is kept apart from the dialogue's own
    action_done: float | None = None

    @property
    def text(self) -> str:
        return " ".join(p.strip() for p in self.parts if p.strip())

    def say(self, text: str, act: str | None = None) -> Decision:
        self.parts.append(text)
        if act:
            self.act = act
        return self
