"""The warm hand-off summary: what a person taking a transferred call needs, built from the call's turns.

When the bot hands a caller to a person, the person should not have to ask everything again. The summary
says why the call came over (`reason`, one of `REASONS`: the dialogue names it when it decides to
transfer, see `voicebot.dialogue.policy`), what the caller wanted (`intent`, `flow`), what was already
collected (`slots`, masked by `voicebot.pii` where they are personal data), how the caller's mood went
(`sentiment`: the per-turn labels and a `trend`), two plain lines saying all that, and a link to the call
on the operator console (`/console#/call/ID`).

It is built from the typed turn records (`TurnRecord`), not from a brain's private state, so any brain
that fills `Understanding` gets a summary; no model is asked to write it (deterministic, instant, and
nothing the caller said is sent anywhere to be summarised). `HandoffNotes` collects one call's turns as
they pass; `HandoffSummary.as_json()` is the form every channel carries (the HTTP endpoint, the webhook,
the call record), `wire()` the flat string form a phone protocol carries (Genesys output variables, SIP
X-headers, Twilio `<Parameter>`s, a FreeSWITCH event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from voicebot.frames import Action, Understanding
from voicebot.pii import mask_mapping, mask_text
from voicebot.turns import TurnRecord

Reason = Literal[
    "asked_for_person", "frustration", "not_understood", "out_of_scope", "no_input", "backend_error",
    "operator", "other",
]  # fmt: skip
REASONS: tuple[Reason, ...] = get_args(Reason)
# How each reason reads to the agent (the first words of the summary's second line).
REASON_TEXT: dict[Reason, str] = {
    "asked_for_person": "the caller asked for a person",
    "frustration": "the caller was frustrated",
    "not_understood": "the bot repeatedly did not understand the caller",
    "out_of_scope": "the request is outside what the bot handles",
    "no_input": "the caller stopped answering",
    "backend_error": "a back-end system failed",
    "operator": "an operator took the call over",
    "other": "the bot transferred the call",
}
Trend = Literal["worsening", "improving", "steady", "unknown"]
TREND_STEP = 0.15  # frustration (0-1) the late turns must differ from the early ones by to call it a trend
# Intents that say nothing about what the caller wanted: out of scope, asking for a person, and the
# dialogue's conversational moves (`MetaIntents`' default names).
NOT_A_TASK = frozenset(
    {"oos", "contact_human_agent", "inform", "affirm", "deny", "greet", "goodbye", "repeat", "thanks"}
)
WIRE_LIMIT = 240  # characters of one value on the wire: SIP headers and Genesys variables are short


def reason_of(action: Action) -> Reason:
    """The action's reason code, `other` when the brain gave none (or one this version does not know)."""
    code = action.code
    return code if code in REASONS else "other"  # type: ignore[return-value]


def console_link(call_id: str, public_url: str | None) -> str:
    """The call's page on the operator console (`#/call/ID`, the console's own route), absolute when the
    gateway knows its public address."""
    return f"{(public_url or '').rstrip('/')}/console#/call/{call_id}"


def trend_of(frustration: Sequence[float]) -> Trend:
    """Late turns against early ones (the first and last two, or halves of a shorter call)."""
    if len(frustration) < 2:
        return "unknown" if not frustration else "steady"
    k = min(2, len(frustration) // 2)
    early, late = sum(frustration[:k]) / k, sum(frustration[-k:]) / k
    if late - early >= TREND_STEP:
        return "worsening"
    if early - late >= TREND_STEP:
        return "improving"
    return "steady"


@dataclass(frozen=True)
class HandoffSummary:
    call_id: str
    protocol: str
    reason: Reason
    detail: str  # the dialogue's own words for it ("caller not understood 3 times"), masked
    target: str | None
    intent: str | None
    flow: str | None
    slots: dict[str, Any]
    sentiments: tuple[str, ...]  # the caller turns' labels, in order
    trend: Trend
    lines: tuple[str, str]
    console_url: str
    turns: int
    provider_id: str | None = None  # the carrier's id of the call (Twilio CallSid, AudioSocket UUID…)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "protocol": self.protocol, "provider_id": self.provider_id,
            "reason": self.reason, "reason_text": REASON_TEXT[self.reason], "detail": self.detail,
            "target": self.target, "intent": self.intent, "flow": self.flow, "slots": self.slots,
            "sentiment": {"turns": list(self.sentiments), "trend": self.trend}, "summary": list(self.lines),
            "console_url": self.console_url, "turns": self.turns, "at": self.at,
        }  # fmt: skip

    def wire(self) -> dict[str, str]:
        """Flat, short strings (camelCase keys) for a protocol's variables or headers; empties left out."""
        return wire_values(self.as_json())


def wire_values(summary: Mapping[str, Any]) -> dict[str, str]:
    """The flat form (`HandoffSummary.wire`) of a summary in its JSON form: also what the console shows
    a stored hand-off's person received on the line."""
    slots = "; ".join(f"{k}={v}" for k, v in (summary.get("slots") or {}).items())
    values = {
        "handoffReason": summary.get("reason"), "handoffDetail": summary.get("detail"),
        "intent": summary.get("intent"), "flow": summary.get("flow"), "slots": slots,
        "sentimentTrend": (summary.get("sentiment") or {}).get("trend"),
        "summary": " / ".join(summary.get("summary") or []), "consoleUrl": summary.get("console_url"),
        "callId": summary.get("call_id"),
    }  # fmt: skip
    return {k: str(v)[:WIRE_LIMIT] for k, v in values.items() if v}


def _words(name: str) -> str:
    return name.replace("_", " ")


def two_lines(
    reason: Reason, detail: str, intent: str | None, slots: Mapping[str, Any], trend: Trend, turns: int
) -> tuple[str, str]:
    """What the caller wanted and gave; why the call came over and how the caller felt."""
    given = ", ".join(f"{_words(k)} {v}" for k, v in slots.items())
    wanted = f"Caller wants to {_words(intent)}" if intent else "Caller's request is not known"
    first = f"{wanted}; {'gave ' + given if given else 'gave no details yet'}."
    mood = {"unknown": "", "steady": "; mood steady"}.get(trend, f"; mood {trend}")
    why = REASON_TEXT[reason]
    if detail.lower() not in why:  # the dialogue's words add something ("… for 2 turns in a row")
        why += f" ({detail})"
    second = f"Transferred because {why} after {turns} turn{'s' * (turns != 1)}{mood}."
    return first, second


class HandoffNotes:
    """One call's turns as they pass, and the summary of its transfer."""

    def __init__(self, call_id: str, protocol: str, provider_id: str | None = None) -> None:
        self.call_id, self.protocol, self.provider_id = call_id, protocol, provider_id
        self.understood: list[Understanding] = []
        self.turns = 0  # caller turns (speech, keys, silences): every record but the greeting

    def add(self, record: TurnRecord) -> None:
        self.turns += record.cause != "greeting"
        if record.understanding is not None:
            self.understood.append(record.understanding)

    def _intent(self) -> tuple[str | None, str | None]:
        """The task the caller came for: the latest flow, named by the intent that started it (the flow's
        own name when a key press did); without a flow, the caller's latest telling intent."""
        flow = next((u.flow for u in reversed(self.understood) if u.flow is not None), None)
        told = [u for u in self.understood if u.intent and u.intent not in NOT_A_TASK]
        if flow is not None:
            return next((u.intent for u in told if u.flow == flow), flow), flow
        return (told[-1].intent if told else None), None

    def summary(self, action: Action, public_url: str | None = None) -> HandoffSummary:
        reason = reason_of(action)
        intent, flow = self._intent()
        latest = next((u for u in reversed(self.understood) if u.act is not None), None)
        slots = mask_mapping(latest.slots) if latest is not None else {}
        caller = [u for u in self.understood if u.parsed]
        sentiments = tuple(u.sentiment for u in caller if u.sentiment)
        trend = trend_of([u.frustration for u in caller if u.frustration is not None])
        detail, turns = mask_text(action.reason or reason), self.turns
        return HandoffSummary(
            call_id=self.call_id, protocol=self.protocol, reason=reason, detail=detail, target=action.target,
            intent=intent, flow=flow, slots=slots, sentiments=sentiments, trend=trend,
            lines=two_lines(reason, detail, intent, slots, trend, turns),
            console_url=console_link(self.call_id, public_url), turns=turns, provider_id=self.provider_id,
        )  # fmt: skip
