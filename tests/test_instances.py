"""Several gateway instances on one call-record database: heartbeats, a lost instance's calls ended by a
survivor, restarts, outages, schema upgrades and concurrent schema creation."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, select, text, update

from voicebot.records import LOST_REASON, CallStore
from voicebot.records.models import Base, CallRow, InstanceRow
from voicebot.testing.pg import PostgresCluster
from voicebot.testing.records import (
    TWILIO,
    full_call,
    greeting,
)

# --- several gateway instances on one database -------------------------------------------------------------


def backdate(url: str, table: type[Any], column: str, hours: float, **where: str) -> None:
    """Move a stored time into the past: an hour of silence without waiting an hour."""
    engine = create_engine(url)
    with engine.begin() as conn:
        criteria = [getattr(table, key) == value for key, value in where.items()]
        conn.execute(
            update(table).where(*criteria).values({column: datetime.now(UTC) - timedelta(hours=hours)})
        )
    engine.dispose()


def instance_ids(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = set(conn.scalars(select(InstanceRow.id))) if inspect(conn).has_table("instances") else set()
    engine.dispose()
    return found


async def test_a_lost_instance_s_calls_are_ended_by_a_survivor(
    db_url: str, make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    a = make_store(db_url, instance="gw-a", spool=tmp_path / "a.jsonl")
    b = make_store(db_url, instance="gw-b", spool=tmp_path / "b.jsonl")
    await a.on_start("a-live", "twilio", TWILIO)
    a.add_turn("a-live", greeting())
    await full_call(a, "a-done")
    await b.on_start("b-live", "twilio", TWILIO)
    assert await a.flush() == 0 and await b.flush() == 0
    assert a.heartbeat.beat() == [] and b.heartbeat.beat() == []  # both alive: nobody is judged
    assert instance_ids(db_url) == {"gw-a", "gw-b"}

    backdate(db_url, InstanceRow, "seen_at", 1, id="gw-a")  # gw-a went silent an hour ago (SIGKILL)
    [lost] = b.heartbeat.beat()
    assert (lost.instance, lost.calls) == ("gw-a", ("a-live",))
    assert lost.last_seen is not None and datetime.now(UTC) - lost.last_seen > timedelta(minutes=59)
    calls = {c.id: c for c in b.list_calls()}
    assert (calls["a-live"].status, calls["a-live"].end_reason, calls["a-live"].ended_at) == (
        "ended", LOST_REASON, lost.last_seen,
    )  # fmt: skip
    assert calls["a-live"].instance == "gw-a" and calls["a-live"].turns == 1  # its turns are kept
    assert calls["a-done"].end_reason == "transferred"  # an ended call is never touched
    assert (calls["b-live"].status, calls["b-live"].instance) == ("active", "gw-b")
    assert instance_ids(db_url) == {"gw-b"}
    assert b.heartbeat.beat() == []  # once is enough

    # A false alarm heals: gw-a was only cut off, its own end record wins and it beats again.
    await a.on_end("a-live", "caller hung up")
    assert await a.flush() == 0
    assert a.heartbeat.beat() == [] and instance_ids(db_url) == {"gw-a", "gw-b"}
    assert {c.id: c.end_reason for c in a.list_calls()}["a-live"] == "caller hung up"


async def test_a_restart_ends_what_the_previous_run_left_open(
    db_url: str, make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    old = make_store(db_url, instance="old-run", spool=tmp_path / "old.jsonl")
    await old.on_start("crashed", "browser", {})
    await old.on_start("replayed-late", "browser", {})
    await old.on_start("legacy", "browser", {})
    assert await old.flush() == 0
    old.heartbeat.beat()
    backdate(db_url, InstanceRow, "seen_at", 2, id="old-run")
    engine = create_engine(db_url)
    with engine.begin() as conn:  # a row from before instances were recorded: no instance to judge by
        conn.execute(update(CallRow).where(CallRow.id == "legacy").values(instance=None))
    engine.dispose()

    new = make_store(db_url, instance="new-run", spool=tmp_path / "new.jsonl")
    [lost] = new.heartbeat.tick()  # the first beat, at start-up
    assert set(lost.calls) == {"crashed", "replayed-late"}

    # A start record of a reaped instance that arrives later (a spool replayed): no heartbeat row is left,
    # so it is judged by its own start time (a fresh one is given time, an old one is ended at once).
    ghost = make_store(db_url, instance="old-run", spool=tmp_path / "ghost.jsonl")
    await ghost.on_start("fresh-ghost", "browser", {})
    await ghost.on_start("old-ghost", "browser", {})
    assert await ghost.flush() == 0
    backdate(db_url, CallRow, "started_at", 2, id="old-ghost")
    [late] = new.heartbeat.tick()
    assert (late.instance, late.last_seen, late.calls) == ("old-run", None, ("old-ghost",))
    status = {c.id: (c.status, c.end_reason) for c in new.list_calls()}
    assert status == {
        "crashed": ("ended", LOST_REASON), "replayed-late": ("ended", LOST_REASON),
        "legacy": ("active", None), "fresh-ghost": ("active", None), "old-ghost": ("ended", LOST_REASON),
    }  # fmt: skip


async def test_after_an_outage_nobody_is_judged_before_they_could_beat_again(
    postgres: PostgresCluster, make_store: Callable[..., CallStore], tmp_path: Path
) -> None:
    url = postgres.new_database()
    a = make_store(url, instance="gw-a", spool=tmp_path / "a.jsonl")
    b = make_store(url, instance="gw-b", spool=tmp_path / "b.jsonl", lost_after_s=1.0)
    await a.on_start("a-live", "twilio", TWILIO)
    assert await a.flush() == 0
    assert a.heartbeat.tick() == [] and b.heartbeat.tick() == []
    postgres.stop()
    try:
        assert b.heartbeat.tick() == []  # logged, not raised
    finally:
        postgres.start()
    backdate(url, InstanceRow, "seen_at", 1, id="gw-a")  # everyone was silent during the outage
    assert b.heartbeat.tick() == []  # b was cut off too: a gets lost_after_s to beat again
    for _ in range(100):  # a never beats again: judged once b has watched for lost_after_s
        found = b.heartbeat.tick()
        if found:
            break
        await asyncio.sleep(0.05)
    assert [(lost.instance, lost.calls) for lost in found] == [("gw-a", ("a-live",))]


async def test_the_gateway_hooks_beat_and_leave(db_url: str, make_store: Callable[..., CallStore]) -> None:
    store = make_store(db_url, instance="gw-hooks", heartbeat_s=0.05)
    await store.on_serve_start()
    for _ in range(100):
        if "gw-hooks" in instance_ids(db_url):
            break
        await asyncio.sleep(0.05)
    assert instance_ids(db_url) == {"gw-hooks"}
    await full_call(store, "during")
    await store.on_serve_stop()  # a clean stop: the ends are written, the instance is gone
    assert instance_ids(db_url) == set()
    assert [(c.id, c.end_reason) for c in store.list_calls()] == [("during", "transferred")]


async def test_a_database_from_before_instances_is_upgraded(
    db_url: str, make_store: Callable[..., CallStore]
) -> None:
    engine = create_engine(db_url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:  # the first schema: no calls.instance, no index, no instances table
        conn.execute(text("DROP INDEX ix_calls_status_instance"))
        conn.execute(text("ALTER TABLE calls DROP COLUMN instance"))
        conn.execute(text("DROP TABLE instances"))
        conn.execute(
            text("INSERT INTO calls (id, protocol, meta, started_at, status, turns) "
                 "VALUES ('before', 'twilio', '{}', '2026-01-01 10:00:00', 'ended', 2)")
        )  # fmt: skip
    engine.dispose()
    store = make_store(db_url, instance="gw-new")
    await full_call(store, "after")
    assert await store.flush() == 0
    assert store.heartbeat.tick() == []
    assert {c.id: c.instance for c in store.list_calls()} == {"before": None, "after": "gw-new"}


def test_instances_starting_together_make_the_schema_once(postgres: PostgresCluster) -> None:
    """Four processes create the tables of a fresh database at the same moment; none of them fails."""
    url = postgres.new_database()
    at = time.time() + 3.0  # after every interpreter has started
    code = (
        "import sys, time; from voicebot.records.db import ensure_schema, make_engine, resolve_url; "
        "engine = make_engine(resolve_url(sys.argv[1])); "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); ensure_schema(engine)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(at)], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs if p.wait(timeout=60) != 0]
    assert errors == []
    assert "instances" in inspect(create_engine(url)).get_table_names()
