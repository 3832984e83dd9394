"""Plays fuzz `Case`s (`cases`) against the live gateway and judges how each call ended.

One case is one real connection over loopback to the real app (`create_app` under uvicorn, as
`voicebot.testing.gateway.running_gateway` starts it): no part of the server is replaced. The server must
close every bad call itself with a reason the caller can read (WebSocket close code and reason; for
AudioSocket, which has no reason field, a hang-up frame and a reason in the call record or the log), and
close a tolerated one cleanly once the caller hangs up. `Judge` collects per-protocol tallies; `LogAudit`
catches every log record at ERROR level or with a traceback, which is what an unhandled exception in the
server leaves behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from voicebot.frames import BotReply, FinalTranscript, Frame
from voicebot.testing.fuzz.carriers import PATHS
from voicebot.testing.fuzz.cases import HANGUP, KNOWN, Case

LINGER_S = 0.2  # a carrier without a hang-up message waits this long for the server's verdict, then closes
WAIT_S = 20.0  # longest wait for the server to close after the caller's last word (a busy 2-core box)
REFUSED = re.compile(r"audiosocket connection from [^:]+:(\d+) refused: (.*)")


@dataclass
class Outcome:
    """How one fuzz call ended: the server's reason (or `caller left`), and what was wrong with it."""

    protocol: str
    reason: str
    problem: str | None = None


class Tally:
    """A real call observer keeping just enough per call: protocol, peer, end reason, transcripts, replies."""

    def __init__(self) -> None:
        self.protocol: dict[str, str] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.ends: dict[str, str] = {}
        self.by_peer: dict[int, str] = {}
        self.heard: dict[str, list[str]] = defaultdict(list)
        self.said: dict[str, list[str]] = defaultdict(list)

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self.protocol[call_id] = protocol
        self.meta[call_id] = {
            k: v for k, v in meta.items() if k in ("uuid", "streamSid", "peer", "parameters")
        }
        if "peer" in meta:
            self.by_peer[int(str(meta["peer"]).rsplit(":", 1)[1])] = call_id

    def on_event(self, call_id: str, frame: Frame) -> None:
        if isinstance(frame, FinalTranscript):
            self.heard[call_id].append(frame.text)
        elif isinstance(frame, BotReply):
            self.said[call_id].append(frame.text)

    def on_end(self, call_id: str, reason: str) -> None:
        self.ends[call_id] = reason

    def find(self, key: str, value: str) -> str | None:
        return next((c for c, meta in self.meta.items() if meta.get(key) == value), None)


class LogAudit(logging.Handler):
    """Every ERROR record or traceback (unhandled exceptions), and AudioSocket refusals by client port.

    Attached to the root logger and to `uvicorn` (which does not propagate): an exception escaping an ASGI
    endpoint is logged by uvicorn as "Exception in ASGI application".
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings = 0
        self.refused: dict[int, str] = {}
        self._loggers = [logging.getLogger(), logging.getLogger("uvicorn")]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception as exc:  # a message that cannot even be formatted is a bug too
            message = f"unformattable log record {record.msg!r:.200}: {exc!r}"
            self.errors.append(f"{record.name}: {message}")
            return
        if record.levelno >= logging.ERROR or record.exc_info:
            kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
            self.errors.append(f"{record.name}: {message[:300]} {kind}".strip())
        else:
            self.warnings += 1
        if match := REFUSED.match(message):
            self.refused[int(match[1])] = match[2]

    def __enter__(self) -> LogAudit:
        for logger in self._loggers:
            logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)


def reason_class(reason: str) -> str:
    """A close reason with its variable parts (numbers, quoted input, dumps) folded, for counting."""
    text = re.sub(r"(unsupported media format ).*", r"\1…", reason)
    text = re.sub(r"\{.*\}", "{…}", text)
    text = re.sub(r"'(?!start')[^']*'", "'…'", text)
    text = re.sub(r"0x[0-9a-f]+", "0x…", text)
    return re.sub(r"\d+", "N", text)[:90]


@dataclass
class ProtocolTally:
    inputs: int = 0
    messages: int = 0
    bytes_sent: int = 0
    closes: Counter[str] = field(default_factory=Counter)
    problems: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, case: Case, outcome: Outcome) -> None:
        self.inputs += 1
        self.messages += len(case.messages)
        self.bytes_sent += sum(len(m) for m in case.messages)
        self.closes[reason_class(outcome.reason)] += 1
        if outcome.problem is not None:
            self.problems += 1
            if len(self.examples) < 10:
                self.examples.append(f"{outcome.problem} ({outcome.reason!r:.120}): {case.describe()}")


# --- WebSocket protocols ---------------------------------------------------------------------------------


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass


async def play_websocket(case: Case, http: str, wait_s: float = WAIT_S) -> Outcome:
    """Send the case's messages, end it its way, and read the server's close frame."""
    path = {"twilio": "/twilio/stream", "browser": "/ws"}.get(case.protocol) or PATHS[case.protocol]
    url = f"ws://{http}{path}" + (f"?{case.query}" if case.query else "")
    try:
        ws = await websockets.connect(url, max_size=None, open_timeout=wait_s, close_timeout=2)
    except websockets.InvalidStatus as exc:
        status = exc.response.status_code
        return Outcome(case.protocol, f"HTTP {status} at the handshake", "refused without a close reason")
    problem = None
    reader = asyncio.create_task(_drain(ws))
    try:
        for message in (*case.messages, case.stop) if case.ending == "polite" else case.messages:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    if case.ending == "polite" and not case.stop:  # a carrier that hangs up by closing: a moment first
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), LINGER_S)
    if case.ending == "close" or (case.ending == "polite" and not case.stop):
        await ws.close(1000, "fuzz caller leaves")
    elif case.ending == "drop":
        ws.transport.abort()
    try:
        await asyncio.wait_for(asyncio.shield(reader), wait_s)
    except TimeoutError:
        problem = f"not closed {wait_s:.0f} s after the caller's hang-up"
        await ws.close(1000, "fuzz caller gives up")
        await reader
    rcvd = ws.protocol.close_rcvd
    if rcvd is None or not ws.protocol.close_rcvd_then_sent:  # the caller closed first (or vanished)
        if case.ending == "polite" and case.stop and problem is None:
            problem = "no close frame from the server" if rcvd is None else "server did not close"
        left = "abnormal" if case.ending == "polite" and case.stop else "caller left"
        return Outcome(case.protocol, left, problem)
    if problem is None and (rcvd.code == 1011 or rcvd.reason.startswith("internal error")):
        problem = "internal error"
    elif problem is None and not rcvd.reason:
        problem = f"close {rcvd.code} without a reason"
    return Outcome(case.protocol, f"{rcvd.code} {rcvd.reason}", problem)


# --- AudioSocket -----------------------------------------------------------------------------------------


def split_frames(data: bytes) -> list[tuple[int, bytes]] | None:
    """The server's output as frames, or None when it is not a whole number of well-formed frames."""
    frames, at = [], 0
    while at < len(data):
        if len(data) - at < 3:
            return None
        kind, size = struct.unpack(">BH", data[at : at + 3])
        if kind not in KNOWN or len(data) - at - 3 < size:
            return None
        frames.append((kind, data[at + 3 : at + 3 + size]))
        at += 3 + size
    return frames


async def _read_all(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """Everything the server sent until it closed; True when it reset the connection instead."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionError:
        return b"".join(chunks), True
    return b"".join(chunks), False


async def play_audiosocket(
    case: Case, port: int, tally: Tally, audit: LogAudit, wait_s: float = WAIT_S
) -> Outcome:
    """Send the case's bytes, end it its way; the reason is the server's: its call record or refusal log."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local = int(writer.get_extra_info("sockname")[1])
    received = asyncio.create_task(_read_all(reader))
    try:
        for chunk in (*case.messages, case.stop) if case.ending == "polite" else case.messages:
            writer.write(chunk if isinstance(chunk, bytes) else chunk.encode())
            await writer.drain()
        if case.ending == "drop":
            writer.transport.abort()
        else:
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    problem = None
    try:
        data, reset = await asyncio.wait_for(asyncio.shield(received), wait_s)
    except TimeoutError:
        problem = f"line not closed {wait_s:.0f} s after the caller's hang-up"
        writer.transport.abort()
        data, reset = await received
    writer.close()
    reason = await _server_reason(local, tally, audit)
    frames = split_frames(data)
    if frames is None:
        problem = problem or "server sent malformed frames"
    hung_up = frames is not None and bool(frames) and frames[-1] == (HANGUP, b"")
    if reason is None:
        return Outcome(case.protocol, "no reason", problem or "no reason in the call records or the log")
    ours = reason.startswith(("protocol error", "internal error", "refused", "line dead", "limit"))
    ours |= reason.startswith("asterisk error") and reason != "asterisk error: hangup"  # 0x01: Asterisk's
    if problem is None and reason.startswith("internal error"):
        problem = "internal error"
    if problem is None and ours and not hung_up and case.ending != "drop":
        problem = "server ended the call without a hang-up frame" + (" (reset)" if reset else "")
    return Outcome(case.protocol, reason + (" [hang-up frame]" if hung_up else ""), problem)


async def _server_reason(port: int, tally: Tally, audit: LogAudit, wait_s: float = 5.0) -> str | None:
    """The server's reason for the connection from `port`: its call's end reason or its refusal (the call
    record is written just after the line closes, so wait for it a little)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        if port in audit.refused:
            return "refused: " + audit.refused.pop(port)
        call = tally.by_peer.get(port)
        if call is not None and call in tally.ends:
            del tally.by_peer[port]
            return tally.ends[call]
        await asyncio.sleep(0.01)
    return None


# --- a campaign ------------------------------------------------------------------------------------------


async def play_all(
    cases: list[Case],
    http: str,
    audiosocket_port: int,
    tally: Tally,
    audit: LogAudit,
    concurrency: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, ProtocolTally]:
    """Every case, `concurrency` connections at a time; per-protocol tallies of how they ended."""
    tallies: dict[str, ProtocolTally] = defaultdict(ProtocolTally)
    queue: asyncio.Queue[Case] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)

    async def worker() -> None:
        while not queue.empty():
            case = queue.get_nowait()
            try:
                if case.protocol == "audiosocket":
                    outcome = await play_audiosocket(case, audiosocket_port, tally, audit)
                else:
                    outcome = await play_websocket(case, http)
            except Exception as exc:  # the client failed: say so, keep fuzzing
                outcome = Outcome(case.protocol, "client error", f"fuzz client failed: {exc!r:.200}")
            tallies[case.protocol].add(case, outcome)
            if progress is not None:
                progress(sum(t.inputs for t in tallies.values()))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return dict(tallies)
