"""Soak: N simulated Twilio callers looping shop conversations against one `voicebot serve` for a long time.

    nice -n 10 .venv/bin/python scripts/soak_calls.py --minutes 4 --calls 2 --window-min 1   # a short check
    .venv/bin/python scripts/soak_calls.py                  # the soak: 60 min at 8 calls (not for CI)

A leak (memory, file descriptors, threads) or a slow drift in latency only shows after many calls on one
process, so one server (scripts/_calls_server) stays up while exactly N callers (scripts/_calls_client) each
play a shop conversation, hang up and dial the next at once, until the time is up; calls running then finish.
Every `--sample-s` the server's process tree is sampled (RSS, open fds, threads, CPU) and its C heap
(`voicebot_heap_bytes` from /metrics: a leak moves `in_use`, fragmentation `free`). Results: the `soak`
section of docs/reliability.md, docs/results/soak_{samples,turns}.csv and reliability_soak.json, and
docs/img/soak_*.png. Criteria: RSS and fds slopes after the warm-up within the limits (the 95 % interval
too), error count 0, and latency p50/p95/p99 of the last window within the tolerance of the first window's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _bench_common as bc
import numpy as np
from _calls_client import SCRIPTS, Caller, CallLog, turn_rows, underruns
from _calls_server import Server, add_server_args, free_port, join, lag_counts, server_turns
from _soak_plots import plots
from bench_calls import _no_nan, _spread, caller_clips
from scipy import stats  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
MB = 1e6
QS = ("p50", "p95", "p99")
FITTED = (
    ("rss", "rss_mb"),
    ("anon", "anon_mb"),
    ("file", "file_mb"),
    ("heap_in_use", "heap_in_use_mb"),
    ("heap_free", "heap_free_mb"),
    ("fds", "fds"),
    ("threads", "threads"),
)  # (analysis key, sample column)
RES = tuple(col for _, col in FITTED)
ERROR_MARKS = (" ERROR ", " CRITICAL ", "ERROR:", "CRITICAL:", "Traceback")


# --- the run ------------------------------------------------------------------------------------------


class Soak:
    """Callers looping until `stop`, and the server sampled meanwhile; times in s since `t0` (Unix time)."""

    def __init__(self, server: Server, args: argparse.Namespace, clips: dict[str, list[str]]) -> None:
        self.server, self.args, self.clips = server, args, clips
        self.url = f"ws://127.0.0.1:{server.port}/twilio/stream"
        self.stop = asyncio.Event()
        self.t0 = time.time()
        self.stopped_at: float | None = None  # when the load ended (s since t0)
        self.rows: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.active = 0
        self.server_died = False
        self.idle_fds: list[dict[str, int]] = []
        self.loop_lag: dict[str, float] = {}

    def now(self) -> float:
        return time.time() - self.t0

    async def caller(self, i: int) -> None:
        """Caller i: conversation after conversation (each of the four in turn), until `stop`."""
        await asyncio.sleep(random.Random(f"{self.args.seed}-{i}").uniform(0.0, 2.0))
        r = 0
        while not self.stop.is_set():
            tag = f"{self.args.seed}-soak-{i}-{r}"
            script = SCRIPTS[(i + r) % len(SCRIPTS)]
            log = CallLog(i, r, script.name, "CA" + hashlib.md5(tag.encode()).hexdigest())
            self.active += 1
            start = self.now()
            log = await Caller(self.url, script, self.clips, log, tag + "-pauses").run()
            self.active -= 1
            try:
                self.record(log, start)
            except Exception as exc:  # one odd call log must not end an hour's run: it is an error
                log.error = log.error or f"measuring the call failed: {type(exc).__name__}: {exc}"[:200]
                self.calls.append({"call_sid": log.call_sid, "error": log.error, "ended_by": log.ended_by})
            r += 1
            if log.error:  # a refused line is not redialled in a tight loop
                await asyncio.sleep(1.0)

    def record(self, log: CallLog, start: float) -> None:
        """Keep the call's measures, not its frame log: the load generator's memory stays flat too."""
        self.rows += [row | {"call_start_s": round(start, 3)} for row in turn_rows(log, self.t0 - log.wall0)]
        keep = ("caller", "round", "script", "call_sid", "ended_by", "close", "error", "bad_media")
        late = round(1000 * bc.pct(log.lateness, 99), 1)  # did the load generator keep real time?
        call = {k: getattr(log, k) for k in keep} | {"late_p99_ms": late}
        self.calls.append(call | {"start_s": round(start, 3), "end_s": round(self.now(), 3)})

    async def sample(self) -> None:
        heap = await asyncio.to_thread(self.server.heap)  # over HTTP: off this loop, which paces the callers
        cpu, rss = self.server.usage()
        kinds = self.server.memory_kinds()
        fds = threads = 0
        for p in [self.server.psutil, *self.server.psutil.children(recursive=True)]:
            with contextlib.suppress(Exception):  # a child that just exited
                fds, threads = fds + p.num_fds(), threads + p.num_threads()
        self.samples.append({"t_s": round(self.now(), 2), "rss_mb": round(rss / MB, 2),
                             "anon_mb": round(kinds["anon"] / MB, 2), "file_mb": round(kinds["file"] / MB, 2),
                             "heap_in_use_mb": round(heap.get("in_use", math.nan) / MB, 2),
                             "heap_free_mb": round(heap.get("free", math.nan) / MB, 2),
                             "fds": fds,
                             "threads": threads, "cpu_s": round(cpu, 2), "active_calls": self.active,
                             "calls_done": len(self.calls),
                             "client_rss_mb": round(bc.proc_memory_mb()["VmRSS"], 1)})  # fmt: skip

    def fd_kinds(self) -> dict[str, int]:
        """The server tree's open fds by kind (socket, pipe, anon inode, or the file's path)."""
        kinds: Counter[str] = Counter()
        for p in [self.server.psutil, *self.server.psutil.children(recursive=True)]:
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{p.pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        kinds[re.sub(r"\[\d+\]$", "", os.readlink(fd))] += 1
        return dict(sorted(kinds.items()))

    async def run(self) -> None:
        """Between an idle fd census before the first call and one after the last, so a leak shows as a
        difference even where the sampled counts are noisy."""
        self.idle_fds = [self.fd_kinds()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.args.minutes * 60
        callers = asyncio.gather(*(self.caller(i) for i in range(self.args.calls)))
        tick = loop.time() + self.args.sample_s
        while True:
            await self.sample()
            if callers.done():
                break
            if not self.stop.is_set() and (loop.time() >= deadline or self.server.proc.poll() is not None):
                self.server_died = self.server.proc.poll() is not None
                self.stopped_at = self.now()
                self.stop.set()
            while tick <= loop.time():
                tick += self.args.sample_s
            wake = tick if self.stop.is_set() else min(tick, deadline)
            await asyncio.wait([callers], timeout=max(0.0, wake - loop.time()))
        callers.result()
        self.loop_lag = await asyncio.to_thread(self.server.loop_lag)
        self.idle_fds.append(self.fd_kinds())


# --- numbers ------------------------------------------------------------------------------------------


def fit(t_s: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares slope per hour with its 95 % interval (t distribution), over the samples given."""
    if t_s.size < 3 or np.ptp(t_s) == 0:
        return {"slope_per_h": float("nan"), "ci95": float("nan"), "n": int(t_s.size)}
    res = stats.linregress(t_s / 3600, y)
    half = 0.0 if np.ptp(y) == 0 else float(stats.t.ppf(0.975, t_s.size - 2) * res.stderr)
    return {"slope_per_h": float(res.slope), "ci95": half, "intercept": float(res.intercept),
            "n": int(t_s.size)}  # fmt: skip


def analyse(soak: Soak, args: argparse.Namespace) -> dict[str, Any]:
    load_s = soak.stopped_at if soak.stopped_at is not None else soak.now()
    window = args.window_min * 60 if args.window_min else min(600.0, load_s / 6)
    warmup = args.warmup_min * 60 if args.warmup_min is not None else window
    s = soak.samples
    t = np.asarray([x["t_s"] for x in s])
    steady = (t >= warmup) & (t <= load_s)
    lines = [r for r in soak.rows if r["line"] >= 0]

    def v2v(lo: float, hi: float) -> dict[str, float]:
        return _spread([r["v2v_ms"] for r in lines if "v2v_ms" in r and lo <= r["speech_end_s"] < hi])

    first, last = v2v(0.0, window), v2v(load_s - window, load_s)
    reasons = {r["call_sid"]: r.get("end_reason") for r in soak.rows if r["line"] < 0}
    greeted = {r["call_sid"] for r in soak.rows if r["line"] < 0 and "first_audio_ms" in r}
    calls, log = soak.calls, soak.server.log_path.read_text(errors="replace").splitlines()
    sids = [c["call_sid"] for c in calls if not c["error"]]  # a failed call is counted once, as failed
    errors = {
        "calls failed (client error)": [c["error"] for c in calls if c["error"]],
        "calls closed abnormally (not by the bot with 1000)": [
            f"{c['call_sid']}: ended by {c['ended_by']}, close {c['close'] or 'none'}" for c in calls
            if not c["error"] and (c["ended_by"] != "bot" or c["close"][:4] != "1000")],
        "calls with no server record": [sid for sid in sids if reasons.get(sid) is None],
        "calls with no greeting audio": [sid for sid in sids if sid not in greeted],
        "caller lines with no reply": [
            f"{r['call_sid']} line {r['line']} ({'over a barge-in' if r['bot_speaking'] else 'silence'})"
            for r in lines if "v2v_ms" not in r],
        "server log errors/tracebacks": [ln for ln in log if any(m in ln for m in ERROR_MARKS)],
        "server process exited": ["the server died during the run"] if soak.server_died else [],
    }  # fmt: skip
    cpu = np.asarray([x["cpu_s"] for x in s])
    warned = [ln for ln in soak.server.problems() if "WARNING" in ln]
    return {
        "load_s": round(load_s, 1), "total_s": round(float(t[-1]), 1), "window_s": round(window, 1),
        "warmup_s": round(warmup, 1), "calls": len(soak.calls), "turns": len(lines),
        **{key: fit(t[steady], np.asarray([x[col] for x in s], dtype=float)[steady]) for key, col in FITTED},
        "range": {k: [min(x[k] for x in s), max(x[k] for x in s)] for k in RES},
        "at": {k: {"warmup_end": _at(s, warmup, k), "load_end": _at(s, load_s, k)} for k in RES},
        "idle_fds": {"before": soak.idle_fds[0], "after": soak.idle_fds[-1]},
        "server_cpu_pct": round(100 * float(cpu[-1] - cpu[0]) / max(float(t[-1] - t[0]), 1e-9), 1),
        "v2v_first": first, "v2v_last": last, "v2v_all": v2v(0.0, float("inf")),
        "errors": {k: len(v) for k, v in errors.items()}, "error_count": sum(len(v) for v in errors.values()),
        "error_examples": {k: sorted(set(v))[:5] for k, v in errors.items() if v},
        "warnings": len(warned), "warning_examples": sorted({w.split(": ", 1)[-1][:160] for w in warned})[:5],
        "end_reasons": dict(Counter(str(r.get("end_reason")) for r in soak.rows if r["line"] < 0)),
        "barge_ins": sum(bool(r.get("bot_speaking")) for r in lines),
        **underruns(soak.rows),
        "loop_lag": soak.loop_lag,
        "matched_turns": sum("transcript" in r for r in lines),
        "client_late_p99_ms": _spread([c["late_p99_ms"] for c in calls if "late_p99_ms" in c]),
    }  # fmt: skip


def _at(samples: list[dict[str, Any]], t: float, key: str) -> float:
    """The sample nearest time t."""
    return float(min(samples, key=lambda x: abs(x["t_s"] - t))[key])


def criteria(a: dict[str, Any], args: argparse.Namespace) -> list[list[str]]:
    """met: shown within the limit; MISSED: the measure is over it; not shown: within it but its 95 %
    interval is not (the run was too short or too noisy to tell)."""
    rows = []
    flat = (("rss", "RSS", "MB", args.rss_flat), ("fds", "open fds", "fds", args.fds_flat))
    for key, name, unit, limit in flat:
        f = a[key]
        slope, half = f["slope_per_h"], f["ci95"]
        status = "**MISSED**" if abs(slope) > limit else "**met**"
        if slope != slope:
            status = "**not shown** (too few samples after the warm-up)"
        elif abs(slope) <= limit < abs(slope) + half:
            status = "**not shown** (its 95 % interval reaches past the limit)"
        what = f"server {name} flat after warm-up: slope within ±{limit:g} {unit}/h"
        rows.append([what, f"{_slope(f)} {unit}/h (95 %, {f['n']} samples)", status])
    rows.append(["error count 0", str(a["error_count"]), bc.met(a["error_count"] == 0)])
    first, last = a["v2v_first"], a["v2v_last"]
    for q in QS:
        both = first["n"] > 0 and last["n"] > 0
        change = f"{100 * (last[q] / first[q] - 1):+.1f} %; " if both else ""
        ok = bc.met(last[q] <= first[q] * (1 + args.latency_tol)) if both else "**not shown** (no turns)"
        rows.append([f"voice-to-voice {q} no worse: last window ≤ first × {1 + args.latency_tol:g}",
                     f"{bc.fmt(first[q], 0)} → {bc.fmt(last[q], 0)} ms ({change}n = {first['n']} → "
                     f"{last['n']})", ok])  # fmt: skip
    return rows


# --- report -------------------------------------------------------------------------------------------


def _slope(f: dict[str, float]) -> str:
    return f"{bc.fmt(f['slope_per_h'], 2)} ± {bc.fmt(f['ci95'], 2)}"


def _code(text: str) -> str:
    """A log line as inline code that cannot break the Markdown table it sits in."""
    return "`" + text[:140].replace("`", "'").replace("|", "\\|") + "`"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.2f} min ({seconds:.0f} s)"


def idle(census: dict[str, dict[str, int]]) -> str:
    """Idle fd counts before the first call and after the last, and which kinds changed."""
    before, after = census["before"], census["after"]
    changed = [f"{k}: {before.get(k, 0)} → {after.get(k, 0)}" for k in sorted(before.keys() | after.keys())
               if before.get(k, 0) != after.get(k, 0)]  # fmt: skip
    diff = "; ".join(_code(c) for c in changed) if changed else "no kind changed"
    return f"{sum(before.values())} before the first call → {sum(after.values())} after the last ({diff})"


def resources(a: dict[str, Any]) -> list[list[str]]:
    rows = []
    kinds = (("server RSS (MB)", "rss", "rss_mb", 1), ("… of it anonymous: heap (MB)", "anon", "anon_mb", 1),
             ("… of it file-backed: libraries, models (MB)", "file", "file_mb", 1),
             ("C heap in use by live allocations (MB)", "heap_in_use", "heap_in_use_mb", 1),
             ("C heap free, held by malloc for reuse (MB)", "heap_free", "heap_free_mb", 1),
             ("open fds", "fds", "fds", 0), ("threads", "threads", "threads", 0))  # fmt: skip
    for name, key, col, digits in kinds:
        at = a["at"][col]
        lo, hi = a["range"][col]
        ends = f"{at['warmup_end']:.{digits}f} → {at['load_end']:.{digits}f}"
        rows.append([name, _slope(a[key]), ends, f"{lo:.{digits}f} – {hi:.{digits}f}"])
    return rows


def report(cmd: str, machine: str, a: dict[str, Any], args: argparse.Namespace) -> str:
    short = " — shorter than the issue's 1 hour at 8 calls" if a["load_s"] < 3600 or args.calls < 8 else ""
    errors = [
        [k, v, "; ".join(_code(e) for e in a["error_examples"].get(k, []))] for k, v in a["errors"].items()
    ]
    late = a["client_late_p99_ms"]
    named = (("first", a["v2v_first"]), ("last", a["v2v_last"]), ("whole run", a["v2v_all"]))
    windows = [[name, w["n"], *(bc.fmt(w[q], 0) for q in (*QS, "max"))] for name, w in named]
    warned = "; ".join(_code(w) for w in a["warning_examples"]) or "none"
    ends = ", ".join(f"“{k}” ×{v}" for k, v in sorted(a["end_reasons"].items()))
    lag = (
        f"{lag_counts(a['loop_lag'])} server event-loop heartbeats late by over 20 / 40 / 100 ms"
        if a.get("loop_lag")
        else "event-loop lag not measured"
    )
    out = [
        "## Soak: looping calls on one server",
        f"Command: `{cmd}`",
        machine,
        f"**Ran {_minutes(a['load_s'])} of load at {args.calls} concurrent call(s){short}**, then "
        f"{_minutes(a['total_s'] - a['load_s'])} while the calls in progress finished; "
        f"{a['calls']} calls, {a['turns']} caller turns. Server: `voicebot serve --domain domains/shop"
        f"{' --quick' * args.quick}` (one process for the whole run, fresh shop database). Each caller plays "
        "the four shop conversations of the capacity benchmark in turn (track, cancel, refund, "
        "delivery question with a barge-in), hangs up and dials the next at once. Server RSS, open file "
        f"descriptors and threads (process tree, psutil) sampled every {args.sample_s:g} s; slopes by least "
        f"squares over the samples after a {_minutes(a['warmup_s'])} warm-up; latency windows: the first "
        f"and the last {_minutes(a['window_s'])} of load (by the caller's end of speech).",
        "### Criteria",
        bc.md_table(["criterion", "measured", "status"], criteria(a, args)),
        "*met*: the measure and, for a slope, its whole 95 % interval are within the limit; *not shown*: "
        "the measure is within it but its interval is not (too short or too noisy a run to tell); *MISSED*: "
        "the measure is over the limit. Latency is judged one way: a faster last window passes.",
        "### Resources",
        bc.md_table(
            ["", "slope after warm-up (per hour, ±95 %)", "warm-up end → load end", "min – max"], resources(a)
        ),
        f"Open fds with no call up: {idle(a['idle_fds'])}.",
        f"Server CPU over the run: {a['server_cpu_pct']} % of one core (of {os.cpu_count()}).",
        "### Voice-to-voice latency (ms)",
        bc.md_table(["window", "turns", "p50", "p95", "p99", "max"], windows),
        "### Errors",
        bc.md_table(["kind", "count", "examples"], errors),
        f"Not counted as errors: {a['warnings']} server log warnings ({warned}), {a['underruns']} "
        f"underruns (gaps over 40 ms inside a reply; worst {a['worst_gap_ms']:.0f} ms; "
        f"{a['underruns_client_stalled']} while the load generator's own loop stalled; "
        f"{a['underruns_between_sentences']} between two sentences: the next one's audio was late), {lag}, "
        f"{a['barge_ins']} barge-ins; "
        f"{a['matched_turns']}/{a['turns']} caller turns matched to a server turn record. How calls "
        f"ended (server record): {ends or 'none'}. Caller frame lateness p99 per call (did the load "
        f"generator keep real time): median {bc.fmt(late['p50'])} ms, worst {bc.fmt(late['max'])} ms.",
        "![server RSS, open fds and threads over the run](img/soak_resources.png)",
        "![voice-to-voice latency over the run](img/soak_latency.png)",
        "![voice-to-voice latency CDF, first and last window](img/soak_v2v_cdf.png)",
        "Raw: `docs/results/soak_samples.csv` (one row per sample), `docs/results/soak_turns.csv` (one row "
        "per greeting or caller line), `docs/results/reliability_soak.json` (summary).",
    ]
    return "\n\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="how long to keep the calls going")
    ap.add_argument("--calls", type=int, default=8, help="concurrent calls, kept running the whole time")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between server samples")
    ap.add_argument(
        "--window-min", type=float, help="latency windows (default: 10 min or a sixth of the run)"
    )
    ap.add_argument("--warmup-min", type=float, default=None, help="left out of the slopes (default: window)")
    ap.add_argument("--rss-flat", type=float, default=20.0, help="largest |RSS slope| that is flat, MB/h")
    ap.add_argument("--fds-flat", type=float, default=5.0, help="largest |fds slope| that is flat, per hour")
    ap.add_argument("--latency-tol", type=float, default=0.2, help="last window ≤ first × (1 + this)")
    add_server_args(ap)
    args = ap.parse_args()
    info = bc.machine_info()
    clips = caller_clips()
    with tempfile.TemporaryDirectory(prefix="soak-calls-") as tmp:
        server = Server(Path(tmp), args.port or free_port(), args.quick, args.calls)
        try:
            server.wait_ready()
            if server.psutil is None:
                sys.exit("the soak counts open fds with psutil: pip install psutil")
            print(f"soak: {args.calls} calls for {args.minutes:g} min …", file=sys.stderr, flush=True)
            soak = Soak(server, args, clips)
            asyncio.run(soak.run())
        finally:
            server.stop()
        join(soak.rows, server_turns(server.db))
        result = analyse(soak, args)
    cmd = " ".join([".venv/bin/python scripts/soak_calls.py", *sys.argv[1:]])
    body = report(cmd, bc.machine_line(info), result, args)
    if not args.no_write:
        bc.write_csv(args.out / "results" / "soak_samples.csv", soak.samples)
        bc.write_csv(args.out / "results" / "soak_turns.csv", soak.rows)
        raw = {
            "command": cmd,
            "machine": info,
            "args": vars(args) | {"out": os.path.relpath(args.out, ROOT)},
        } | result
        (args.out / "results" / "reliability_soak.json").write_text(json.dumps(_no_nan(raw), indent=1))
        plots(args.out / "img", soak.samples, soak.rows, result)
        bc.write_section(args.out / "reliability.md", "soak", body)
    print(body)


if __name__ == "__main__":
    main()
