"""The server under test for the calls benchmark: `voicebot serve` as a child process.

A separate process, so its CPU time and resident memory are its own (the callers' event loop and the
caller TTS stay out of them). Its domain is a temp copy of domains/shop whose back end is a temp SQLite
file, seeded fresh at start-up: the user's ~/.cache/voicebot shop database is never touched, and every level
starts from the same orders. Call records go to a temp database, read back afterwards for the server's own
per-stage timings of each turn.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from voicebot.config import VoicebotConfig

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "domains" / "shop"
SERVER_KEYS = (
    "endpoint",
    "asr",
    "asr_decode",
    "nlu",
    "dialogue_step",
    "action",
    "dialogue",
    "tts_first_audio",
)


def add_server_args(ap: argparse.ArgumentParser) -> None:
    """The options the calls benchmark and the soak share: which model the server runs, its port, the
    callers' seed and where the report goes."""
    ap.add_argument("--quick", action="store_true", help="serve with the quick shop NLU model")
    ap.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    ap.add_argument("--seed", type=int, default=13, help="seeds the start stagger and the callers' pauses")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--no-write", action="store_true", help="print the report only; write no files")


def domain_copy(folder: Path, quick: bool) -> Path:
    """The shop domain with its database in `folder`; its NLU model (the quick one, else the full or the
    first, as `voicebot serve` picks) must already be trained (the copy has the same name and training files,
    so it finds the same cached models)."""
    from models.first_start import served_model
    from models.train_domain import model_dir

    domain = folder / "shop"
    shutil.copytree(SHOP, domain)
    settings = yaml.safe_load((domain / "settings.yaml").read_text())
    settings["backend"]["options"]["database"] = str(folder / "shop.sqlite")
    (domain / "settings.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    cache = VoicebotConfig().cache_dir
    model = model_dir(domain, cache, quick=True) if quick else served_model(domain, cache)
    if model is None or not (model / "metrics.json").is_file():
        sys.exit(
            f"no trained model at {model}: run `voicebot train --domain domains/shop{' --quick' * quick}`"
        )
    return domain


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`voicebot serve` as a child process, with its CPU time and resident memory (process tree)."""

    def __init__(
        self, folder: Path, port: int, quick: bool, calls: int, settings: dict[str, str] | None = None
    ) -> None:
        """`settings`: more VOICEBOT__… environment settings for this server (a variant under test)."""
        self.port, self.log_path, self.db = port, folder / "server.log", folder / "calls.sqlite"
        domain = domain_copy(folder, quick)
        cmd = [str(Path(sys.executable).with_name("voicebot")), "serve", "--domain", str(domain),
               "--port", str(port), "--audiosocket-port", "0", *(["--quick"] if quick else [])]  # fmt: skip
        env = (
            os.environ
            | {
                "VOICEBOT__SERVER__RECORDS_URL": f"sqlite:///{self.db}",
                "VOICEBOT__SERVER__MAX_CALLS": str(max(16, calls)),
                "VOICEBOT__SERVER__TOKEN": "null",  # our callers carry no token; the rest are the user's
            }
            | (settings or {})
        )
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            import psutil  # type: ignore[import-untyped]

            self.psutil: Any = psutil.Process(self.proc.pid)
        except ImportError:
            self.psutil = None

    def wait_ready(self, timeout: float = 900.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    health = json.load(r)
                    if health.get("status") == "ok" and not health.get("warming_tts"):
                        return  # fixed replies cached: every level starts as a long-running server would
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Warnings, errors and tracebacks the server logged."""
        marks = (" WARNING ", " ERROR ", "WARNING:", "ERROR:", "Traceback")
        return [
            ln for ln in self.log_path.read_text(errors="replace").splitlines() if any(m in ln for m in marks)
        ]

    def usage(self) -> tuple[float, float]:
        """(CPU seconds, resident bytes) of the server and its children (psutil if installed, else /proc)."""
        if self.psutil is not None:
            procs = [self.psutil, *self.psutil.children(recursive=True)]
            times = [p.cpu_times() for p in procs]
            cpu = sum(t.user + t.system + t.children_user + t.children_system for t in times)
            return cpu, float(sum(p.memory_info().rss for p in procs))
        cpu = rss = 0.0
        tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        for pid in _tree(self.proc.pid):
            try:
                rest = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu += sum(int(v) for v in rest[11:15]) / tick  # utime stime cutime cstime
            rss += int(rest[21]) * page
        return cpu, rss

    def memory_kinds(self) -> dict[str, float]:
        """Resident bytes of the server tree by kind (/proc/PID/status): `anon` (the heap: where a leak
        shows) and `file` (mapped files: shared libraries and model weights, paged in as code paths are
        first used, and reclaimable)."""
        kinds = dict.fromkeys(("anon", "file"), 0.0)
        for pid in _tree(self.proc.pid):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    kind = {"RssAnon": "anon", "RssFile": "file"}.get(name)
                    if kind:
                        kinds[kind] += float(value.split()[0]) * 1024
        return kinds

    def _samples(self, family: str) -> list[Any]:
        """One metric family's samples from the server's `/metrics`, or [] if it cannot say. Blocking."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return []
        return [s for f in text_string_to_metric_families(text) if f.name == family for s in f.samples]

    def heap(self) -> dict[str, float]:
        """The server's C heap in bytes (`in_use`, `free`; glibc's mallinfo2), or {} if it cannot say.
        Blocking: call it from a thread."""
        return {s.labels["kind"]: s.value for s in self._samples("voicebot_heap_bytes")}

    def loop_lag(self) -> dict[str, float]:
        """The server's event-loop heartbeats so far (`beats`, one per 25 ms) and how many of them ran late
        by over 20, 40 and 100 ms (`over_20ms`…): a lag over 20 ms is a gap over 40 ms in every reply
        playing then. {} if it cannot say. Blocking."""
        le = {
            s.labels["le"]: s.value
            for s in self._samples("voicebot_loop_lag_seconds")
            if s.name.endswith("_bucket")
        }
        if "+Inf" not in le:
            return {}
        beats = le["+Inf"]
        over = {f"over_{ms}ms": beats - le[b] for ms, b in ((20, "0.02"), (40, "0.04"), (100, "0.1"))}
        return {"beats": beats} | over

    def stop(self) -> None:
        """Ctrl-C: the server drains and flushes its call records, then exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def server_turns(db: Path) -> dict[str, dict[str, Any]]:
    """Per callSid: how the call ended, its transcribed turns (time written, fields, stage timings), and how
    many turns had an empty transcript (speech the ASR dropped) or answered no input (a reprompt)."""
    calls: dict[str, dict[str, Any]] = {}
    with closing(sqlite3.connect(db)) as conn:
        for sid, reason in conn.execute("SELECT json_extract(meta, '$.callSid'), end_reason FROM calls"):
            calls[str(sid)] = {"end_reason": reason, "turns": [], "empty": 0, "no_input": 0}
        query = """SELECT json_extract(c.meta, '$.callSid'), t."index", t.created_at, t.transcript, t.intent,
                   t.action, t.reply, t.timings_ms FROM turns t JOIN calls c ON c.id = t.call_id
                   ORDER BY t.call_id, t."index" """
        for sid, index, at, transcript, intent, action, reply, timings in conn.execute(query):
            call = calls[str(sid)]
            if transcript:
                when = datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()
                turn = {"transcript": transcript, "intent": intent, "action": action, "reply": reply}
                call["turns"].append((when, turn, json.loads(timings or "{}")))
            elif transcript == "":
                call["empty"] += 1
            elif index > 0:  # no transcript and not the greeting: a no-input reprompt
                call["no_input"] += 1
    return calls


def lag_counts(lag: dict[str, float]) -> str:
    """`Server.loop_lag` as "late over 20 / over 40 / over 100 ms of all beats" counts, for the reports."""
    return f"{lag['over_20ms']:.0f} / {lag['over_40ms']:.0f} / {lag['over_100ms']:.0f} of {lag['beats']:.0f}"


def join(rows: list[dict[str, Any]], calls: dict[str, dict[str, Any]]) -> None:
    """Each caller line gets the first unused server turn written after its speech ended (the turn record
    is written once the reply has played) and before the line after next ended."""
    by_call: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_call.setdefault(row["call_sid"], []).append(row)
    for sid, mine in by_call.items():
        call = calls.get(sid, {"end_reason": None, "turns": [], "empty": 0, "no_input": 0})
        lines = [r for r in mine if r["line"] >= 0]
        ends = [r["wall_end"] for r in lines] + [float("inf")] * 2
        used: set[int] = set()
        for k, row in enumerate(lines):
            match = next((i for i, (when, _, _) in enumerate(call["turns"])
                          if i not in used and ends[k] <= when < ends[k + 2]), None)  # fmt: skip
            if match is not None:
                used.add(match)
                _, turn, timings = call["turns"][match]
                row |= turn | {f"srv_{key}": timings[key] for key in SERVER_KEYS if key in timings}
        for row in mine:
            row["end_reason"] = call["end_reason"]
            row.pop("wall_end", None)
            if row["line"] < 0:  # per call, on its greeting row
                row |= {"srv_empty_turns": call["empty"], "srv_no_input_turns": call["no_input"]}
