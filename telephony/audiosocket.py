"""Asterisk AudioSocket: the TCP server behind the dialplan application `AudioSocket(uuid,host:port)`.

Per Asterisk's AudioSocket documentation and `res_audiosocket.h`, every message is a frame: 1-byte kind,
2-byte big-endian payload length, payload. Kinds: 0x00 hang-up; 0x01 UUID (16 bytes, always first); 0x03
DTMF (one ASCII digit); 0x10 audio, signed linear 16-bit little-endian mono at 8 kHz (0x11–0x18 carry 12,
16, 24, 32, 44.1, 48, 96 and 192 kHz and are resampled to 8 kHz here); 0xff error (one code byte:
0x01 hang-up, 0x02 frame forwarding, 0x04 memory). Asterisk plays what it receives at once, so the app
paces itself: one 320-byte 0x10 frame every 20 ms, and on barge-in it drops everything still queued. What
the pacer has written of a reply is what the caller heard of it (`played_ms`).

The protocol has no authentication and no reason field: keep the port private (connections from outside
`server.audiosocket_allow` are hung up at once); a refused or broken call gets a hang-up frame, and the
reason goes to the log and the call record. Nor can it set channel variables: a transfer's warm hand-off
summary is read by the dialplan after `AudioSocket()` returns, from `GET /calls/${UUID}/handoff` (the UUID
the dialplan gave the call; Asterisk's `CURL()` function), see `telephony.handoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid

import numpy as np

from telephony.limits import Network, address_allowed, networks
from telephony.session import DTMF_DIGITS, Call, CallHub, Ending, Refusal
from voicebot.audio import StreamResampler
from voicebot.config import ServerConfig
from voicebot.frames import PCM, BotAudio, Frame

log = logging.getLogger(__name__)
RATE = 8_000
KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_AUDIO, KIND_ERROR = 0x00, 0x01, 0x03, 0x10, 0xFF
AUDIO_RATES = {
    0x10: 8_000, 0x11: 12_000, 0x12: 16_000, 0x13: 24_000, 0x14: 32_000,
    0x15: 44_100, 0x16: 48_000, 0x17: 96_000, 0x18: 192_000,
}  # fmt: skip
KINDS = {KIND_HANGUP: "hang-up", KIND_UUID: "UUID", KIND_DTMF: "DTMF", KIND_ERROR: "error"} | {
    kind: f"audio {rate} Hz" for kind, rate in AUDIO_RATES.items()
}
ERRORS = {0x00: "none", 0x01: "hangup", 0x02: "frame forwarding", 0x04: "memory"}
MAX_QUEUED = 500  # frames (10 s) of bot audio waiting for the pacer; beyond that the peer is not reading
WRITE_TIMEOUT_S = 5.0  # a socket that takes no data for this long is a dead peer


class FrameError(Exception):
    """The peer broke AudioSocket framing; the call cannot go on."""


def encode(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


def _check(kind: int, size: int) -> None:
    """Lengths each kind must have (res_audiosocket.h)."""
    name = KINDS[kind]
    if kind == KIND_UUID and size != 16:
        raise FrameError(f"UUID frame of {size} bytes, need 16")
    if kind == KIND_DTMF and size != 1:
        raise FrameError(f"DTMF frame of {size} bytes, need 1")
    if kind in AUDIO_RATES and (size == 0 or size % 2):
        raise FrameError(f"{name} frame of {size} bytes: not 16-bit samples")
    if kind == KIND_ERROR and size > 1:
        raise FrameError(f"error frame of {size} bytes, need 0 or 1")


async def read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    """One frame; `FrameError` for an unknown kind, a wrong length or an oversized payload."""
    kind, size = struct.unpack(">BH", await reader.readexactly(3))
    if kind not in KINDS:
        raise FrameError(f"unknown frame kind 0x{kind:02x}")
    if size > limit:
        raise FrameError(f"{KINDS[kind]} payload of {size} bytes is over the {limit}-byte limit")
    _check(kind, size)
    return kind, await reader.readexactly(size) if size else b""


class AudioSocketTransport:
    """One AudioSocket call: a paced send queue out, framed audio/DTMF/hang-up in."""

    protocol = "audiosocket"

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, config: ServerConfig
    ) -> None:
        self.reader, self.writer, self.config = reader, writer, config
        self.gone = False
        self.stats: dict[str, float] = dict.fromkeys(("frames_in", "frames_out", "dropped_on_barge_in"), 0)
        self._queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()  # (reply_id, frame)
        self._written: dict[int, float] = {}  # reply_id → ms of it written onto the line
        self._epoch = 0  # bumped by clear(): a frame taken before it is not sent after it
        self._idle = asyncio.Event()
        self._idle.set()
        self._resamplers: dict[int, StreamResampler] = {}
        self._pacer = asyncio.create_task(self._pace(), name="audiosocket-pacer")

    # --- bot → caller -------------------------------------------------------------------------------

    async def play(self, frame: BotAudio) -> None:
        if self.gone:
            return
        if self._queue.qsize() >= MAX_QUEUED:  # the pacer is stuck on a peer that stopped reading
            self.stats["dropped_unread"] = self.stats.get("dropped_unread", 0) + 1
            return
        self._idle.clear()
        self._queue.put_nowait((frame.reply_id, encode(KIND_AUDIO, frame.pcm.astype("<i2").tobytes())))

    async def clear(self) -> None:
        """Barge-in: whatever is queued is never sent."""
        self._epoch += 1
        while not self._queue.empty():
            self._queue.get_nowait()
            self.stats["dropped_on_barge_in"] += 1
        self._idle.set()

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        """Exactly what the pacer wrote of the reply: Asterisk plays it as it arrives."""
        return self._written.get(reply_id, 0.0)

    async def _pace(self) -> None:
        """Send one frame per frame-length on an absolute clock; restart the clock after a pause."""
        loop = asyncio.get_running_loop()
        due = 0.0
        while True:
            reply_id, data = await self._queue.get()
            epoch, now = self._epoch, loop.time()
            length = (len(data) - 3) / 2 / RATE
            if now - due > length:  # idle or far behind: start a new clock
                due = now
            elif due > now:
                await asyncio.sleep(due - now)
            if epoch == self._epoch:
                await self._write(data)
                self.stats["frames_out"] += 1
                self._written[reply_id] = self._written.get(reply_id, 0.0) + length * 1000.0
            due += length
            if self._queue.empty():
                self._idle.set()

    async def _write(self, data: bytes) -> None:
        if self.gone:
            return
        try:
            self.writer.write(data)
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands just as the
            # drain completes, so `finish` would wait forever for the cancelled pacer (fuzzing found it)
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await self.writer.drain()
        except (ConnectionError, OSError, TimeoutError) as exc:
            log.debug("audiosocket write failed, caller gone: %r", exc)
            self.gone = True

    async def on_event(self, frame: Frame) -> None:
        """AudioSocket has no channel for events; observers get them from the core."""

    # --- caller → bot -------------------------------------------------------------------------------

    async def receive(self, call: Call) -> Ending:
        while True:
            try:
                kind, payload = await read_frame(self.reader, self.config.max_message_bytes)
            except asyncio.IncompleteReadError as exc:
                self.gone = True
                return Ending("caller disconnected" + (" mid-frame" if exc.partial else ""), "caller")
            except (ConnectionError, OSError):
                self.gone = True
                return Ending("caller disconnected", "caller")
            except FrameError as exc:
                log.warning("audiosocket call %s: %s", call.id, exc)
                return Ending(f"protocol error: {exc}", "error", code=1002)
            call.inbound()
            if kind == KIND_HANGUP:
                return Ending("caller hung up", "caller")
            if kind == KIND_ERROR:
                code = payload[0] if payload else 0
                name = ERRORS.get(code, f"0x{code:02x}")
                return Ending(f"asterisk error: {name}", "caller" if code == 0x01 else "error", code=1011)
            if kind in AUDIO_RATES:
                self.stats["frames_in"] += 1
                await call.caller_audio(self._to_channel_rate(AUDIO_RATES[kind], payload))
            elif kind == KIND_DTMF and chr(payload[0]) in DTMF_DIGITS:
                await call.send_dtmf(chr(payload[0]))
            else:
                log.warning("audiosocket call %s: ignored %s frame %r", call.id, KINDS[kind], payload[:16])

    def _to_channel_rate(self, rate: int, payload: bytes) -> PCM:
        pcm = np.frombuffer(payload, "<i2").astype(np.int16)
        if rate == RATE:
            return pcm
        resampler = self._resamplers.setdefault(rate, StreamResampler(rate, RATE))
        return resampler.process(pcm)

    # --- the end ------------------------------------------------------------------------------------

    async def finish(self, ending: Ending) -> None:
        """Let the goodbye play out, then a hang-up frame (unless the caller already left) and close."""
        if ending.by == "bot":
            try:
                await asyncio.wait_for(self._idle.wait(), self.config.hangup_grace_s)
            except TimeoutError:
                log.info("audiosocket: send queue not drained in time")
        await self.clear()
        self._pacer.cancel()
        await asyncio.gather(self._pacer, return_exceptions=True)
        if ending.by != "caller":
            await self._write(encode(KIND_HANGUP))
        await close_writer(self.writer)


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


async def _connection(
    hub: CallHub, allowed: list[Network], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Admit and run one AudioSocket connection: an allowed address, the UUID frame first, then the call."""
    host, port, *_ = writer.get_extra_info("peername") or ("?", 0)
    try:
        if not address_allowed(str(host), allowed):
            hub.refusal(None, check_token=False, extra=Refusal(1008, f"address {host} not allowed"))
            log.warning("audiosocket connection from %s:%s refused: not in audiosocket_allow", host, port)
            writer.write(encode(KIND_HANGUP))
            return
        try:
            kind, payload = await asyncio.wait_for(
                read_frame(reader, hub.config.max_message_bytes), hub.config.start_timeout_s
            )
            if kind != KIND_UUID:
                raise FrameError(f"{KINDS[kind]} frame before the UUID")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, FrameError) as exc:
            reason = str(exc) if isinstance(exc, FrameError) else f"no UUID frame ({type(exc).__name__})"
            log.warning("audiosocket connection from %s:%s refused: %s", host, port, reason)
            writer.write(encode(KIND_HANGUP))
            return
        refusal = hub.refusal(None, check_token=False)
        if refusal is not None:
            log.warning("audiosocket call %s refused: %s", uuid.UUID(bytes=payload), refusal.reason)
            writer.write(encode(KIND_HANGUP))
            return
        transport = AudioSocketTransport(reader, writer, hub.config)
        meta = {"uuid": str(uuid.UUID(bytes=payload)), "peer": f"{host}:{port}"}
        await hub.open(transport, RATE, meta).run()
    except Exception:
        log.exception("audiosocket connection from %s:%s failed", host, port)
    finally:
        await close_writer(writer)


async def start_server(hub: CallHub, host: str, port: int) -> asyncio.Server:
    """Listen for Asterisk; each connection is one call admitted by `hub` from `server.audiosocket_allow`."""
    allowed = networks(hub.config.audiosocket_allow)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _connection(hub, allowed, reader, writer)

    return await asyncio.start_server(on_connection, host, port)
