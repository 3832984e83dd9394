"""Faults (issue 7): the gateway under abrupt disconnects, slow and half-open lines, a hung or broken back
end, a full recordings disk and a records-database outage; counts crashes, leaks and lost call records.

    nice -n 10 .venv/bin/python scripts/faults_gateway.py                  # the full run, all ten protocols
    nice -n 10 .venv/bin/python scripts/faults_gateway.py --disconnects 7 --per-fault 1 --no-write \
        --protocols telnyx genesys                                            # a smoke run

Everything is real and in one process: the gateway app on loopback with the real models and the shop's
dialogue engine (its quick NLU model) on a back end whose `order_status` hangs or raises for two order
numbers (voicebot/testing/faults/domain.py), callers over every protocol of `--protocols`
(voicebot/testing/faults/lines.py: AudioSocket, Twilio Media Streams, the browser WebSocket and the seven
carriers' peers), a 256 KiB tmpfs as the full disk and a throwaway PostgreSQL cluster stopped mid-call
(voicebot/testing/faults/env.py). The wire faults (disconnects, back end, slow and half-open lines) run
once per protocol, each on a gateway of its own, so every figure belongs to one protocol; the storage faults
run once with the protocols' callers in turn. Each run counts crashes (tracebacks logged, exceptions no
task, callback or thread handled), leaked tasks and file descriptors (before/after, after a settle loop),
calls left running and started calls without a stored record and end reason. Results:
docs/results/reliability_faults.json and the `faults` section of docs/reliability.md
(scripts/_faults_report.py).
`tests/test_faults.py` is the fast version (in `make test`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_common as bc
from _faults_report import WIRE, report

from voicebot.config import VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.faults.callers import until
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
    frozen,
    gone,
    hears_the_bot,
    press_and_wait,
    short_call,
    small_disk,
    talk,
)
from voicebot.testing.faults.lines import PROTOCOLS, mixed_callers
from voicebot.testing.faults.plans import POINTS, fault_run, make_plans, run_plans
from voicebot.testing.pg import Unavailable, throwaway_cluster

ROOT = Path(__file__).resolve().parent.parent

DOC = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "docs" / "results" / "reliability_faults.json"


@dataclass
class Ctx:
    services: Services
    factory: FaultFactory
    gate: FaultGate
    lines: dict[str, PCM]
    folder: Path

    def store(self, name: str, recordings: Path | None = None) -> CallStore:
        """A fresh SQLite store (a folder of its own: each protocol's runs have their own)."""
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))
        return CallStore(f"sqlite:///{folder / 'calls.sqlite'}", recordings, folder / "spool.jsonl")


# --- the parts -----------------------------------------------------------------------------------------


async def disconnects(
    ctx: Ctx, count: int, seed: int, concurrency: int, protocols: Sequence[str]
) -> dict[str, Any]:
    plans = make_plans(count, seed, protocols=protocols)
    async with fault_run(ctx.services, ctx.factory, ctx.store("disconnects"), fault_config()) as run:
        outcomes = await run_plans(plans, run.gw, ctx.lines, ctx.gate, concurrency)
    points = {p: [o for o in outcomes if o.plan.point == p] for p in POINTS}
    return run.figures(
        len(plans),
        seed=seed,
        concurrency=concurrency,
        by_point={p: {"tried": len(v), "reached": sum(o.reached for o in v)} for p, v in points.items()},
        by_protocol=dict(Counter(o.plan.protocol for o in outcomes)),
        vanished=sum(o.plan.how == "vanish" for o in outcomes),
        not_ended=sum(not o.ended for o in outcomes),
        harness_errors=[f"{o.plan.label()}: {o.error}" for o in outcomes if o.error],
    )


async def back_end(ctx: Ctx, per_fault: int, protocols: Sequence[str]) -> dict[str, Any]:
    """`per_fault` callers each reach a hung and a raising `order_status` (by keypad) while one per protocol
    asks for a person; everyone stays on the line. The hung threads stay hung until the end (60 s)."""
    ctx.gate.hang_s = 60.0
    faulty, normal = mixed_callers(2 * per_fault, protocols), mixed_callers(len(protocols), protocols)
    said = [("hang" if n % 2 else "fail") for n in range(len(faulty))] + ["agent"] * len(normal)
    async with fault_run(ctx.services, ctx.factory, ctx.store("back_end"), fault_config()) as run:
        for caller in [*faulty, *normal]:
            await caller.connect(run.gw)
        ids = [await call_of(caller, run.gw) for caller in [*faulty, *normal]]
        keys = {"hang": "1" + HANG_ORDER, "fail": "1" + FAIL_ORDER}  # keypad: track an order, its number
        await asyncio.gather(*(press_and_wait(c, keys[k]) for c, k in zip(faulty, said, strict=False)),
                             *(talk(c, ctx.lines["agent"]) for c in normal))  # fmt: skip
        hung_meanwhile = ctx.gate.running
        ctx.gate.release.set()
        threads_back = await until(lambda: ctx.gate.running == 0, 10)
        for caller in [*faulty, *normal]:
            await caller.close()
    ctx.gate.release.clear()
    ctx.gate.hang_s = 8.0
    pairs = list(zip([run.ledger.ends.get(i, "") for i in ids], said, strict=True))
    expected = {
        "hang": f"transfer to agent: back end error: order_status: timed out after {ACTION_TIMEOUT_S:g}s",
        "fail": "transfer to agent: back end error: order_status: raised ConnectionResetError",
        "agent": "transfer to agent",
    }
    return run.figures(
        len(ids),
        apology_and_transfer={
            k: sum(e.startswith(expected[k]) for e, s in pairs if s == k) for k in expected
        },
        asked={k: said.count(k) for k in expected},
        back_end_threads_hung_at_the_end=hung_meanwhile,
        hung_threads_returned_after_release=threads_back,
    )


async def slow_and_half_open(ctx: Ctx, protocols: Sequence[str]) -> dict[str, Any]:
    """One slow reader (4 KiB window, never reads) and one half-open line per protocol, while a caller per
    protocol has a whole conversation."""
    slow, vanished, normal = (mixed_callers(len(protocols), protocols) for _ in range(3))
    store = ctx.store("slow")  # keepalive pings every 60 s: the slow readers stay until they drop
    async with fault_run(ctx.services, ctx.factory, store, fault_config(), ping_s=60) as run:
        for caller in slow:
            caller.rcvbuf = 4096
        for caller in [*slow, *vanished, *normal]:
            await caller.connect(run.gw)
        slow_ids = [await call_of(c, run.gw) for c in slow]
        vanished_ids = [await call_of(c, run.gw) for c in vanished]
        normal_ids = [await call_of(c, run.gw) for c in normal]
        for caller in slow:
            caller.stop_reading()
        for caller in vanished:
            await hears_the_bot(caller)
            caller.freeze()
        await asyncio.gather(*(talk(c, ctx.lines["agent"]) for c in normal))
        await asyncio.gather(*(gone(i, run.gw) for i in vanished_ids))
        on = [run.gw.hub.calls[i] for i in slow_ids if i in run.gw.hub.calls]  # talking, so still on
        handed = [int(call.transport.stats["frames_out"]) for call in on]
        for caller in slow:
            caller.abort()
        await asyncio.gather(*(gone(i, run.gw) for i in slow_ids))
        for caller in [*slow, *vanished, *normal]:
            await caller.close()
    reason = run.ledger.ends.get
    return run.figures(
        3 * len(protocols),
        normal_completed=sum(reason(i, "").startswith("transfer to agent") for i in normal_ids),
        half_open_ended_by_the_server=sum(reason(i, "").startswith("line dead") for i in vanished_ids),
        slow_readers_still_on_while_talking=len(on),
        slow_reader_frames_sent_to_socket=handed,
        slow_readers_ended_on_drop=sum(reason(i) == "caller disconnected" for i in slow_ids),
    )


async def full_disk(ctx: Ctx, protocols: Sequence[str]) -> dict[str, Any]:
    """Six calls recorded onto a full 256 KiB tmpfs, then one more after space is freed."""
    try:
        with small_disk(ctx.folder / "recordings") as disk:
            filler = fill(disk)
            store = ctx.store("disk", recordings=disk)
            async with fault_run(ctx.services, ctx.factory, store, fault_config(recordings_dir=disk)) as run:
                full = await asyncio.gather(*(short_call(c, run.gw) for c in mixed_callers(6, protocols)))
                filler.unlink()
                kept = await short_call(mixed_callers(7, protocols)[6], run.gw)
                await store.flush()
                details = [await asyncio.to_thread(store.get_call, i) for i in [*full, kept]]
                wavs = sorted(p.stem for p in disk.rglob("*.wav"))
    except Unavailable as exc:
        return {"skipped": str(exc)}
    failed = [r for r in run.crashes.errors if "no recording for call" in r.getMessage()]
    return run.figures(
        7,
        recordings_failed_and_logged=len(failed),
        records_without_recording=sum(d is not None and d.call.recording is None for d in details[:-1]),
        records_with_end_reason=sum(d is not None and bool(d.call.end_reason) for d in details),
        partial_files_left=len([w for w in wavs if w != kept]),
        recorded_after_space_freed=wavs == [kept],
    )


async def db_outage(ctx: Ctx, outage_s: float, protocols: Sequence[str]) -> dict[str, Any]:
    """Three calls start, PostgreSQL stops, three more start, all six talk and end, the database stays away
    `outage_s` longer and comes back: the store must deliver what it spooled. Then it hangs (SIGSTOP) while
    three more calls run, for `outage_s` after they end: the records wait, then arrive."""
    try:
        with throwaway_cluster() as pg:
            spool = ctx.folder / "pg-spool.jsonl"
            store = CallStore(pg.new_database(), spool=spool, retry_s=0.5)
            async with fault_run(ctx.services, ctx.factory, store, fault_config()) as run:
                early, late, stalled = (mixed_callers(3, protocols) for _ in range(3))
                for caller in early:
                    await caller.connect(run.gw)
                    await call_of(caller, run.gw)
                await store.flush()
                pg.stop()
                down = time.monotonic()
                for caller in late:
                    await caller.connect(run.gw)
                    await call_of(caller, run.gw)
                await asyncio.gather(*(talk(c, ctx.lines["agent"]) for c in [*early, *late]))
                spooled = await store.flush()
                await asyncio.sleep(outage_s)
                pg.start()
                outage = time.monotonic() - down
                delivered = await until(lambda: len(store.backlog) == 0, 60, 0.2)
                with frozen(pg):
                    for caller in stalled:
                        await caller.connect(run.gw)
                        await call_of(caller, run.gw)
                    await asyncio.gather(*(talk(c, ctx.lines["agent"]) for c in stalled))
                    flushed = asyncio.ensure_future(store.flush())
                    await asyncio.sleep(outage_s)
                    waited = not flushed.done()
                left_after_thaw = await asyncio.wait_for(flushed, 60)
                for caller in [*early, *late, *stalled]:
                    await caller.close()
    except Unavailable as exc:
        return {"skipped": str(exc)}
    return run.figures(
        9,
        outage_s=round(outage, 1),
        ops_spooled=spooled,
        spool_delivered=delivered,
        spool_file_left=spool.exists(),
        frozen_writes_waited=waited,
        frozen_writes_left_after_thaw=left_after_thaw,
        completed=sum(r.startswith("transfer to agent") for r in run.ledger.ends.values()),
    )


async def timed(name: str, step: Awaitable[dict[str, Any]], gate: FaultGate) -> dict[str, Any]:
    """A part's figures and wall time; a part that fails (a harness timeout, say) is recorded as failed and
    the campaign goes on with the next (its hung back-end threads released first)."""
    started = time.perf_counter()
    try:
        part = await step
    except Exception as exc:
        part = {"failed": f"{type(exc).__name__}: {exc}"}
        gate.release.set()
        await until(lambda: gate.running == 0, 15)
        gate.release.clear()
        gate.hang_s = 8.0
    part |= {"wall_s": round(time.perf_counter() - started, 1)}
    print(name, json.dumps(part, default=str), flush=True)
    return part


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """The wire faults once per protocol (a gateway each), then the storage faults over them all."""
    services = Services.load(VoicebotConfig())
    folder = Path(tempfile.mkdtemp(prefix="voicebot-faults-"))
    gate = FaultGate(hang_s=8.0)
    ctx = Ctx(services, FaultFactory(folder, shop_nlu(services), services.config.cache_dir, gate), gate,
              phrases(services), folder)  # fmt: skip
    steps: dict[str, Callable[[Sequence[str]], Awaitable[dict[str, Any]]]] = {
        "disconnects": lambda on: disconnects(ctx, args.disconnects, args.seed, args.concurrency, on),
        "back_end": lambda on: back_end(ctx, args.per_fault, on),
        "slow_and_half_open": lambda on: slow_and_half_open(ctx, on),
        "full_disk": lambda on: full_disk(ctx, on),
        "db_outage": lambda on: db_outage(ctx, args.outage_s, on),
    }
    parts: dict[str, Any] = {"by_protocol": {}}
    try:
        for protocol in args.protocols:
            runs: dict[str, dict[str, Any]] = {}
            parts["by_protocol"][protocol] = runs
            for name in WIRE:
                runs[name] = await timed(f"{protocol} {name}", steps[name]([protocol]), gate)
        for name in [n for n in steps if n not in WIRE]:
            parts[name] = await timed(name, steps[name](args.protocols), gate)
    finally:
        gate.release.set()
        services.close()
    return parts


def failures(parts: dict[str, Any]) -> list[str]:
    runs = [(f"{p} {n}", r) for p, rs in parts["by_protocol"].items() for n, r in rs.items()]
    runs += [(n, r) for n, r in parts.items() if n != "by_protocol"]
    return [f"{name}: {r['failed']}" for name, r in runs if "failed" in r]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--disconnects", type=int, default=35, help="disconnect plans per protocol")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=12, help="disconnect calls at once")
    parser.add_argument("--per-fault", type=int, default=2, help="callers per back-end fault and protocol")
    parser.add_argument("--outage-s", type=float, default=5.0, help="database down after the calls end")
    lines = "the lines to fault (default: all, the gateway's own and the carriers')"
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS, help=lines)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args()
    info = bc.machine_info()
    parts = asyncio.run(main(args))
    command = "nice -n 10 .venv/bin/python scripts/faults_gateway.py" + (
        "" if sys.argv[1:] == [] else " " + " ".join(a for a in sys.argv[1:] if a != "--no-write")
    )
    machine = bc.machine_line(info)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"command": command, "machine": info, "parts": parts}, indent=2,
                                      default=str) + "\n")  # fmt: skip
        bc.write_section(DOC, "faults", report(parts, command, machine))
    print(report(parts, command, machine))
    sys.exit(1 if failures(parts) else 0)
