"""One fuzz campaign against one live gateway, shared by tests/test_fuzz.py and scripts/fuzz_gateway.py.

The fuzz cases (`cases`) are played by the `driver` while good calls with real speech run
alongside (one per protocol in turn, each must get its reply and end cleanly) and /health is polled. After:
the log audit (no ERROR records, no tracebacks), the calls, file descriptors and asyncio tasks left once the
server settles, and the call records (every admitted call stored with an end reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from voicebot.audio import split_frames
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.testing.carriers import PEERS
from voicebot.testing.fuzz.carriers import good_carrier
from voicebot.testing.fuzz.cases import (
    AUDIO,
    BROWSER_HANGUP,
    HANGUP,
    LIMIT,
    TOKEN,
    UUID,
    Case,
    frame,
    start_message,
    twilio_stop,
)
from voicebot.testing.fuzz.driver import LogAudit, ProtocolTally, Tally, play_all
from voicebot.testing.gateway import http_get, no_greeting, receive_until, running_gateway
from voicebot.testing.twilio import TwilioStream

PHRASE = "Can I speak to a human agent please?"
GOOD_TIMEOUT_S = 120.0  # one good call, Whisper included, on a busy 2-core machine
WARM_UP = [
    Case("twilio", (json.dumps(start_message()),), "polite", "", twilio_stop()),
    Case("audiosocket", (frame(UUID, bytes(16)),), "polite", "", frame(HANGUP)),
    Case("browser", (), "polite", f"rate=16000&token={TOKEN}", BROWSER_HANGUP),
]


def fuzz_config(concurrency: int) -> VoicebotConfig:
    """Small limits so oversized input stays cheap; a token, so the token check is fuzzed too."""
    server = ServerConfig(
        token=TOKEN, audiosocket_port=0, max_message_bytes=LIMIT, start_timeout_s=2.0,
        hangup_grace_s=1.0, drain_s=2.0, max_calls=4 * concurrency + 8,
        max_calls_per_source=4 * concurrency + 8,
    )  # fmt: skip
    return VoicebotConfig(server=server)


def speech(services: Services) -> dict[int, PCM]:
    """The good caller's question at 8 and 16 kHz, then a second of silence to end the turn."""
    return {
        rate: np.concatenate([services.tts.synthesize_at(PHRASE, rate), np.zeros(rate, np.int16)])
        for rate in (8_000, 16_000)
    }


# --- good calls ------------------------------------------------------------------------------------------


async def good_browser(http: str, pcm: PCM, tally: Tally) -> str | None:
    """A browser call that asks its question, gets its reply, hangs up; None when all went right."""
    async with websockets.connect(f"ws://{http}/ws?rate=16000&token={TOKEN}") as ws:
        for chunk in split_frames(pcm, 16_000, 20):
            await ws.send(chunk.tobytes())
        events = await receive_until(ws, "turn", [], GOOD_TIMEOUT_S)
        heard = " ".join(e["text"] for e in events if e["type"] == "transcript")
        said = " ".join(e["text"] for e in events if e["type"] == "reply")
        await ws.send(BROWSER_HANGUP)
        await receive_until(ws, "ended", [], GOOD_TIMEOUT_S)
        await ws.wait_closed()
    return _judge(heard, said, (ws.close_code, ws.close_reason))


async def good_twilio(http: str, pcm: PCM, tally: Tally) -> str | None:
    """A Twilio stream that asks its question (sent at once), hears half a second of the reply, stops."""
    async with websockets.connect(f"ws://{http}/twilio/stream") as ws:
        stream = TwilioStream(ws, "MZgood" + uuid.uuid4().hex)
        await stream.start({"token": TOKEN})
        for chunk in split_frames(pcm, 8_000, 20):
            await stream.audio(chunk)
        replies = 0
        async with asyncio.timeout(GOOD_TIMEOUT_S):
            while replies < 25:  # half a second of the bot's reply
                replies += stream.handle(await ws.recv()).get("event") == "media"
        await stream.stop()
        stream.hush()
        with_close = await _closed(ws)
    call = tally.find("streamSid", stream.stream_sid)
    return _judge(*_heard_said(tally, call), with_close)


async def good_audiosocket(port: int, pcm: PCM, tally: Tally) -> str | None:
    name = uuid.uuid4()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame(UUID, name.bytes))
    for chunk in split_frames(pcm, 8_000, 20):
        writer.write(frame(AUDIO, chunk.astype("<i2").tobytes()))
    await writer.drain()
    replies = 0
    async with asyncio.timeout(GOOD_TIMEOUT_S):
        while replies < 25:
            kind, size = struct.unpack(">BH", await reader.readexactly(3))
            await reader.readexactly(size)
            replies += kind == AUDIO
        writer.write(frame(HANGUP))
        writer.write_eof()
        await reader.read()  # until the server closes
    writer.close()
    call = tally.find("uuid", str(name))
    end = await _end_reason(tally, call)
    return _judge(*_heard_said(tally, call), (1000 if end == "caller hung up" else None, end))


async def _closed(ws: Any) -> tuple[int | None, str | None]:
    """Read (and drop) the rest of the bot's audio until the server's close frame."""
    async with asyncio.timeout(GOOD_TIMEOUT_S):
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                pass
    return ws.close_code, ws.close_reason


async def _end_reason(tally: Tally, call: str | None) -> str | None:
    for _ in range(500):
        if call is not None and call in tally.ends:
            return tally.ends[call]
        await asyncio.sleep(0.01)
    return None


def _heard_said(tally: Tally, call: str | None) -> tuple[str, str]:
    return (" ".join(tally.heard.get(call or "", [])), " ".join(tally.said.get(call or "", [])))


def _judge(heard: str, said: str, close: tuple[int | None, str | None]) -> str | None:
    if "agent" not in heard.lower() or not said.startswith("You said"):
        return f"heard {heard!r}, replied {said!r}"
    if close != (1000, "caller hung up"):
        return f"ended {close}"
    return None


# --- the campaign ----------------------------------------------------------------------------------------


def resources(database: Path) -> dict[str, float]:
    """This (the server's) process: open file descriptors, threads, asyncio tasks, resident memory.

    `fds` leaves out the call-records database under `database` (`db_fds`): SQLAlchemy opens a pooled
    connection per thread that needs one (the writer, the heartbeat), a bounded number whenever it likes.
    """
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the one listdir itself used is gone by now
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    db = sum(t.startswith(str(database)) for t in targets)
    return {
        "fds": len(targets) - db,
        "db_fds": db,
        "sockets": sum(t.startswith("socket:") for t in targets),
        "threads": int(status["Threads"]),
        "tasks": len(asyncio.all_tasks()),
        "rss_mb": round(int(status["VmRSS"].split()[0]) / 1000, 1),
    }


async def settled(before: dict[str, float], database: Path, timeout: float = 20.0) -> dict[str, float]:
    """Resources once closed connections are gone: polled until fds and tasks are back, or `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        now = resources(database)
        if (now["fds"] <= before["fds"] and now["tasks"] <= before["tasks"]) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)


@dataclass
class Result:
    """Everything a campaign measured; `failures()` lists what broke the rules (empty when all held)."""

    protocols: dict[str, ProtocolTally]
    good: Counter[str] = field(default_factory=Counter)
    good_problems: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: int = 0
    health_checks: int = 0
    health_failures: int = 0
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    calls_left: int = 0
    admitted: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    stored: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    @property
    def leaks(self) -> dict[str, float]:
        return {k: max(0.0, self.after[k] - self.before[k]) for k in ("fds", "sockets", "tasks")}

    def failures(self) -> list[str]:
        out = [
            f"{p}: {t.problems} bad closes, e.g. {t.examples[:3]}"
            for p, t in self.protocols.items()
            if t.problems
        ]
        out += [f"unhandled: {e}" for e in self.errors[:10]]
        out += [f"good call failed: {p}" for p in self.good_problems]
        out += [f"/health failed {self.health_failures} times"] if self.health_failures else []
        out += [f"leaked {k}: {v:.0f}" for k, v in self.leaks.items() if v]
        out += [f"{self.calls_left} calls still open"] if self.calls_left else []
        out += [f"{p}: {n} admitted, {self.ended[p]} ended, {self.stored[p]} stored with an end reason"
                for p, n in self.admitted.items() if not n == self.ended[p] == self.stored[p]]  # fmt: skip
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (`asdict` would turn a Counter into a count of its items)."""
        data = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items()}
        data["protocols"] = {
            p: asdict(t) | {"closes": dict(t.closes.most_common())} for p, t in self.protocols.items()
        }
        return data | {"leaks": self.leaks}


async def run_campaign(
    services: Services,
    cases: list[Case],
    folder: Path,
    concurrency: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Result:
    """Play `cases` against a fresh gateway with good calls alongside; the result, checked by the caller."""
    tally = Tally()
    store = CallStore(f"sqlite:///{folder / 'calls.sqlite'}", None, folder / "spool.jsonl")
    audio = speech(services)
    result = Result(protocols={})
    gateway = running_gateway(fuzz_config(concurrency), no_greeting(services), observers=[tally, store])
    try:
        async with gateway as gw:
            port = gw.audiosocket_port
            assert port is not None
            with LogAudit() as audit:
                await play_all(WARM_UP, gw.http, port, tally, audit, 1)
                await store.flush()  # the records database is open (its files) before the baseline
                await asyncio.sleep(0.5)
                result.before = resources(folder)
                done = asyncio.Event()
                protocols = {case.protocol for case in cases}
                good = asyncio.create_task(_good_loop(done, gw.http, port, tally, audio, result, protocols))
                health = asyncio.create_task(_health_loop(done, gw.http, result))
                started = time.perf_counter()
                result.protocols = await play_all(cases, gw.http, port, tally, audit, concurrency, progress)
                result.wall_s = round(time.perf_counter() - started, 1)
                done.set()
                await good
                await health
                result.after = await settled(result.before, folder)
                result.calls_left = len(gw.hub.calls)
                result.errors, result.warnings = audit.errors, audit.warnings
    finally:
        await store.flush()
        records = await asyncio.to_thread(store.list_calls, 10**7)
        store.close()
    result.admitted = Counter(tally.protocol.values())
    result.ended = Counter(tally.protocol[c] for c in tally.ends)
    result.stored = Counter(r.protocol for r in records if r.end_reason)
    return result


async def _good_loop(
    done: asyncio.Event,
    http: str,
    port: int,
    tally: Tally,
    audio: dict[int, PCM],
    result: Result,
    protocols: set[str],
) -> None:
    """Good calls, one of each fuzzed protocol after another, until the fuzz is done (at least one round)."""
    while True:
        calls = [
            ("browser", good_browser(http, audio[16_000], tally)),
            ("twilio", good_twilio(http, audio[8_000], tally)),
            ("audiosocket", good_audiosocket(port, audio[8_000], tally)),
        ]
        calls += [
            (p, good_carrier(p, http, audio[8_000], tally, GOOD_TIMEOUT_S)) for p in PEERS if p in protocols
        ]
        for name, call in calls:
            try:
                problem = await asyncio.wait_for(call, GOOD_TIMEOUT_S * 2)
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            result.good[f"{name} {'ok' if problem is None else 'failed'}"] += 1
            if problem is not None:
                result.good_problems.append(f"{name}: {problem}")
        if done.is_set():
            return


async def _health_loop(done: asyncio.Event, http: str, result: Result) -> None:
    """/health once a second while the fuzz runs, and once after: the server still serves."""
    while True:
        result.health_checks += 1
        try:
            async with asyncio.timeout(30):
                status, body = await http_get(http, "/health")
            ok = "200" in status and json.loads(body)["status"] == "ok"
        except Exception:
            ok = False
        result.health_failures += not ok
        if done.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 1.0)
