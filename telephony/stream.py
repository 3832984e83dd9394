"""What every carrier's media WebSocket shares: codecs, strict JSON, marks, admission.

Twilio, Telnyx, Plivo, Exotel, Vonage, jambonz, FreeSWITCH and Genesys all open a WebSocket to us, say
who the call is in a first message, then stream caller audio and take the bot's audio back. They differ in
names and framing only, so the protocol modules (`telephony.mediastream`, `telephony.binarystream`,
`telephony.genesys`) translate and `StreamTransport` here does the rest once:

- playback report: a mark (Twilio `mark`, Plivo `checkpoint`, Vonage `notify`, jambonz `mark`…) after each
  sentence; its echo says the caller's side really played the audio before it, so `played_ms` never
  reports less than what was echoed. A barge-in sends the protocol's clear and forgets pending marks.
- hang-up from our side: a final mark, waited for up to `hangup_grace_s` so the caller hears the goodbye,
  then the protocol's own hang-up (a message, a close). Without marks, the audio sent ahead of the clock
  (`pipeline.send_ahead_ms`) is given `UNMARKED_GRACE_S` to play.
- bad input: anything that makes the stream untrustworthy raises `WireError` with a WebSocket close code
  (1003 binary where text is due or a format we cannot speak, 1007 malformed JSON, 1009 oversize, 1002
  wrong order, 1008 auth); harmless oddities are logged and ignored, up to `MAX_IGNORED` per call.
- admission (`serve_stream`): accept, read the opening within `start_timeout_s`, check the token, run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import WebSocket

from telephony.session import DTMF_DIGITS, Call, CallHub, Ending
from telephony.websocket import WebSocketLine
from voicebot.audio import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from voicebot.config import ServerConfig
from voicebot.frames import PCM, BotAudio, Frame

log = logging.getLogger(__name__)
MAX_IGNORED = 50  # ignored messages before a stream counts as broken
FINAL_MARK = "end-of-call"
UNMARKED_GRACE_S = 0.3  # no marks: the far end still holds `pipeline.send_ahead_ms` (100) of audio to play
STATS = ("frames_in", "frames_out", "marks_sent", "marks_played", "clears", "ignored")


class WireError(Exception):
    """The stream broke the protocol; `code` is the WebSocket close code to end it with."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


# --- codecs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """One wire audio format: `name` as we log it, its rate, and the two conversions from/to PCM16."""

    name: str
    rate: int
    width: int  # bytes per sample: a payload must be a whole number of them
    encode: Callable[[PCM], bytes]
    decode: Callable[[bytes], PCM]


def _l16(order: str) -> tuple[Callable[[PCM], bytes], Callable[[bytes], PCM]]:
    dtype = f"{order}i2"
    return (lambda pcm: pcm.astype(dtype).tobytes()), (
        lambda data: np.frombuffer(data, dtype).astype(np.int16)
    )


ENCODERS: dict[str, tuple[int, tuple[Callable[[PCM], bytes], Callable[[bytes], PCM]]]] = {
    "pcmu": (1, (ulaw_encode, ulaw_decode)),
    "pcma": (1, (alaw_encode, alaw_decode)),
    "l16be": (2, _l16(">")),  # RTP's L16 (RFC 3551 §4.5.11): network byte order
    "l16le": (2, _l16("<")),  # what PBXs and most carriers mean by raw/slin/audio/l16
}
RATES = (8_000, 16_000, 24_000, 48_000)


def codec(kind: str, rate: int) -> Codec:
    """The codec `kind` ('pcmu', 'pcma', 'l16be', 'l16le') at `rate`; G.711 is 8 kHz only."""
    width, (encode, decode) = ENCODERS[kind]
    if rate not in RATES or (width == 1 and rate != 8_000):
        raise WireError(f"unsupported audio rate {rate} for {kind}", 1003)
    return Codec(f"{kind}/{rate}", rate, width, encode, decode)


# --- strict parsing ---------------------------------------------------------------------------------


def parse_json(message: str | bytes, limit: int, key: str | None = "event") -> dict[str, Any]:
    """One JSON control message: an object (whose `key`, if given, is a string), or `WireError`."""
    if isinstance(message, bytes):
        raise WireError("binary message where JSON text was due", 1003)
    if len(message) > limit:
        raise WireError(f"message of {len(message)} characters is over the {limit} limit", 1009)
    try:
        data = json.loads(message)
    except ValueError:
        raise WireError("malformed JSON", 1007) from None
    except RecursionError:  # nested deeper than the decoder's recursion limit: `[[[[…` fits in 4 KiB
        raise WireError("malformed JSON: nested too deeply", 1007) from None
    if not isinstance(data, dict) or (key is not None and not isinstance(data.get(key), str)):
        raise WireError(f"not a control message (no {key or 'object'})", 1007)
    return data


def text(value: Any) -> str:
    """`value` as a string that encodes to UTF-8: JSON's `\\ud800` escapes decode to lone surrogates,
    which the token check, the call records and the messages we send back cannot encode."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def as_int(value: Any) -> int | None:
    """Counters arrive as strings of integers or as numbers; anything else (bools, Infinity) is None."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def strings(value: Any) -> dict[str, str]:
    """A custom-parameters object as str → str (anything but an object is no parameters)."""
    return {text(k): text(v) for k, v in value.items()} if isinstance(value, dict) else {}


def b64decode(payload: Any) -> bytes | None:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- the transport ----------------------------------------------------------------------------------


class StreamTransport:
    """A carrier media stream as a `Transport`; subclasses say how audio, marks and clears look on their
    wire (`send_audio`, `send_mark`, `send_clear`), read one message (`handle`) and hang up (`hang_up`)."""

    protocol = ""
    has_marks = True  # False: the protocol cannot report playback; the speak stage's clock stands

    def __init__(self, line: WebSocketLine, config: ServerConfig, sid: str, wire: Codec) -> None:
        self.line, self.config, self.sid, self.codec = line, config, sid, wire
        self.stats: dict[str, float] = dict.fromkeys(STATS, 0)
        self._sentence: tuple[int, str] | None = None  # (reply_id, sentence) of the last frame sent
        self._reply_ms = 0.0
        self._marks: dict[str, tuple[int, float]] = {}  # sent, not yet echoed: (reply_id, reply ms before it)
        self._confirmed: dict[int, float] = {}  # reply_id → ms of it the caller's side has played
        self._cleared: set[str] = set()  # dropped by a clear: their echoes mean nothing was played
        self._heard = asyncio.Event()

    # --- the wire: subclasses ---

    async def send_audio(self, data: bytes) -> None:
        raise NotImplementedError

    async def send_mark(self, name: str) -> None:
        """Ask the far end to echo `name` once the audio sent before it has played."""

    async def send_clear(self) -> None:
        raise NotImplementedError

    async def handle(self, call: Call, message: str | bytes) -> bool:
        """Act on one inbound message; True once the caller has hung up."""
        raise NotImplementedError

    async def hang_up(self, ending: Ending) -> None:
        """Put the line down the protocol's way; by default a close frame with the reason."""
        await self.line.close(ending.code, ending.describe())

    # --- bot → caller ---

    async def play(self, frame: BotAudio) -> None:
        key = (frame.reply_id, frame.sentence)
        if self._sentence is not None and key != self._sentence:
            await self._mark_sentence()
        if self._sentence is None or self._sentence[0] != frame.reply_id:
            self._reply_ms = 0.0
        self._sentence = key
        await self.send_audio(self.codec.encode(frame.pcm))
        self.stats["frames_out"] += 1
        self._reply_ms += frame.pcm.size * 1000.0 / self.codec.rate
        if frame.last:
            await self._mark_sentence()
            self._sentence = None

    async def _mark_sentence(self) -> None:
        assert self._sentence is not None
        reply_id = self._sentence[0]
        if self.has_marks:
            name = f"r{reply_id}-{int(self.stats['marks_sent']) + 1}"
            self._marks[name] = (reply_id, self._reply_ms)
            await self.send_mark(name)
            self.stats["marks_sent"] += 1

    async def clear(self) -> None:
        """Barge-in: the far end drops its buffered audio; marks still pending were not played."""
        await self.send_clear()
        self.stats["clears"] += 1
        self._cleared.update(self._marks)
        self._marks.clear()
        self._sentence = None

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        """The speak stage's clock, but never less than the sentences the far end confirmed playing."""
        return max(clock_ms, self._confirmed.get(reply_id, 0.0))

    async def on_event(self, frame: Frame) -> None:
        """Carriers have no channel for pipeline events; observers get them from the core."""

    def played(self, name: str, cleared: bool = False) -> None:
        """A mark came back: played (or, `cleared`, dropped unplayed by a clear)."""
        if name == FINAL_MARK:
            self._heard.set()
        elif name in self._marks:
            reply_id, played = self._marks.pop(name)
            if not cleared:
                self.stats["marks_played"] += 1
                self._confirmed[reply_id] = max(played, self._confirmed.get(reply_id, 0.0))
        elif name in self._cleared:
            self._cleared.discard(name)
        else:
            self.ignore(f"unknown mark {name[:40]!r}")

    # --- caller → bot ---

    async def receive(self, call: Call) -> Ending:
        while (message := await self.line.receive()) is not None:
            call.inbound()
            try:
                if await self.handle(call, message):
                    return Ending("caller hung up", "caller")
            except WireError as exc:
                log.warning("%s stream %s: %s", self.protocol, self.sid, exc.reason)
                return Ending(f"protocol error: {exc.reason}", "error", code=exc.code)
        return Ending("caller disconnected", "caller")

    async def audio_in(self, call: Call, data: bytes | None) -> None:
        """One payload of caller audio in the stream's codec; a bad or empty one is ignored."""
        if not data or len(data) % self.codec.width:
            self.ignore("empty or broken audio payload")
            return
        self.stats["frames_in"] += 1
        await call.caller_audio(self.codec.decode(data))

    async def digit(self, call: Call, value: Any) -> None:
        """A key the caller pressed, as the protocol wrote it; anything but one DTMF key is ignored."""
        digit = text(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if len(digit) == 1 and digit in DTMF_DIGITS:
            await call.send_dtmf(digit)
        else:
            self.ignore(f"bad DTMF {value!r:.40}")

    def ignore(self, why: str) -> None:
        self.stats["ignored"] += 1
        log.warning("%s stream %s: ignored %s", self.protocol, self.sid, why)
        if self.stats["ignored"] > MAX_IGNORED:
            raise WireError(f"more than {MAX_IGNORED} bad messages", 1008)

    # --- the end ---

    async def finish(self, ending: Ending) -> None:
        """Let the caller hear the bot's last words (the final mark's echo), then hang up."""
        if ending.by in ("bot", "server") and not self.line.gone and not self.has_marks:
            await asyncio.sleep(UNMARKED_GRACE_S)
        elif ending.by in ("bot", "server") and not self.line.gone:
            await self.send_mark(FINAL_MARK)
            try:
                await asyncio.wait_for(self._heard.wait(), self.config.hangup_grace_s)
            except TimeoutError:
                log.info("%s stream %s: final mark not echoed in time", self.protocol, self.sid)
        await self.hang_up(ending)


# --- admission ----------------------------------------------------------------------------------------


@dataclass
class Opened:
    """What a stream's opening said: the transport to run, its channel rate, the call's metadata for the
    records, and the token it presented (None: none)."""

    transport: StreamTransport
    rate: int
    meta: dict[str, Any] = field(default_factory=dict)
    token: str | None = None
    check_token: bool = True  # False: the protocol authenticated the request itself (Genesys's signature)


async def serve_stream(
    ws: WebSocket,
    hub: CallHub,
    protocol: str,
    opening: Callable[[WebSocketLine], Awaitable[Opened]],
    awaited: str = "'start'",
    subprotocol: str | None = None,
) -> None:
    """Admit and run one carrier stream: read its opening (`awaited`, within `start_timeout_s`), check the
    token, run the call."""
    offered = ws.headers.get("sec-websocket-protocol", "")
    await ws.accept(subprotocol if subprotocol and subprotocol in offered else None)
    line = WebSocketLine(ws)
    try:
        opened = await asyncio.wait_for(opening(line), hub.config.start_timeout_s)
    except (TimeoutError, WireError) as exc:
        error = exc if isinstance(exc, WireError) else WireError(f"no {awaited} in time")
        log.warning("%s stream refused: %s", protocol, error.reason)
        await line.close(error.code, error.reason)
        return
    refusal = hub.refusal(opened.token, check_token=opened.check_token)
    if refusal is not None:
        log.warning("%s stream %s refused: %s", protocol, opened.transport.sid, refusal.reason)
        await line.close(refusal.code, refusal.reason)
        return
    await hub.open(opened.transport, opened.rate, opened.meta).run()


def basic_password(ws: WebSocket) -> str | None:
    """The password of an `Authorization: Basic` header (Exotel's and jambonz's WebSocket auth)."""
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    decoded = b64decode(value.strip())
    return decoded.decode(errors="replace").partition(":")[2] if decoded is not None else None
