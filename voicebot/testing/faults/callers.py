"""Callers that misbehave on purpose, over all three wire protocols.

Each `Caller` streams 20 ms frames at 8 kHz in real time the way a phone line does (queued speech, else
silence), counts the bot's audio frames, and can leave in the ways real lines fail: `abort()` drops the TCP
connection with no protocol goodbye (no close frame, no hang-up frame), `freeze()` goes silent with the socket
left open (a half-open connection: the peer vanished without a FIN), `stop_reading()` keeps talking but never
reads the bot's audio (a slow reader), and `handshake_abort()` dies before the call is set up. The helpers
`until`/`call_id` let a test hang up at an exact point of the call; see `plans` for the plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import websockets
from websockets.asyncio.client import ClientConnection, connect

from telephony.session import Call, CallHub
from voicebot.audio import split_frames
from voicebot.frames import PCM
from voicebot.testing.twilio import FRAME_S, RATE, TwilioStream

if TYPE_CHECKING:
    from voicebot.testing.gateway import Gateway

SILENCE = np.zeros(int(RATE * FRAME_S), np.int16)
PROTOCOLS = ("audiosocket", "twilio", "browser")
GONE = (ConnectionError, OSError, websockets.ConnectionClosed, asyncio.IncompleteReadError)


async def until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `condition` until it holds or `timeout` passes; whether it held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(step)
    return True


# --- callers -----------------------------------------------------------------------------------------


class Caller:
    """One caller's line; subclasses speak one protocol."""

    protocol = ""

    def __init__(self) -> None:
        self.bot_frames = 0
        self.sent = 0  # caller frames sent so far
        self.closed = asyncio.Event()  # the server ended the line (or we dropped it)
        self.local_port = 0
        self.rcvbuf: int | None = None  # set before `connect` for a small receive window (a slow reader)
        self._queue: deque[PCM] = deque()
        self._stream: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def connect(self, gw: Gateway) -> None:
        await self._open(gw)
        self._stream = asyncio.create_task(self._talk(), name=f"{self.protocol}-caller-line")
        self._reader = asyncio.create_task(self._listen(), name=f"{self.protocol}-caller-ear")

    def say(self, pcm: PCM) -> tuple[int, int]:
        """Queue speech; returns the frame numbers (of `sent`) it starts and ends at."""
        first = self.sent + len(self._queue)
        self._queue.extend(split_frames(pcm, RATE, 20))
        return first, self.sent + len(self._queue)

    async def _socket(self, port: int) -> socket.socket:
        """A connected loopback socket; its receive buffer is sized before connecting (the window uses it)."""
        sock = socket.socket()
        if self.rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return sock

    async def press(self, keys: str, gap_s: float = 0.1) -> None:
        """Press keypad keys (DTMF) one by one: a path through the dialogue that does not depend on ASR."""
        for key in keys:
            await self._key(key)
            await asyncio.sleep(gap_s)

    def call_id(self, hub: CallHub) -> str | None:
        return next((cid for cid, call in list(hub.calls.items()) if self.owns(call)), None)

    async def _talk(self) -> None:
        loop = asyncio.get_running_loop()
        clock = loop.time()
        with contextlib.suppress(*GONE):
            while not self.closed.is_set():
                await self._send(self._queue.popleft() if self._queue else SILENCE)
                self.sent += 1
                await asyncio.sleep(max(0.0, clock + self.sent * FRAME_S - loop.time()))

    async def _listen(self) -> None:
        with contextlib.suppress(*GONE):
            await self._receive()
        self.closed.set()

    def _quiet(self) -> None:
        for task in (self._stream, self._reader):
            if task is not None:
                task.cancel()

    def abort(self) -> None:
        """The connection dies: no close frame, no hang-up frame; the socket is dropped at once."""
        self._quiet()
        self._drop()
        self.closed.set()

    def stop_reading(self) -> None:
        """Never read the bot's audio again (the line goes on talking): a slow reader at its worst."""
        if self._reader is not None:
            self._reader.cancel()
        self._pause()

    def freeze(self) -> None:
        """Neither talk nor read, socket left open: from the server, a peer that vanished without a FIN."""
        self._quiet()
        self._pause()

    async def close(self) -> None:
        """Release everything this caller holds (drops the socket if still open)."""
        self._quiet()
        self._drop()
        await asyncio.gather(*(t for t in (self._stream, self._reader) if t), return_exceptions=True)

    # --- the protocol's part ---

    async def _open(self, gw: Gateway) -> None:
        raise NotImplementedError

    async def _send(self, pcm: PCM) -> None:
        raise NotImplementedError

    async def _key(self, key: str) -> None:
        raise NotImplementedError

    async def _receive(self) -> None:
        """Read until the server ends the line, counting the bot's audio frames."""
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError

    def _pause(self) -> None:
        raise NotImplementedError

    def owns(self, call: Call) -> bool:
        """Whether `call` (in the hub) is this caller's."""
        raise NotImplementedError

    async def handshake_abort(self, gw: Gateway) -> None:
        """Die before the call is set up."""
        raise NotImplementedError


def _frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


class AudioSocketCaller(Caller):
    """Asterisk's side: UUID frame, then 0x10 audio frames; the app's 0x00 frame hangs up."""

    protocol = "audiosocket"

    def __init__(self) -> None:
        super().__init__()
        self.uuid = uuid.uuid4()
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self, gw: Gateway) -> None:
        assert gw.audiosocket_port is not None, "the fault gateway listens for AudioSocket"
        self.reader, self.writer = await asyncio.open_connection(sock=await self._socket(gw.audiosocket_port))
        self.local_port = self.writer.get_extra_info("sockname")[1]
        self.writer.write(_frame(0x01, self.uuid.bytes))

    async def _send(self, pcm: PCM) -> None:
        assert self.writer is not None
        self.writer.write(_frame(0x10, pcm.astype("<i2").tobytes()))
        await self.writer.drain()

    async def _key(self, key: str) -> None:
        assert self.writer is not None
        self.writer.write(_frame(0x03, key.encode()))
        await self.writer.drain()

    async def _receive(self) -> None:
        while True:
            kind, size = struct.unpack(">BH", await self.reader.readexactly(3))
            await self.reader.readexactly(size)
            if kind == 0x10:
                self.bot_frames += 1
            elif kind == 0x00:
                return

    def _drop(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()

    def _pause(self) -> None:
        transport = self.writer.transport if self.writer is not None else None
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()

    def owns(self, call: Call) -> bool:
        return call.meta.get("uuid") == str(self.uuid)

    async def handshake_abort(self, gw: Gateway) -> None:
        """Half a UUID frame, then gone."""
        _, self.writer = await asyncio.open_connection("127.0.0.1", gw.audiosocket_port)
        self.writer.write(_frame(0x01, self.uuid.bytes)[:9])
        await self.writer.drain()
        self._drop()


class _WebSocketCaller(Caller):
    path = ""
    subprotocols: tuple[str, ...] = ()  # offered in the upgrade request (jambonz's `audio.jambonz.org`)

    def headers(self) -> dict[str, str]:
        """Extra upgrade request headers (a carrier's Basic auth)."""
        return {}

    def __init__(self) -> None:
        super().__init__()
        self.ws: ClientConnection | None = None

    async def _connect(self, gw: Gateway) -> ClientConnection:
        # No client keepalive: a frozen caller must send nothing at all, like a vanished one.
        sock = await self._socket(int(gw.http.rsplit(":", 1)[1]))
        self.ws = await connect(
            f"ws://{gw.http}{self.path}", sock=sock, ping_interval=None, open_timeout=20,
            additional_headers=self.headers(), subprotocols=list(self.subprotocols) or None,  # type: ignore[arg-type]
        )  # fmt: skip
        self.local_port = self.ws.transport.get_extra_info("sockname")[1]
        return self.ws

    def _drop(self) -> None:
        if self.ws is not None:
            self.ws.transport.abort()

    def _pause(self) -> None:
        if self.ws is not None:
            self.ws.transport.pause_reading()

    def owns(self, call: Call) -> bool:
        ws = getattr(getattr(call.transport, "line", None), "ws", None)
        client = getattr(ws, "client", None)
        return client is not None and client.port == self.local_port


class TwilioCaller(_WebSocketCaller):
    """Twilio's side (`TwilioStream`): `connected`, `start`, μ-law `media` every 20 ms, marks echoed once
    their audio has played."""

    protocol = "twilio"
    path = "/twilio/stream"

    def __init__(self) -> None:
        super().__init__()
        self.stream = TwilioStream()  # on the connection once it is open

    async def _open(self, gw: Gateway) -> None:
        self.stream.ws = await self._connect(gw)
        await self.stream.start()

    async def _send(self, pcm: PCM) -> None:
        await self.stream.audio(pcm)

    async def _key(self, key: str) -> None:
        await self.stream.dtmf(key)

    async def _receive(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if self.stream.handle(message).get("event") == "media":
                self.bot_frames += 1

    def _quiet(self) -> None:
        super()._quiet()
        self.stream.hush()  # a dead or frozen line returns no marks

    def owns(self, call: Call) -> bool:
        return call.meta.get("streamSid") == self.stream.stream_sid

    async def handshake_abort(self, gw: Gateway) -> None:
        """`connected`, then gone before `start`: no call is set up."""
        self.stream.ws = await self._connect(gw)
        await self.stream.connected()
        self._drop()


class BrowserCaller(_WebSocketCaller):
    """The browser page's side: binary PCM16 at 8 kHz both ways, JSON events from the app."""

    protocol = "browser"
    path = f"/ws?rate={RATE}"

    def __init__(self) -> None:
        super().__init__()
        self.ended_reason: str | None = None

    async def _open(self, gw: Gateway) -> None:
        await self._connect(gw)

    async def _send(self, pcm: PCM) -> None:
        assert self.ws is not None
        await self.ws.send(pcm.astype("<i2").tobytes())

    async def _key(self, key: str) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps({"type": "dtmf", "digit": key}))

    async def _receive(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if isinstance(message, bytes):
                self.bot_frames += 1
            elif (event := json.loads(message)).get("type") == "ended":
                self.ended_reason = event.get("reason")

    async def handshake_abort(self, gw: Gateway) -> None:
        """Half an HTTP upgrade request, then gone."""
        host, port = gw.http.split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {gw.http}\r\nUpgrade: websocket\r\n".encode())
        await writer.drain()
        writer.transport.abort()


CALLERS: dict[str, type[Caller]] = {
    "audiosocket": AudioSocketCaller,
    "twilio": TwilioCaller,
    "browser": BrowserCaller,
}
