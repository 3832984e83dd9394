"""Twilio Media Streams (`/twilio/stream`): the WebSocket of a bidirectional `<Connect><Stream>`.

Per Twilio's "Media Streams — WebSocket Messages" reference. Twilio → us, JSON text: `connected`, `start`
(streamSid, callSid, accountSid, customParameters, mediaFormat audio/x-mulaw 8000 Hz mono), `media` (20 ms
of base64 μ-law), `dtmf`, `mark` (our mark, echoed once the audio before it has played), `stop`;
sequenceNumber, chunk and timestamp are strings of integers. Us → Twilio: `media` (base64 μ-law 8 kHz),
a `mark` after each sentence (its echo says what the caller really heard: `played_ms` never reports less
than the marks echoed so far), `clear` on barge-in.

Bad input never crashes the server: anything that makes the stream untrustworthy (binary or malformed
JSON, media before `start`, an oversized message, a bad media format) ends this call with a close code and
reason; harmless oddities (unknown events, another stream's messages, a bad payload, an unknown mark) are
logged and ignored, up to `MAX_IGNORED` per call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import WebSocket

from telephony.session import DTMF_DIGITS, Call, CallHub, Ending
from telephony.twiml import post_transfer
from telephony.websocket import WebSocketLine
from voicebot.audio import ulaw_decode, ulaw_encode
from voicebot.config import ServerConfig
from voicebot.frames import BotAudio, Frame

log = logging.getLogger(__name__)
RATE = 8_000
MAX_IGNORED = 50  # ignored messages before a stream counts as broken
MAX_FILL_MS = 1_000  # longest timestamp gap (audio lost before Twilio) filled with silence
FINAL_MARK = "end-of-call"
STATS = ("frames_in", "frames_out", "marks_sent", "marks_played", "clears", "ignored", "sequence_gaps")


class WireError(Exception):
    """The stream broke the protocol; `code` is the WebSocket close code to end it with."""

    def __init__(self, reason: str, code: int = 1002) -> None:
        super().__init__(reason)
        self.reason, self.code = reason, code


@dataclass(frozen=True)
class StreamStart:
    stream_sid: str
    call_sid: str
    account_sid: str
    parameters: dict[str, str] = field(default_factory=dict)


def parse(message: str | bytes, limit: int) -> dict[str, Any]:
    """One Twilio message as a dict with a string `event`, or `WireError`."""
    if isinstance(message, bytes):
        raise WireError("binary message: Media Streams messages are JSON text", 1003)
    if len(message) > limit:
        raise WireError(f"message of {len(message)} characters is over the {limit} limit", 1009)
    try:
        data = json.loads(message)
    except ValueError:
        raise WireError("malformed JSON", 1007) from None
    except RecursionError:  # nested deeper than the decoder's recursion limit: `[[[[…` fits in 4 KiB
        raise WireError("malformed JSON: nested too deeply", 1007) from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise WireError("not a Media Streams message (no event)", 1007)
    return data


def parse_start(data: dict[str, Any]) -> StreamStart:
    start = data.get("start")
    if not isinstance(start, dict):
        raise WireError("'start' without a start object", 1007)
    sid = data.get("streamSid") or start.get("streamSid")
    if not isinstance(sid, str) or not sid:
        raise WireError("'start' without a streamSid", 1007)
    if _text(sid) != sid:  # every message we send names it: it must be valid Unicode
        raise WireError("'start' with a streamSid that is not valid Unicode", 1007)
    media = start.get("mediaFormat")
    keys = ("encoding", "sampleRate", "channels")
    fmt = [media.get(key) for key in keys] if isinstance(media, dict) else []
    if fmt != ["audio/x-mulaw", RATE, 1]:
        raise WireError(f"unsupported media format {media}: need audio/x-mulaw 8000 Hz mono", 1003)
    params = start.get("customParameters") or {}
    return StreamStart(
        stream_sid=sid,
        call_sid=_text(start.get("callSid", "")),
        account_sid=_text(start.get("accountSid", "")),
        parameters={_text(k): _text(v) for k, v in params.items()} if isinstance(params, dict) else {},
    )


def _text(value: Any) -> str:
    """`value` as a string that encodes to UTF-8: JSON's `\\ud800` escapes decode to lone surrogates,
    which the token check, the call records and the transfer hook cannot encode."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


async def await_start(line: WebSocketLine, limit: int) -> StreamStart:
    """Read `connected` (optional) and `start`; anything else first is a protocol error."""
    while (message := await line.receive()) is not None:
        data = parse(message, limit)
        if data["event"] == "start":
            return parse_start(data)
        if data["event"] != "connected":
            raise WireError(f"'{data['event']}' before 'start'")
    raise WireError("caller disconnected before 'start'", 1000)


def _int(value: Any) -> int | None:
    """Twilio's counters are strings of integers; tolerate numbers, ignore anything else."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        return None


class TwilioTransport:
    """One Media Stream: μ-law both ways, marks per sentence, `clear` on barge-in, close to hang up."""

    protocol = "twilio"

    def __init__(self, line: WebSocketLine, start: StreamStart, config: ServerConfig) -> None:
        self.line, self.start, self.config = line, start, config
        self.stats: dict[str, float] = dict.fromkeys((*STATS, "lost_ms"), 0)
        self._sequence: int | None = None
        self._next_ms: int | None = None
        self._sentence: tuple[int, str] | None = None  # (reply_id, sentence) of the last frame sent
        self._reply_ms = 0.0
        self._marks: dict[str, tuple[int, float]] = {}  # sent, not yet echoed: (reply_id, reply ms before it)
        self._confirmed: dict[int, float] = {}  # reply_id → ms of it the caller's side has played
        self._cleared: set[str] = set()  # dropped by a clear: their echoes mean nothing was played
        self._heard = asyncio.Event()

    # --- bot → caller -------------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        await self.line.send_json({**message, "streamSid": self.start.stream_sid})

    async def play(self, frame: BotAudio) -> None:
        key = (frame.reply_id, frame.sentence)
        if self._sentence is not None and key != self._sentence:
            await self._mark_sentence()
        if self._sentence is None or self._sentence[0] != frame.reply_id:
            self._reply_ms = 0.0
        self._sentence = key
        payload = base64.b64encode(ulaw_encode(frame.pcm)).decode("ascii")
        await self._send({"event": "media", "media": {"payload": payload}})
        self.stats["frames_out"] += 1
        self._reply_ms += frame.pcm.size * 1000.0 / RATE
        if frame.last:
            await self._mark_sentence()
            self._sentence = None

    async def _mark_sentence(self) -> None:
        assert self._sentence is not None
        reply_id = self._sentence[0]
        name = f"r{reply_id}-{int(self.stats['marks_sent']) + 1}"
        self._marks[name] = (reply_id, self._reply_ms)
        await self._send({"event": "mark", "mark": {"name": name}})
        self.stats["marks_sent"] += 1

    async def clear(self) -> None:
        """Barge-in: Twilio drops its buffered audio; marks still pending were not played."""
        await self._send({"event": "clear"})
        self.stats["clears"] += 1
        self._cleared.update(self._marks)
        self._marks.clear()
        self._sentence = None

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        """The speak stage's clock, but never less than the sentences Twilio confirmed playing."""
        return max(clock_ms, self._confirmed.get(reply_id, 0.0))

    async def on_event(self, frame: Frame) -> None:
        """Twilio has no channel for events; observers get them from the core."""

    # --- caller → bot -------------------------------------------------------------------------------

    async def receive(self, call: Call) -> Ending:
        while (message := await self.line.receive()) is not None:
            call.inbound()
            try:
                if await self._handle(call, parse(message, self.config.max_message_bytes)):
                    return Ending("caller hung up", "caller")
            except WireError as exc:
                log.warning("twilio stream %s: %s", self.start.stream_sid, exc.reason)
                return Ending(f"protocol error: {exc.reason}", "error", code=exc.code)
        return Ending("caller disconnected", "caller")

    async def _handle(self, call: Call, data: dict[str, Any]) -> bool:
        """Act on one message; True when the stream stopped."""
        event = data["event"]
        self._count(data)
        if event in ("connected", "start"):
            self._ignore(f"repeated '{event}'")
        elif data.get("streamSid") != self.start.stream_sid:
            self._ignore(f"'{event}' for unknown stream {str(data.get('streamSid'))[:40]!r}")
        elif event == "media":
            await self._media(call, data.get("media"))
        elif event == "dtmf":
            dtmf = data.get("dtmf")
            digit = str(dtmf.get("digit", "")) if isinstance(dtmf, dict) else ""
            if digit in DTMF_DIGITS and digit:
                await call.send_dtmf(digit)
            else:
                self._ignore(f"bad DTMF {dtmf!r:.40}")
        elif event == "mark":
            mark = data.get("mark")
            self._played(str(mark.get("name")) if isinstance(mark, dict) else "")
        elif event == "stop":
            return True
        else:
            self._ignore(f"unknown event {event[:40]!r}")
        return False

    def _count(self, data: dict[str, Any]) -> None:
        sequence = _int(data.get("sequenceNumber"))
        if sequence is not None:
            if self._sequence is not None and sequence != self._sequence + 1:
                self.stats["sequence_gaps"] += 1
            self._sequence = sequence

    async def _media(self, call: Call, media: Any) -> None:
        if not isinstance(media, dict) or media.get("track", "inbound") != "inbound":
            self._ignore("media without an inbound track")
            return
        try:
            audio = base64.b64decode(media.get("payload"), validate=True)  # type: ignore[arg-type]
        except (binascii.Error, TypeError, ValueError):
            self._ignore("media payload is not base64")
            return
        if not audio:
            self._ignore("empty media payload")
            return
        stamp = _int(media.get("timestamp"))
        if stamp is not None:
            if self._next_ms is not None and stamp > self._next_ms:  # audio lost before Twilio
                lost = stamp - self._next_ms
                self.stats["lost_ms"] += lost
                await call.caller_audio(np.zeros(min(lost, MAX_FILL_MS) * RATE // 1000, np.int16))
            self._next_ms = stamp + len(audio) * 1000 // RATE
        self.stats["frames_in"] += 1
        await call.caller_audio(ulaw_decode(audio))

    def _played(self, name: str) -> None:
        if name == FINAL_MARK:
            self._heard.set()
        elif name in self._marks:
            self.stats["marks_played"] += 1
            reply_id, played = self._marks.pop(name)
            self._confirmed[reply_id] = max(played, self._confirmed.get(reply_id, 0.0))
        elif name in self._cleared:
            self._cleared.discard(name)
        else:
            self._ignore(f"unknown mark {name[:40]!r}")

    def _ignore(self, why: str) -> None:
        self.stats["ignored"] += 1
        log.warning("twilio stream %s: ignored %s", self.start.stream_sid, why)
        if self.stats["ignored"] > MAX_IGNORED:
            raise WireError(f"more than {MAX_IGNORED} bad messages", 1008)

    # --- the end ------------------------------------------------------------------------------------

    async def finish(self, ending: Ending) -> None:
        """Let the caller hear the bot's last words (final mark echo), run the transfer hook, close."""
        if ending.by in ("bot", "server") and not self.line.gone:
            await self._send({"event": "mark", "mark": {"name": FINAL_MARK}})
            try:
                await asyncio.wait_for(self._heard.wait(), self.config.hangup_grace_s)
            except TimeoutError:
                log.info("twilio stream %s: final mark not echoed in time", self.start.stream_sid)
        transfer = ending.transfer
        if transfer is not None and self.config.twilio_transfer_url:
            body: dict[str, str | None] = {"callSid": self.start.call_sid, "streamSid": self.start.stream_sid}
            body |= {"target": transfer.target, "reason": transfer.reason}
            self.stats["transfer_hook_ok"] = int(await post_transfer(self.config.twilio_transfer_url, body))
        await self.line.close(ending.code, ending.describe())


async def twilio_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    """Admit and run one Media Stream: wait for `start`, check its token, run the call."""
    await ws.accept()
    line = WebSocketLine(ws)
    try:
        start = await asyncio.wait_for(
            await_start(line, hub.config.max_message_bytes), hub.config.start_timeout_s
        )
    except (TimeoutError, WireError) as exc:
        error = exc if isinstance(exc, WireError) else WireError("no 'start' in time")
        log.warning("twilio stream refused: %s", error.reason)
        await line.close(error.code, error.reason)
        return
    refusal = hub.refusal(start.parameters.get("token") or query_token)
    if refusal is not None:
        log.warning("twilio stream %s refused: %s", start.stream_sid, refusal.reason)
        await line.close(refusal.code, refusal.reason)
        return
    meta = {
        "callSid": start.call_sid,
        "streamSid": start.stream_sid,
        "accountSid": start.account_sid,
        "parameters": {k: v for k, v in start.parameters.items() if k != "token"},
    }
    await hub.open(TwilioTransport(line, start, hub.config), RATE, meta).run()
