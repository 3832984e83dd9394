"""What every carrier peer shares: `CarrierCaller` (a `faults.Caller` speaking a carrier's wire through the
hooks `opening`, `audio`, `key`, `bye`, `read`, `echo`) and `Playout`, the far end's playout buffer that
returns marks once their audio has played (the package's docstring says how each carrier does it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import websockets
from websockets.frames import Frame, Opcode

from voicebot.frames import PCM
from voicebot.testing.faults.callers import GONE, _WebSocketCaller
from voicebot.testing.twilio import RATE

Echo = Callable[[str, bool], Any]  # (mark name, cleared) → the message that returns it, or None


class Playout:
    """A carrier's playout buffer, on the event loop's clock."""

    def __init__(self, echo: Callable[[str, bool], None]) -> None:
        self.echo = echo
        self.play_end = float("-inf")  # loop time when the audio received so far has played
        self.pending: dict[str, asyncio.TimerHandle] = {}
        self.marks_echoed: list[str] = []
        self.clears = 0

    def audio(self, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        self.play_end = max(self.play_end, now) + seconds

    def mark(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        self.pending[name] = loop.call_at(max(self.play_end, loop.time()), self._played, name)

    def clear(self, returns: bool) -> None:
        """Drop the queued audio; pending marks come back now (`returns`) or never."""
        self.clears += 1
        for name in list(self.pending):
            self.pending.pop(name).cancel()
            if returns:
                self._send(name, True)
        self.play_end = asyncio.get_running_loop().time()

    def hush(self) -> None:
        for handle in self.pending.values():
            handle.cancel()
        self.pending.clear()

    def _played(self, name: str) -> None:
        for earlier in list(self.pending):  # marks come back in order
            self.pending.pop(earlier).cancel()
            self._send(earlier, False)
            if earlier == name:
                return

    def _send(self, name: str, cleared: bool) -> None:
        self.marks_echoed.append(name)
        self.echo(name, cleared)


class CarrierCaller(_WebSocketCaller):
    """A carrier peer; subclasses give the wire (`opening`, `audio`, `key`, `bye`, `read`)."""

    clear_returns_marks = True
    marks = True  # the protocol reports playback
    width = 1  # bytes per 8 kHz sample on the wire: μ-law 1, PCM 2

    def __init__(self, parameters: dict[str, str] | None = None, token: str | None = None) -> None:
        super().__init__()
        self.id = str(uuid.uuid4())
        self.call_ref = "call-" + uuid.uuid4().hex
        self.parameters = dict(parameters or {})
        self.token = token
        self.sequence = self.chunk = 0
        self.timestamp = 0
        self.received: list[Any] = []  # every message from the app, parsed
        self.playout = Playout(self._echo)
        self.tasks: set[asyncio.Task[None]] = set()
        self.hung_up = False

    # --- the carrier's wire ---

    def opening(self) -> list[str | bytes]:
        raise NotImplementedError

    def audio(self, pcm: PCM) -> str | bytes:
        raise NotImplementedError

    def key(self, digit: str) -> str:
        raise NotImplementedError

    def bye(self) -> str | None:
        """The hang-up message (None: the line just closes)."""
        return None

    async def say_bye(self) -> None:
        message = self.bye()
        if message is not None:
            await self._send_raw(message)

    def read_json(
        self, message: str | bytes, media: str, mark: str, name: Callable[[dict[str, Any]], str]
    ) -> tuple[str, Any]:
        """A JSON `event` message: `media` (base64 audio in media.payload), `mark` (its `name`), or other."""
        data = json.loads(message)
        event = data.get("event")
        if event == media:
            return "media", self.seconds(base64.b64decode(data["media"]["payload"]))
        if event == mark:
            return "mark", name(data)
        return str(event), data

    def read(self, message: str | bytes) -> tuple[str, Any]:
        """What an app message is: ("media", seconds), ("mark", name), ("clear", None), or (kind, data)."""
        raise NotImplementedError

    def echo(self, name: str, cleared: bool) -> str | None:
        """The message that returns mark `name`."""
        raise NotImplementedError

    # --- the Caller's part ---

    def query(self) -> str:
        return f"?token={self.token}" if self.token else ""

    async def _open(self, gw: Any) -> None:
        self.path = self.path.split("?")[0] + self.query()
        await self._connect(gw)
        for message in self.opening():
            await self._send_raw(message)

    async def _send_raw(self, message: str | bytes) -> None:
        assert self.ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(message)

    async def _send(self, pcm: PCM) -> None:
        self.chunk += 1
        await self._send_raw(self.audio(pcm))
        self.timestamp += len(pcm) * 1000 // RATE

    async def _key(self, key: str) -> None:
        await self._send_raw(self.key(key))

    async def _receive(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            kind, data = self.read(message)
            self.received.append((kind, data))
            if kind == "media":
                self.bot_frames += 1
                self.playout.audio(data)
            elif kind == "mark":
                self.playout.mark(data)
            elif kind == "clear":
                self.playout.clear(self.clear_returns_marks)

    async def hang_up(self) -> None:
        """The caller hangs up: the carrier's hang-up message, then the line closes."""
        self.hung_up = True
        await self.say_bye()
        self._quiet()
        assert self.ws is not None
        with contextlib.suppress(*GONE):
            await self.ws.close()
        self.closed.set()

    def _quiet(self) -> None:
        super()._quiet()
        self.playout.hush()

    def _echo(self, name: str, cleared: bool) -> None:
        message = self.echo(name, cleared)
        if message is not None:
            self._later(message)

    def _later(self, message: str) -> None:
        """Send `message` soon (from a synchronous callback: a playout timer, a read)."""
        task = asyncio.ensure_future(self._send_raw(message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handshake_abort(self, gw: Any) -> None:
        """Gone while setting the stream up: the opening but its last message, then half of that one's
        WebSocket frame (RFC 6455 §5.2, masked as a client's) and the socket dropped. The last message is
        the one that sets the call up (Plivo's `start`, Vonage's `websocket:connected`, Genesys's `open`:
        for several carriers it is the only one), so no call may start."""
        self.path = self.path.split("?")[0] + self.query()
        await self._connect(gw)
        *before, last = self.opening()
        for message in before:
            await self._send_raw(message)
        data, opcode = (last, Opcode.BINARY) if isinstance(last, bytes) else (last.encode(), Opcode.TEXT)
        wire = Frame(opcode, data).serialize(mask=True, extensions=[])
        assert self.ws is not None
        self.ws.transport.write(wire[: len(wire) // 2])
        self._drop()

    def kinds(self, kind: str) -> list[Any]:
        return [data for k, data in self.received if k == kind]

    def seconds(self, payload: bytes) -> float:
        return len(payload) / self.width / RATE


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pcm16(pcm: PCM, order: str = "<") -> bytes:
    return pcm.astype(f"{order}i2").tobytes()
