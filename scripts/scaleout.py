"""Scale-out, tested: two gateway instances behind nginx sharing one PostgreSQL; one is killed mid-call.

Starts a throwaway PostgreSQL cluster, two `voicebot serve` instances (echo brain) and nginx (the template in
scripts/deploy/nginx.conf), all on loopback and none of them as root. Then:

1. a batch of Twilio Media Streams calls with real speech through nginx: every call completes, every call
   has its record with an end reason, and the records show both instances took calls;
2. another batch; once every call is past its greeting, one instance gets SIGKILL. Its calls see the line
   close and their records are ended by the survivor's reaper ("gateway instance lost"); the survivor's
   calls complete; calls placed after the kill go to the survivor; no record is missing.

Writes docs/results/reliability_scaleout.json and the `scaleout` section of docs/reliability.md; exits 1
if a check fails. tests/test_scaleout.py runs a smaller version in `make test`.

    .venv/bin/python scripts/scaleout.py [--calls 10] [--kill-calls 8] [--after-kill 2] [--short]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import _bench_common as bc
import _scaleout as so
from _calls_client import Caller, CallLog, Line, Script, speech_frames
from sqlalchemy import Engine, create_engine, select

from voicebot.config import TTSConfig
from voicebot.records import LOST_REASON
from voicebot.records.instances import HEARTBEAT_S, LOST_AFTER_S
from voicebot.records.models import CallRow, InstanceRow, utc
from voicebot.testing.pg import throwaway_cluster

ROOT = so.ROOT
LINES = (
    Line("Hi, where is my order?"),
    Line("It's eight three oh one one two."),
    Line("No thanks, goodbye."),
)
SCRIPTS = {"long": Script("order", LINES), "short": Script("order-short", (LINES[0], LINES[2]))}
REAP_WAIT_S = LOST_AFTER_S + 2 * HEARTBEAT_S + 30  # the reaper's worst case, and slack for a busy machine


@dataclass(frozen=True)
class Record:
    call_id: str
    instance: str | None
    status: str
    end_reason: str | None
    turns: int
    duration_s: float | None
    ended_at: float | None  # Unix time


def read_records(engine: Engine) -> dict[str, Record]:
    """Call records by Twilio callSid (what the caller knows its call by)."""
    with engine.connect() as conn:
        rows = conn.execute(select(CallRow)).mappings().all()
    found = {}
    for r in rows:
        ended, started = utc(r["ended_at"]), utc(r["started_at"])
        duration = None if ended is None else round((ended - started).total_seconds(), 1)
        found[str(r["meta"].get("callSid"))] = Record(
            r["id"], r["instance"], r["status"], r["end_reason"], r["turns"], duration,
            None if ended is None else ended.timestamp(),
        )  # fmt: skip
    return found


def instance_ids(engine: Engine) -> dict[int, str]:
    """Heartbeat rows by process id: which instance id each gateway process wrote its calls under."""
    with engine.connect() as conn:
        return {int(pid): str(iid) for iid, pid in conn.execute(select(InstanceRow.id, InstanceRow.pid))}


def clips() -> dict[str, list[str]]:
    """The caller's lines, spoken by the real TTS at 8 kHz, as 20 ms μ-law payloads."""
    from voicebot.tts import make_tts

    tts = make_tts(TTSConfig())
    return {line.text: speech_frames(tts.synthesize_at(line.text, 8_000)) for line in LINES}


def sid(batch: str, i: int) -> str:
    return "CA" + hashlib.md5(f"{batch}-{i}".encode()).hexdigest()


def ended(records: list[Record | None]) -> bool:
    return all(r is not None and r.status == "ended" for r in records)


class Run:
    """The calls placed through nginx and what the records say about them."""

    def __init__(self, nginx: so.Nginx, gws: list[so.Instance], url: str, script: Script) -> None:
        self.url, self.gws, self.script = f"ws://127.0.0.1:{nginx.port}/twilio/stream", gws, script
        self.engine = create_engine(url)
        self.speech: dict[str, list[str]] = {}
        self.logs: dict[str, CallLog] = {}
        self.names: dict[str, str] = {}  # instance id → gw-a / gw-b

    async def start(self) -> None:
        self.speech = await asyncio.to_thread(clips)
        deadline = time.monotonic() + 30
        while len(ids := instance_ids(self.engine)) < len(self.gws) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # each instance's first heartbeat
        self.names = {ids[gw.proc.pid]: gw.name for gw in self.gws if gw.proc.pid in ids}

    async def place(self, batch: str, n: int, stagger_s: float = 1.0) -> list[CallLog]:
        async def one(i: int) -> CallLog:
            await asyncio.sleep(stagger_s * i / max(1, n))
            log = self.logs[sid(batch, i)] = CallLog(i, 0, batch, sid(batch, i))
            return await Caller(self.url, self.script, self.speech, log, f"{batch}-{i}").run()

        async with asyncio.timeout(300):
            return list(await asyncio.gather(*(one(i) for i in range(n))))

    async def records(self, sids: list[str], ready: Any, timeout: float) -> dict[str, Record]:
        """Poll the records until `ready(records of sids)`; returns the last read either way."""
        deadline = time.monotonic() + timeout
        while True:
            records = await asyncio.to_thread(read_records, self.engine)
            if ready([records.get(s) for s in sids]) or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.25)

    def completed(self, log: CallLog) -> bool:
        """The caller said every line and the call ended without a transport error."""
        return log.error is None and len(log.said) == len(self.script.lines)

    def by_instance(self, records: list[Record]) -> dict[str, int]:
        counts = dict.fromkeys(sorted(self.names.values()), 0)
        for r in records:
            name = self.names.get(r.instance or "", str(r.instance))
            counts[name] = counts.get(name, 0) + 1
        return counts


async def batch(run: Run, n: int) -> tuple[dict[str, bool], dict[str, Any]]:
    """Calls spread over both instances: all complete, all recorded with an end reason."""
    logs = await run.place("batch", n)
    sids = [log.call_sid for log in logs]
    records = await run.records(sids, ended, 30)
    mine = [records[s] for s in sids if s in records]
    spread = run.by_instance(mine)
    checks = {
        "batch: every call completed": all(run.completed(log) for log in logs),
        "batch: every call has its record": len(mine) == len(sids),
        "batch: every record ended with a reason": all(r.status == "ended" and r.end_reason for r in mine),
        "batch: both instances took calls": len(run.names) == 2
        and all(spread.get(n) for n in run.names.values()),
    }
    durations = [r.duration_s for r in mine if r.duration_s is not None]
    return checks, {
        "calls": len(sids), "by_instance": spread, "completed": sum(run.completed(log) for log in logs),
        "median_call_s": round(statistics.median(durations), 1) if durations else None,
        "end_reasons": sorted({r.end_reason or "" for r in mine}),
    }  # fmt: skip


async def kill(run: Run, n: int, after_n: int) -> tuple[dict[str, bool], dict[str, Any]]:
    """Calls on both instances; once all are past the greeting, SIGKILL one instance and place more."""
    victim, survivor = run.gws[1], run.gws[0]
    loop = asyncio.get_running_loop()
    running = asyncio.ensure_future(run.place("kill", n))
    sids = [sid("kill", i) for i in range(n)]
    records = await run.records(sids, lambda m: all(r and r.turns >= 1 for r in m), 60)
    victim_id = next((iid for iid, name in run.names.items() if name == victim.name), "?")
    on_victim = [s for s in sids if s in records and records[s].instance == victim_id]
    killed_at, killed_wall = loop.time(), time.time()
    victim.kill()

    async def reaped() -> float:
        await run.records(on_victim, ended, REAP_WAIT_S)
        return round(loop.time() - killed_at, 1)

    reaping = asyncio.ensure_future(reaped())
    after = await run.place("after-kill", after_n) if after_n else []
    kept = [log for log in await running if log.call_sid not in on_victim]
    reaped_s = await reaping
    every = sids + [log.call_sid for log in after]
    records = await run.records(every, ended, REAP_WAIT_S)
    lost = [run.logs[s] for s in on_victim]
    closed = [round(log.closed_at - killed_at, 2) for log in lost if log.closed_at is not None]
    before = [round(killed_wall - (records[s].ended_at or 0), 1) for s in on_victim]

    def own_end(call: str, where: str | None = None) -> bool:
        r = records.get(call)
        ok = r is not None and r.status == "ended" and r.end_reason not in (None, LOST_REASON)
        return ok and (where is None or (r is not None and run.names.get(r.instance or "") == where))

    checks = {
        "kill: calls on both instances at the kill": 0 < len(on_victim) < n,
        "kill: every call has its record": all(s in records for s in every),
        "kill: the killed instance's calls saw the line close": len(closed) == len(lost)
        and min(closed, default=0) >= 0,
        "kill: their records were ended as lost": all(
            records[s].end_reason == LOST_REASON for s in on_victim
        ),
        "kill: they keep the turns written before the kill": all(records[s].turns >= 1 for s in on_victim),
        "kill: the survivor's calls completed": all(run.completed(log) for log in kept),
        "kill: the survivor's records ended with their own reason": all(
            own_end(log.call_sid) for log in kept
        ),
        "kill: calls placed after it went to the survivor and completed": all(
            run.completed(log) and own_end(log.call_sid, survivor.name) for log in after
        ),
    }
    lines = survivor.log_tail(400).splitlines()
    return checks, {
        "calls": n, "on_killed_instance": len(on_victim), "on_survivor": len(kept),
        "after_kill_calls": len(after),
        "after_kill_completed": sum(run.completed(log) for log in after), "client_close_after_kill_s": closed,
        "lost_records_ended_after_kill_s": reaped_s, "lost_ended_at_before_kill_s": before,
        "lost_reason": LOST_REASON, "survivor_log": [ln for ln in lines if "instance" in ln and "lost" in ln],
        "records": {s: asdict(records[s]) for s in every if s in records},
    }  # fmt: skip


async def scenario(
    args: argparse.Namespace, nginx: so.Nginx, gws: list[so.Instance], url: str
) -> dict[str, Any]:
    run = Run(nginx, gws, url, SCRIPTS["short" if args.short else "long"])
    try:
        await run.start()
        checks = {"both instances beat": len(run.names) == 2}
        batch_checks, batch_out = await batch(run, args.calls)
        kill_checks, kill_out = await kill(run, args.kill_calls, args.after_kill)
    finally:
        run.engine.dispose()
    return {
        "instances": {name: iid for iid, name in run.names.items()},
        "script": [ln.text for ln in run.script.lines],
        "batch": batch_out, "kill": kill_out, "checks": checks | batch_checks | kill_checks,
    }  # fmt: skip


def uid_report(nginx: so.Nginx, gws: list[so.Instance]) -> dict[str, list[int]]:
    found = {f"nginx pid {pid}": so.uids(pid) for pid in nginx.pids()}
    return found | {f"{gw.name} pid {gw.proc.pid}": so.uids(gw.proc.pid) for gw in gws}


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="voicebot-scaleout-"))
    gws: list[so.Instance] = []
    nginx: so.Nginx | None = None
    try:
        with throwaway_cluster() as cluster:
            try:
                user = so.run_as(work, args.user)
                url = cluster.url()
                started = time.monotonic()
                for name in ("gw-a", "gw-b"):
                    gws.append(so.Instance(name, work, user, url))
                nginx = so.Nginx(work, user, [gw.port for gw in gws])
                so.wait_healthy(gws)
                startup_s = round(time.monotonic() - started, 1)
                uids = uid_report(nginx, gws)
                result = asyncio.run(scenario(args, nginx, gws, url))
                result["checks"]["no process runs as root"] = all(0 not in ids for ids in uids.values())
                gws[0].stop()
                engine = create_engine(url)
                result["checks"]["a clean stop leaves no instance row"] = instance_ids(engine) == {}
                engine.dispose()
                result |= {"user": user.name, "uids": uids, "startup_s": startup_s,
                           "heartbeat_s": HEARTBEAT_S, "lost_after_s": LOST_AFTER_S}  # fmt: skip
                return result
            finally:  # before the database goes
                for gw in gws:
                    gw.stop()
                if nginx is not None:
                    nginx.stop()
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


SETUP = """Two `voicebot serve` instances (echo brain) behind nginx share one PostgreSQL for call records;
nginx, the instances and PostgreSQL run on loopback as unprivileged users (`{user}`, `postgres`; checked in
/proc). nginx uses `scripts/deploy/nginx.conf` with `least_conn`: a call is one long WebSocket, so fewest
connections is fewest calls, and stickiness is pointless (a call never spans two connections). Callers are
Twilio Media Streams peers with real TTS speech paced in real time, {lines} lines a call, the last one
"goodbye" (the bot hangs up)."""
DESIGN = """A SIGKILLed instance cannot write its calls' ends. Every instance stamps its calls with its
instance id and writes a heartbeat row every {beat:g} s; on each beat it ends the active calls of instances
not heard from for {lost_after:g} s, with reason "{reason}" and the time they were last heard of
(`voicebot/records/instances.py`). Raw figures: `docs/results/reliability_scaleout.json`."""


def report(result: dict[str, Any], command: str, machine: str) -> str:
    batch, kill = result["batch"], result["kill"]
    closes, before = kill["client_close_after_kill_s"], kill["lost_ended_at_before_kill_s"]
    beat, lost_after = result["heartbeat_s"], result["lost_after_s"]
    spread = ", ".join(f"{name}: {count}" for name, count in batch["by_instance"].items())
    figures = [
        ("start-up, both instances healthy", f"{result['startup_s']} s"),
        ("batch: calls (by instance)", f"{batch['calls']} ({spread})"),
        ("batch: completed / records ended with a reason", f"{batch['completed']} / {batch['calls']}"),
        ("batch: median call length (records)", f"{batch['median_call_s']} s"),
        ("kill batch: calls on the killed / surviving instance",
         f"{kill['on_killed_instance']} / {kill['on_survivor']}"),
        ("killed calls: the caller's line closed",
         f"{min(closes, default=0)}–{max(closes, default=0)} s after"),
        (f"killed calls: records ended by the survivor (beat {beat:g} s, lost after {lost_after:g} s)",
         f"{kill['lost_records_ended_after_kill_s']} s after"),
        ("killed calls: recorded end = last heartbeat",
         f"{min(before, default=0)}–{max(before, default=0)} s before the kill"),
        ("calls placed after the kill: went to the survivor and completed",
         f"{kill['after_kill_completed']} / {kill['after_kill_calls']}"),
    ]  # fmt: skip
    rows = [f"| {name} | {value} |" for name, value in figures]
    checks = [f"| {name} | {'yes' if ok else '**NO**'} |" for name, ok in result["checks"].items()]
    return "\n".join([
        "## Scale-out: two instances behind nginx, one killed mid-call", "", f"`{command}`", "", machine, "",
        SETUP.format(user=result["user"], lines=len(result["script"])), "",
        "| | figure |", "|---|---|", *rows, "", "| check | passed |", "|---|---|", *checks, "",
        DESIGN.format(beat=beat, lost_after=lost_after, reason=kill["lost_reason"]),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10, help="calls in the first batch")
    parser.add_argument("--kill-calls", type=int, default=8, help="calls in the batch with the kill")
    parser.add_argument("--after-kill", type=int, default=2, help="calls placed right after the kill")
    parser.add_argument("--short", action="store_true", help="two caller lines a call instead of three")
    parser.add_argument("--user", default="nobody", help="who runs nginx and the gateways when we are root")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "results" / "reliability_scaleout.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--no-doc", action="store_true", help="write only the JSON (the test's mode)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, nginx config)")
    args = parser.parse_args()
    info = bc.machine_info()
    result = run(args)
    machine = bc.machine_line(info)
    command = "python scripts/scaleout.py " + " ".join(sys.argv[1:])
    result |= {
        "command": command.strip(),
        "machine": info,
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    result["ok"] = all(result["checks"].values())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not args.no_doc:
        bc.write_section(args.doc, "scaleout", report(result, command.strip(), machine))
    for name, ok in result["checks"].items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
