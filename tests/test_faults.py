"""Faults (issue 7, the fast part of scripts/faults_gateway.py): callers that drop the line at random points,
slow readers, half-open connections, a back end that hangs or raises, a full recordings disk, the records
database going away, all against the real gateway, models, shop dialogue engine and call store.

What must hold each time: the call ends (or goes on) sensibly, nothing crashes, no task or file descriptor
is left behind, and every call that started has a stored record with its end reason.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import voicebot.dialogue.actions as actions_module
from tests.conftest import needs_data
from voicebot.dialogue.actions import ActionFailed, ActionResult, Actions
from voicebot.frames import PCM
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.faults.callers import AudioSocketCaller, BrowserCaller, Caller, TwilioCaller, until
from voicebot.testing.faults.domain import (
    ACTION_TIMEOUT_S,
    FAIL_ORDER,
    HANG_ORDER,
    FaultFactory,
    FaultGate,
    phrases,
    shop_nlu,
)
from voicebot.testing.faults.env import (
    call_of,
    fault_config,
    fill,
    hears_the_bot,
    press_and_wait,
    short_call,
    small_disk,
    talk,
)
from voicebot.testing.faults.plans import Run, fault_run, make_plans, run_plans
from voicebot.testing.pg import PostgresCluster, Unavailable, postgres_fixture  # noqa: F401  (a fixture)

SEED = 7


@pytest.fixture(scope="module")
def gate() -> Iterator[FaultGate]:
    gate = FaultGate(hang_s=8.0)
    yield gate
    gate.release.set()  # hung back-end threads return now
    for _ in range(200):
        if gate.running == 0:
            break
        time.sleep(0.05)
    assert gate.running == 0, "a hung back-end thread never returned"


@pytest.fixture(scope="module")
def fault_factory(
    services: Services, tmp_path_factory: pytest.TempPathFactory, gate: FaultGate
) -> FaultFactory:
    folder = tmp_path_factory.mktemp("faults")
    return FaultFactory(folder, shop_nlu(services), services.config.cache_dir, gate)


@pytest.fixture(scope="module")
def lines(services: Services) -> dict[str, PCM]:
    return phrases(services)


def sqlite_store(folder: Path, recordings: Path | None = None) -> CallStore:
    return CallStore(f"sqlite:///{folder / 'calls.sqlite'}", recordings, folder / "spool.jsonl")


def assert_clean(run: Run) -> None:
    """The invariants every fault run must keep."""
    assert run.crashes.count() == 0, (run.crashes.tracebacks, run.crashes.unhandled)
    assert run.calls_left == 0
    assert all(n <= 0 for n in run.leaks().values()), (run.leaks(), run.after_calls)
    assert run.lost == []
    assert set(run.ledger.ends) == set(run.ledger.starts)
    assert "server shutting down" not in run.ledger.ends.values()  # every call ended before the shutdown


# --- tests -------------------------------------------------------------------------------------------


@needs_data
async def test_random_disconnects_leave_no_crash_leak_or_lost_record(
    services: Services, fault_factory: FaultFactory, lines: dict[str, PCM], gate: FaultGate, tmp_path: Path
) -> None:
    """A caller can vanish at any moment: each protocol × point once, all at the same time."""
    plans = make_plans(21, SEED)  # every protocol × point once: 7 never set a call up (handshake)
    async with fault_run(services, fault_factory, sqlite_store(tmp_path), fault_config()) as run:
        outcomes = await run_plans(plans, run.gw, lines, gate, concurrency=len(plans))
    assert [o.error for o in outcomes if o.error] == []
    assert all(o.ended for o in outcomes)
    started = {o.call_id for o in outcomes if o.plan.point != "handshake"}
    assert None not in started and started == set(run.ledger.starts)
    missed = [(o.plan.label(), run.ledger.heard.get(o.call_id or "")) for o in outcomes if not o.reached]
    assert not [m for m in missed if m[0].split()[2] in ("action", "reply")], missed  # faults were hit
    assert_clean(run)


@needs_data
async def test_back_end_that_hangs_or_raises_gets_an_apology_and_a_person(
    services: Services, fault_factory: FaultFactory, lines: dict[str, PCM], tmp_path: Path
) -> None:
    """A back end that hangs past the action timeout or raises must not leave the caller in silence: the
    shop apologises and hands over to a person, and the turn record says the action failed."""
    store = sqlite_store(tmp_path)
    async with fault_run(services, fault_factory, store, fault_config()) as run:
        callers: list[Caller] = [TwilioCaller(), AudioSocketCaller(), BrowserCaller()]
        for caller in callers:
            await caller.connect(run.gw)
        ids = [await call_of(caller, run.gw) for caller in callers]
        hung, failing, person = callers
        await asyncio.gather(  # "1" at the main question: track an order; then its number
            press_and_wait(hung, "1" + HANG_ORDER), press_and_wait(failing, "1" + FAIL_ORDER),
            talk(person, lines["agent"]),
        )  # fmt: skip
        for caller in callers:
            await caller.close()
        await store.flush()
        details = [await asyncio.to_thread(store.get_call, call_id) for call_id in ids]
    assert_clean(run)
    hang, fail, agent = (run.ledger.ends[call_id] for call_id in ids)
    assert hang == f"transfer to agent: back end error: order_status: timed out after {ACTION_TIMEOUT_S:g}s"
    assert fail.startswith("transfer to agent: back end error: order_status: raised ConnectionResetError")
    assert agent.startswith("transfer to agent")
    for detail in details[:2]:
        assert detail is not None
        turn = next(t for t in detail.turns if t.action == "order_status")
        assert turn.action_result == "failed" and turn.reply and "went wrong" in turn.reply


@needs_data
async def test_slow_reader_and_half_open_lines_do_not_hold_up_other_calls(
    services: Services, fault_factory: FaultFactory, lines: dict[str, PCM], tmp_path: Path
) -> None:
    """A caller who never reads and lines that went silent without a FIN cost their own calls only; the
    server ends the silent ones itself (`idle_timeout_s`), the reader's when it drops."""
    store = sqlite_store(tmp_path)  # keepalive pings every 60 s: the slow reader stays until it drops
    async with fault_run(services, fault_factory, store, fault_config(), ping_s=60) as run:
        slow, normal = BrowserCaller(), AudioSocketCaller()
        slow.rcvbuf = 4096  # a small receive window: the kernels' buffers are all the slack there is
        vanished: list[Caller] = [AudioSocketCaller(), TwilioCaller(), BrowserCaller()]
        for caller in [slow, normal, *vanished]:
            await caller.connect(run.gw)
        slow_id, normal_id = await call_of(slow, run.gw), await call_of(normal, run.gw)
        vanished_ids = [await call_of(caller, run.gw) for caller in vanished]
        slow.stop_reading()  # talks on, never reads a byte of the bot's voice again
        for caller in vanished:
            await hears_the_bot(caller)
            caller.freeze()
        await talk(normal, lines["agent"])  # meanwhile a whole conversation goes through
        assert await until(lambda: all(i not in run.gw.hub.calls for i in vanished_ids), 30)
        assert slow_id in run.gw.hub.calls  # still talking, so still on: the caller decides
        slow_call = run.gw.hub.calls[slow_id]
        sent_then = slow_call.transport.stats["frames_out"]
        slow.abort()
        assert await until(lambda: slow_id not in run.gw.hub.calls, 30)
        for caller in [slow, normal, *vanished]:
            await caller.close()
    assert_clean(run)
    assert run.ledger.ends[normal_id].startswith("transfer to agent")
    for call_id in vanished_ids:  # nothing came in for `idle_timeout_s`: the server ended them itself
        assert run.ledger.ends[call_id].startswith("line dead")
    assert run.ledger.ends[slow_id] == "caller disconnected"
    assert sent_then > 0


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs, filled to the last byte."""
    try:
        with small_disk(tmp_path / "recordings") as disk:
            fill(disk)
            yield disk
    except Unavailable as exc:
        pytest.skip(str(exc))


@needs_data
async def test_full_recordings_disk_costs_the_audio_not_the_record(
    services: Services, fault_factory: FaultFactory, full_disk: Path, tmp_path: Path
) -> None:
    """ENOSPC on the recordings disk loses the audio (logged, no half-written file), never the record."""
    store = sqlite_store(tmp_path, recordings=full_disk)
    async with fault_run(services, fault_factory, store, fault_config(recordings_dir=full_disk)) as run:
        full = [await short_call(caller, run.gw) for caller in (AudioSocketCaller(), TwilioCaller())]
        (full_disk / "filler").unlink()  # space again: the next call is recorded
        kept = await short_call(BrowserCaller(), run.gw)
        await store.flush()
        records = {i: await asyncio.to_thread(store.get_call, i) for i in [*full, kept]}
        wavs = sorted(p.name for p in full_disk.rglob("*.wav"))
    assert_clean(run)
    failures = [r.getMessage() for r in run.crashes.errors if "no recording for call" in r.getMessage()]
    assert len(failures) == 2 and all("No space left on device" in m for m in failures)
    assert all(r is not None and r.call.end_reason == "caller disconnected" for r in records.values())
    assert [records[i].call.recording for i in full] == [None, None]  # type: ignore[union-attr]
    assert wavs == [f"{kept}.wav"]  # no half-written file of the failed ones is left


@pytest.fixture
def pg_store(postgres: PostgresCluster, tmp_path: Path) -> CallStore:
    return CallStore(postgres.new_database(), spool=tmp_path / "spool.jsonl", retry_s=0.5)


@needs_data
async def test_records_database_outage_mid_call_loses_nothing(
    services: Services,
    fault_factory: FaultFactory,
    lines: dict[str, PCM],
    postgres: PostgresCluster,
    pg_store: CallStore,
    tmp_path: Path,
) -> None:
    """PostgreSQL going away mid-call (and a call starting meanwhile): records wait in the spool and are
    delivered, in order, once it is back; the calls never notice."""
    async with fault_run(services, fault_factory, pg_store, fault_config()) as run:
        early: list[Caller] = [TwilioCaller(), BrowserCaller()]
        for caller in early:
            await caller.connect(run.gw)
            await call_of(caller, run.gw)
        assert await pg_store.flush() == 0  # their start rows are in
        postgres.stop()
        try:
            late = AudioSocketCaller()  # starts while the database is down
            await late.connect(run.gw)
            await call_of(late, run.gw)
            callers = [*early, late]
            await asyncio.gather(*(talk(c, lines["agent"]) for c in callers))
            assert await pg_store.flush() > 0  # turns and ends wait in the spool
            assert (tmp_path / "spool.jsonl").exists()
        finally:
            postgres.start()
        assert await until(lambda: len(pg_store.backlog) == 0, 30, 0.2)  # the writer retries by itself
        for caller in callers:
            await caller.close()
    assert_clean(run)
    assert not (tmp_path / "spool.jsonl").exists()
    assert all(reason.startswith("transfer to agent") for reason in run.ledger.ends.values())
    assert len(run.ledger.ends) == 3


async def test_hung_back_end_cannot_starve_the_event_loops_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Abandoned (timed-out) actions used to sit in the loop's default executor, where NLU parses and call
    recordings run: enough of them and every call went deaf. Now they have their own bounded threads."""
    release = threading.Event()

    def hang(slots: Mapping[str, Any]) -> ActionResult:
        release.wait(10)
        return ActionResult(True)

    monkeypatch.setattr(actions_module, "_running", threading.BoundedSemaphore(12))
    actions = Actions(timeout_s=0.05)
    actions.register("hang", hang)
    try:
        for _ in range(12):
            with pytest.raises(ActionFailed, match="timed out"):
                await actions.call("hang", {})
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42  # the default pool is free
        with pytest.raises(ActionFailed, match="back end busy"):  # bounded: fails at once, no new thread
            await actions.call("hang", {})
    finally:
        release.set()
    assert await until(lambda: not any(t.name == "action-hang" for t in threading.enumerate()), 10)
