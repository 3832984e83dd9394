"""The "Media Streams" family: JSON text messages with base64 audio, as Twilio defined them and Telnyx,
Exotel and Plivo followed.

All four send a `start` message naming the stream and its audio format (Twilio, Telnyx and Exotel may send
`connected` first), then `media` messages whose `payload` is base64 audio, DTMF as its own event, echoes of
the marks we send, and (except Plivo, whose line just closes) `stop` when the caller hangs up. We send
`media`, a mark after each sentence and a clear on barge-in. They differ only in names, which a `Dialect`
holds: where the stream id sits and what it is called (`streamSid`, `stream_id`, `stream_sid`,
`streamId`), how the audio format is stated, what a mark and a clear look like and how they come back.

`MediaStreamTransport` reads such a stream. Messages for another stream id, unknown events, bad payloads
and bad digits are ignored (`StreamTransport.ignore`); a repeated `start` too. Media timestamps, where the
dialect says they are the stream's own clock (ms since it began), show audio lost before the carrier:
the gap is filled with silence (at most `MAX_FILL_MS`), so the endpointer's clock stays true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import WebSocket

from telephony.session import Call, CallHub
from telephony.stream import (
    Codec,
    Opened,
    StreamTransport,
    WireError,
    as_int,
    b64decode,
    b64encode,
    parse_json,
    serve_stream,
    strings,
    text,
)
from telephony.websocket import WebSocketLine
from voicebot.config import ServerConfig

log = logging.getLogger(__name__)
MAX_FILL_MS = 1_000  # longest timestamp gap (audio lost before the carrier) filled with silence
Message = dict[str, Any]


@dataclass(frozen=True)
class Dialect:
    """One carrier's names for the Media Streams messages."""

    protocol: str
    sid: str  # the stream id's key, in `start` (top level or inside the start object) and every message
    sequence: str  # the sequence number's key
    fmt: Callable[[Message], Codec]  # the `start` object → the stream's codec, or WireError 1003
    media: Callable[[str, str, Codec], Message]  # (stream id, base64 payload, codec) → outbound media
    mark: Callable[[str, str], Message]  # (stream id, name) → a mark/checkpoint
    clear: Callable[[str], Message]  # stream id → a clear
    echoes: dict[str, Callable[[Message], str]]  # event → the echoed mark's name
    meta: Callable[[Message, Message], Message]  # (start message, start object) → the call's metadata
    token: Callable[[Message, Message], str | None] = lambda message, start: None
    preamble: frozenset[str] = frozenset({"connected"})  # events allowed before `start`
    stops: frozenset[str] = frozenset({"stop"})
    quiet: frozenset[str] = frozenset()  # acknowledgements we need not act on (Plivo's clearedAudio)
    digit: Callable[[Message], Any] = lambda message: (message.get("dtmf") or {}).get("digit")
    timeline: bool = True  # media timestamps are ms since the stream began (gaps are lost audio)
    strict_sid: bool = True  # every message must name our stream (else: only those that name one)


def twilio_shaped(
    protocol: str,
    sid: str,
    sequence: str,
    fmt: Callable[[Message], Codec],
    ids: tuple[str, ...],
    parameters: str,
    names_stream: bool = True,
    **options: Any,
) -> Dialect:
    """A dialect with Twilio's message shapes under other names: `media`/`mark`/`clear` out (naming the
    stream under `sid` where `names_stream`), `mark` echoes in, the `start` object's `ids` and its custom
    `parameters` (whose `token` is the gateway token) for the call's metadata."""

    def named(stream: str) -> Message:
        return {sid: stream} if names_stream else {}

    def meta(data: Message, start: Message) -> Message:
        found = {key: text(start.get(key, "")) for key in ids}
        params = {k: v for k, v in strings(start.get(parameters)).items() if k != "token"}
        return found | {sid: text(data.get(sid) or start.get(sid)), "parameters": params}

    return Dialect(
        protocol=protocol,
        sid=sid,
        sequence=sequence,
        fmt=fmt,
        media=lambda stream, payload, _: {"event": "media", **named(stream), "media": {"payload": payload}},
        mark=lambda stream, name: {"event": "mark", **named(stream), "mark": {"name": name}},
        clear=lambda stream: {"event": "clear", **named(stream)},
        echoes={"mark": lambda data: data["mark"]["name"]},
        meta=meta,
        token=lambda data, start: strings(start.get(parameters)).get("token"),
        **options,
    )


def start_object(data: Message) -> Message:
    start = data.get("start")
    if not isinstance(start, dict):
        raise WireError("'start' without a start object", 1007)
    return start


def stream_id(dialect: Dialect, data: Message, start: Message) -> str:
    sid = data.get(dialect.sid) or start.get(dialect.sid)
    if not isinstance(sid, str) or not sid:
        raise WireError(f"'start' without a {dialect.sid}", 1007)
    if text(sid) != sid:  # every message we send names it: it must be valid Unicode
        raise WireError(f"'start' with a {dialect.sid} that is not valid Unicode", 1007)
    return sid


async def await_start(line: WebSocketLine, dialect: Dialect, limit: int) -> Message:
    """Read up to `start`; the preamble's events may come first, anything else is a protocol error."""
    while (message := await line.receive()) is not None:
        data = parse_json(message, limit)
        if data["event"] == "start":
            return data
        if data["event"] not in dialect.preamble:
            raise WireError(f"'{text(data['event'])[:40]}' before 'start'")
    raise WireError("caller disconnected before 'start'", 1000)


class MediaStreamTransport(StreamTransport):
    """One Media Streams-style stream in `dialect`."""

    def __init__(
        self, line: WebSocketLine, config: ServerConfig, dialect: Dialect, sid: str, wire: Codec
    ) -> None:
        super().__init__(line, config, sid, wire)
        self.dialect = dialect
        self.protocol = dialect.protocol
        self.stats |= {"sequence_gaps": 0, "lost_ms": 0}
        self.meta: Message = {}  # the call's ids and custom parameters, from `start`
        self._sequence: int | None = None
        self._next_ms: int | None = None

    async def send_audio(self, data: bytes) -> None:
        await self.line.send_json(self.dialect.media(self.sid, b64encode(data), self.codec))

    async def send_mark(self, name: str) -> None:
        await self.line.send_json(self.dialect.mark(self.sid, name))

    async def send_clear(self) -> None:
        await self.line.send_json(self.dialect.clear(self.sid))

    async def handle(self, call: Call, message: str | bytes) -> bool:
        data = parse_json(message, self.config.max_message_bytes)
        event, dialect = data["event"], self.dialect
        self._count(data)
        named = data.get(dialect.sid)
        if event in dialect.preamble or event == "start":
            self.ignore(f"repeated '{event[:40]}'")
        elif event in dialect.stops:  # one stream per socket: its stop ends the call whatever stream it names
            if named != self.sid:  # else a dead line until the idle timeout (the carrier fuzz found it)
                why = f"'{event[:40]}' names stream {text(named)[:40]!r}: the call ends"
                log.info("%s stream %s: %s", dialect.protocol, self.sid, why)
            return True
        elif named != self.sid and (dialect.strict_sid or named is not None):
            self.ignore(f"'{event[:40]}' for unknown stream {text(named)[:40]!r}")
        elif event == "media":
            await self._media(call, data.get("media"))
        elif event == "dtmf":
            await self.digit(call, self._field(dialect.digit, data))
        elif event in dialect.echoes:
            name = self._field(dialect.echoes[event], data)
            self.played(text(name) if isinstance(name, str) else "")
        elif event not in dialect.quiet:
            self.ignore(f"unknown event {event[:40]!r}")
        return False

    @staticmethod
    def _field(get: Callable[[Message], Any], data: Message) -> Any:
        """A nested field, or None where the message's shape is not what the dialect expects."""
        try:
            return get(data)
        except (AttributeError, TypeError, KeyError):  # KeyError: the fuzz found `{"mark": {}}`
            return None

    def _count(self, data: Message) -> None:
        sequence = as_int(data.get(self.dialect.sequence))
        if sequence is not None:
            if self._sequence is not None and sequence != self._sequence + 1:
                self.stats["sequence_gaps"] += 1
            self._sequence = sequence

    async def _media(self, call: Call, media: Any) -> None:
        if not isinstance(media, dict) or media.get("track", "inbound") not in ("inbound", "inbound_track"):
            self.ignore("media without an inbound track")
            return
        audio = b64decode(media.get("payload"))
        stamp = as_int(media.get("timestamp")) if self.dialect.timeline and audio else None
        if stamp is not None and audio is not None:
            rate = self.codec.rate
            if self._next_ms is not None and stamp > self._next_ms:  # audio lost before the carrier
                lost = stamp - self._next_ms
                self.stats["lost_ms"] += lost
                await call.caller_audio(np.zeros(min(lost, MAX_FILL_MS) * rate // 1000, np.int16))
            self._next_ms = stamp + len(audio) // self.codec.width * 1000 // rate
        await self.audio_in(call, audio)


def opened(
    line: WebSocketLine,
    config: ServerConfig,
    dialect: Dialect,
    data: Message,
    make: Callable[..., MediaStreamTransport] = MediaStreamTransport,
) -> Opened:
    """The `start` message `data` read: the transport, its rate, the call's metadata and token."""
    start = start_object(data)
    sid = stream_id(dialect, data, start)
    wire = dialect.fmt(start)
    transport = make(line, config, dialect, sid, wire)
    transport.meta = dialect.meta(data, start)
    return Opened(transport, wire.rate, transport.meta, dialect.token(data, start))


async def media_stream_call(
    ws: WebSocket,
    hub: CallHub,
    dialect: Dialect,
    token: str | None,
    make: Callable[..., MediaStreamTransport] = MediaStreamTransport,
) -> None:
    """Admit and run one stream in `dialect`: wait for `start`, check its token (the stream's own, else
    `token`: from the URL or the upgrade request's credentials), run the call."""

    async def opening(line: WebSocketLine) -> Opened:
        data = await await_start(line, dialect, hub.config.max_message_bytes)
        result = opened(line, hub.config, dialect, data, make)
        result.token = result.token or token
        return result

    await serve_stream(ws, hub, dialect.protocol, opening)
