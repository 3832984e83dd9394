"""The "binary audio" family: one JSON text message to open, then raw 16-bit PCM in binary WebSocket frames
both ways, with JSON text for everything else — Vonage's Voice API websockets, jambonz `listen` and
FreeSWITCH's `mod_audio_fork` (which jambonz's `listen` is built on).

The opening text message says who the call is (Vonage: the NCCO's headers; jambonz: the call's attributes
and your metadata; FreeSWITCH: the metadata the dialplan passes) and, for some, the rate. After it, binary
messages are caller audio (a whole number of 16-bit samples, little-endian, at most
`server.max_message_bytes`), text messages are events: DTMF, the echo of a mark, the acknowledgement of a
clear. We send 20 ms binary frames (`pipeline.frame_ms`, which Vonage requires to stay 20), a mark after
each sentence where the protocol has one, the protocol's clear on barge-in, and hang up its way. A
`BinaryDialect` holds what differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket

from telephony.session import Call, CallHub, Ending
from telephony.stream import Codec, Opened, StreamTransport, WireError, parse_json, serve_stream, text
from telephony.websocket import WebSocketLine
from voicebot.config import ServerConfig
from voicebot.handoff import HandoffSummary

Message = dict[str, Any]


@dataclass(frozen=True)
class First:
    """What the opening message says: the codec, the call's metadata, the token it carries."""

    codec: Codec
    meta: Message
    token: str | None = None


@dataclass(frozen=True)
class BinaryDialect:
    protocol: str
    opening: Callable[[Message, dict[str, str]], First]  # (first message, URL query) → First, or WireError
    kind: Callable[[Message], str]  # an event's name
    dtmf: dict[str, Callable[[Message], Any]]  # event → the digit
    echoes: dict[str, Callable[[Message], tuple[str, bool]]]  # event → (mark name, dropped by a clear)
    clear: Message
    mark: Callable[[str], Message] | None = None  # None: no playback report on this wire
    quiet: frozenset[str] = frozenset()  # acknowledgements we need not act on
    bye: Message | None = None  # sent before closing when we hang up
    handoff: Callable[[HandoffSummary], Message] | None = None  # a transfer's summary, sent before `bye`
    subprotocol: str | None = None
    awaited: str = "metadata"


class BinaryStreamTransport(StreamTransport):
    def __init__(
        self, line: WebSocketLine, config: ServerConfig, dialect: BinaryDialect, wire: Codec
    ) -> None:
        super().__init__(line, config, "", wire)
        self.dialect = dialect
        self.protocol = dialect.protocol
        self.has_marks = dialect.mark is not None

    async def send_audio(self, data: bytes) -> None:
        await self.line.send_bytes(data)

    async def send_mark(self, name: str) -> None:
        if self.dialect.mark is not None:
            await self.line.send_json(self.dialect.mark(name))

    async def send_clear(self) -> None:
        await self.line.send_json(self.dialect.clear)

    async def handle(self, call: Call, message: str | bytes) -> bool:
        if isinstance(message, bytes):
            if len(message) > self.config.max_message_bytes:
                size = f"{len(message)} bytes"
                raise WireError(f"audio of {size} is over the {self.config.max_message_bytes} limit", 1009)
            await self.audio_in(call, message)
            return False
        data = parse_json(message, self.config.max_message_bytes, None)
        dialect = self.dialect
        event = dialect.kind(data)
        try:
            if event in dialect.dtmf:
                await self.digit(call, dialect.dtmf[event](data))
            elif event in dialect.echoes:
                name, cleared = dialect.echoes[event](data)
                self.played(text(name) if isinstance(name, str) else "", cleared)
            elif event not in dialect.quiet:
                self.ignore(f"unknown event {event[:40]!r}")
        except (AttributeError, TypeError, KeyError):  # the event's fields are not the shape they should be
            self.ignore(f"malformed {event[:40]!r}")
        return False

    async def hang_up(self, ending: Ending) -> None:
        if self.dialect.handoff is not None and ending.handoff is not None and not self.line.gone:
            await self.line.send_json(self.dialect.handoff(ending.handoff))
        if self.dialect.bye is not None:
            await self.line.send_json(self.dialect.bye)
        await super().hang_up(ending)


async def binary_stream_call(
    ws: WebSocket, hub: CallHub, dialect: BinaryDialect, token: str | None, query: dict[str, str]
) -> None:
    """Admit and run one stream in `dialect`: its opening text message within `start_timeout_s`, the token
    (the stream's own, else `token`), then the call."""

    async def opening(line: WebSocketLine) -> Opened:
        message = await line.receive()
        if message is None:
            raise WireError(f"caller disconnected before the {dialect.awaited}", 1000)
        if isinstance(message, bytes):
            raise WireError(f"audio before the {dialect.awaited}", 1002)
        first = dialect.opening(parse_json(message, hub.config.max_message_bytes, None), query)
        transport = BinaryStreamTransport(line, hub.config, dialect, first.codec)
        transport.sid = next((v for v in first.meta.values() if isinstance(v, str)), "")[:60]
        return Opened(transport, first.codec.rate, first.meta, first.token or token)

    await serve_stream(ws, hub, dialect.protocol, opening, f"{dialect.awaited}", dialect.subprotocol)


def kind_of(data: Message) -> str:
    """jambonz and FreeSWITCH name a message by `event` (DTMF) or `type` (everything else)."""
    value = data.get("event", data.get("type"))
    return text(value) if isinstance(value, str) else ""
