"""The console's history search and dashboard reads (`voicebot.records.search`) on both databases the
records run on: every filter is SQL, so SQLite and PostgreSQL must agree (case-insensitive words, `%` a plain
character, the EXISTS on turns)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from voicebot.records import CallStore
from voicebot.records.search import CallFilter, calls_with_turns, facets, search_calls
from voicebot.testing.records import full_call, greeting, track


async def test_every_filter_on_both_databases(db_url: str, make_store: Callable[..., CallStore]) -> None:
    store = make_store(db_url)
    await full_call(store, "handed-over")  # greeting, tracking, then "let me talk to a person": transferred
    await store.on_start("tracked", "audiosocket", {})
    for record in (greeting(), track("Where is 100% of my order?")):
        store.add_turn("tracked", record)
    await store.on_end("tracked", "caller said goodbye")
    await store.on_start("broken", "twilio", {})
    await store.on_end("broken", "internal error: KeyError")
    await store.on_start("talking", "twilio", {})
    store.add_handoff("handed-over", {"call_id": "handed-over", "reason": "frustration", "summary": []})
    assert await store.flush() == 0

    def ids(**given: object) -> list[str]:
        return [c.id for c in search_calls(store.engine, CallFilter(**given))]  # type: ignore[arg-type]

    assert sorted(ids()) == ["broken", "handed-over", "talking", "tracked"]
    assert ids(outcome="transferred") == ["handed-over"]
    reasons = {c.id: c.handoff_reason for c in search_calls(store.engine, CallFilter())}
    assert reasons == {"handed-over": "frustration", "tracked": None, "broken": None, "talking": None}
    assert ids(outcome="contained") == ["tracked"]
    assert ids(outcome="error") == ["broken"]
    assert ids(outcome="active") == ["talking"]
    assert sorted(ids(intent="track_order")) == ["handed-over", "tracked"]
    assert ids(sentiment="negative") == ["handed-over"]
    assert ids(text="USELESS") == ["handed-over"]  # the caller's words, any case
    assert ids(text="put you through") == ["handed-over"]  # the bot's
    assert ids(text="100%") == ["tracked"] and ids(text="0%") == ["tracked"]
    assert ids(text="1_0") == []  # `_` is no wildcard either
    assert sorted(ids(protocol="twilio")) == ["broken", "handed-over", "talking"]
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert ids(since=later) == [] and len(ids(until=later)) == 4
    assert len(ids(limit=2)) == 2 and len(ids(limit=2, offset=3)) == 1

    found = facets(store.engine)
    assert found["intents"] == ["human_agent", "track_order"]
    assert found["sentiments"] == ["negative", "neutral"]
    assert found["protocols"] == ["audiosocket", "twilio"]
    window = calls_with_turns(store.engine, later - timedelta(hours=1), later, 10)
    assert {d.call.id: len(d.turns) for d in window} == {
        "handed-over": 3,
        "tracked": 2,
        "broken": 0,
        "talking": 0,
    }
    assert [t.target for t in next(d for d in window if d.call.id == "handed-over").transfers] == [
        "sip:agents@pbx.local"
    ]
