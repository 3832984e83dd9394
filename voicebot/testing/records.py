"""Shared pieces of the call-record tests: sample calls and raw-row checks (the database fixtures are
tests/conftest.py's `db_url` and `make_store`, and `voicebot.testing.pg`'s `postgres`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, select

from voicebot.frames import Action, CallEnded
from voicebot.records import CallStore
from voicebot.records.models import Base

CARD, EMAIL, PHONE = "4111 1111 1111 1111", "john.smith@example.com", "+44 7911 123456"
SECRETS = (
    "4111 1111 1111 1111",
    "4111111111111111",
    "john.smith",
    "example.com",
    "7911 123456",
    "7911123456",
)
TWILIO = {"callSid": "CA1234567890abcdef1234567890abcdef", "streamSid": "MZ18ad3ab5a668481ce02b83e7395059f0"}
GREETING = "Hello, thanks for calling Acme Shop. How can I help?"
TRANSFER = Action("transfer", target="sip:agents@pbx.local", reason="caller asked for a person")


def greeting() -> dict[str, Any]:
    return {"act": "greeting", "reply": GREETING, "actions": [], "timings_ms": {"tts_first_audio": 85.2},
            "interrupted": False, "played_ms": 3120.0}  # fmt: skip


def track(transcript: str = "I want to track my order four five seven two one nine") -> dict[str, Any]:
    return {
        "transcript": transcript, "asr": {"avg_logprob": -0.21, "no_speech_prob": 0.01},
        "intent": "track_order", "confidence": 0.9712, "entities": {"order_id": "457219"},
        "sentiment": "neutral", "frustration": 0.05, "answer_id": None, "flow": "track_order",
        "expecting": None, "slots": {"order_id": "457219"},
        "act": "inform", "action": "lookup_order", "action_result": "ok", "previous_heard": GREETING,
        "previous_interrupted": False, "reply": "Order 457219 shipped on 3 December and arrives tomorrow.",
        "actions": [], "interrupted": True, "played_ms": 1400.0,
        "timings_ms": {"asr": 312.5, "nlu": 18.2, "policy": 4.1, "dialogue": 23.0, "tts_first_audio": 95.4},
    }  # fmt: skip


def handoff() -> dict[str, Any]:
    return {
        "transcript": "this is useless, let me talk to a person", "intent": "human_agent", "confidence": 0.93,
        "entities": {}, "sentiment": "negative", "frustration": 0.82, "slots": {"order_id": "457219"},
        "act": "handoff", "action": None, "action_result": None, "previous_heard": "Order 457219 shipped on",
        "previous_interrupted": True, "reply": "Let me put you through to a colleague.",
        "actions": [{"kind": "transfer", "target": TRANSFER.target, "reason": TRANSFER.reason}],
        "handoff_reason": TRANSFER.reason, "timings_ms": {"asr": 280.0, "nlu": 15.0}, "interrupted": False,
        "played_ms": 2300.0,
    }  # fmt: skip


async def full_call(store: CallStore, call_id: str, records: list[dict[str, Any]] | None = None) -> None:
    """Start, three turns, a transfer, the end: what the gateway's session core reports for one call."""
    await store.on_start(call_id, "twilio", TWILIO | {"from": "+447911123456"})
    for record in records or [greeting(), track(), handoff()]:
        store.add_turn(call_id, record)
    await store.on_event(call_id, CallEnded(reason=TRANSFER.reason or "", actions=(TRANSFER,)))
    await store.on_end(call_id, "transferred")


def raw_rows(url: str) -> str:
    """Every cell of every table, as text: what anyone with database access can read."""
    engine = create_engine(url)
    with engine.connect() as conn:
        text = "\n".join(
            repr(row) for table in Base.metadata.sorted_tables for row in conn.execute(select(table))
        )
    engine.dispose()
    return text


def assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
