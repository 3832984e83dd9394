"""Genesys Cloud AudioConnector (`/genesys/audiohook`): a bot on Genesys's AudioHook protocol, version 2.

Per Genesys's "AudioHook Protocol Specification" and the "AudioConnector" integration pages (Genesys Cloud
Developer Center, protocol version "2", 2025-26). Genesys (the client) opens the socket with a signed
request, then every text message is `{"version": "2", "id": <session>, "type", "seq", "serverseq" |
"clientseq", "position", "parameters"}`; each side numbers its own messages (`seq` from 1) and says the
last one it saw of the other's. Client → us: `open` (organizationId, conversationId, participant {ani,
dnis…}, media offers, language, inputVariables), `ping`, `update`, `paused`/`resumed`, `dtmf` (digit),
`playback_started`/`playback_completed`, `error`, `close`; binary frames of PCMU at 8 kHz. Us → client:
`opened` (the media we chose: PCMU, 8 kHz, the `external` channel — the caller), `pong`, binary PCMU, an
`event` with a `barge_in` entity on barge-in (Genesys drops the queued audio), `disconnect` (reason
`completed`, `outputVariables`) to hang up, `closed` to answer `close`.

Playback report: Genesys has no per-sentence mark; `playback_completed` says the audio sent so far has all
played, so it confirms every sentence before it (and the goodbye, before our `disconnect`). Our hang-up:
`disconnect` with `outputVariables` {`endReason`, `transfer` ("true"/"false"), `transferTarget`} for the
Architect flow to route on, and on a transfer the warm hand-off summary (`voicebot.handoff`, its `wire()`
form: `handoffReason`, `handoffDetail`, `intent`, `flow`, `slots` (masked), `sentimentTrend`, `summary`,
`consoleUrl`, `callId`; strings, as output variables are) for the flow to hand to the agent's script or
the interaction's participant data; Genesys answers with `close`, we answer `closed` and the socket closes. A
connection probe (conversationId all zeros, sent when the integration is saved) gets `opened` and
`closed`, and no call. Authentication: with `server.genesys_api_key` (and `genesys_client_secret`) set, the
`X-API-KEY` must match and the request must carry a valid signature (`telephony.httpsig`); otherwise the
gateway token, as `X-API-KEY` or `?token=…`. A failure closes the socket at once with 1008 and the reason
(accepted first, as every route here does, so the reason reaches Genesys's logs rather than a bare 403).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import WebSocket

from telephony.httpsig import check_request
from telephony.session import Call, CallHub, Ending
from telephony.stream import (
    Opened,
    StreamTransport,
    WireError,
    as_int,
    codec,
    parse_json,
    serve_stream,
    strings,
    text,
)
from telephony.websocket import WebSocketLine
from voicebot.config import ServerConfig

log = logging.getLogger(__name__)
VERSION = "2"
PROBE = "00000000-0000-0000-0000-000000000000"
QUIET = frozenset({"update", "paused", "resumed", "discarded", "playback_started", "error"})
Message = dict[str, Any]


def obj(value: Any) -> Message:
    """`value` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def chosen_media(offers: Any) -> Message:
    """The offer we take: PCMU at 8 kHz on the caller's (`external`) channel alone, or WireError 1003."""
    for offer in offers if isinstance(offers, list) else []:
        if not isinstance(offer, dict):
            continue
        wanted = [offer.get("type"), offer.get("format"), offer.get("rate"), offer.get("channels")]
        if wanted == ["audio", "PCMU", 8000, ["external"]]:
            return {"type": "audio", "format": "PCMU", "channels": ["external"], "rate": 8000}
    raise WireError("no media offer we can take: need PCMU, 8000 Hz, channels [external]", 1003)


class Session:
    """One AudioHook session's numbering: our `seq`, the client's last `seq` seen."""

    def __init__(self, line: WebSocketLine, session_id: str) -> None:
        self.line, self.id = line, session_id
        self.seq = self.clientseq = 0

    async def send(self, kind: str, parameters: Message | None = None) -> None:
        self.seq += 1
        message = {"version": VERSION, "type": kind, "seq": self.seq, "clientseq": self.clientseq}
        await self.line.send_json(message | {"id": self.id, "parameters": parameters or {}})

    def saw(self, data: Message) -> bool:
        """Note a client message's `seq`; False when it does not follow the last one."""
        seq = as_int(data.get("seq"))
        in_order = seq == self.clientseq + 1
        self.clientseq = seq if seq is not None else self.clientseq
        return in_order


class GenesysTransport(StreamTransport):
    protocol = "genesys"

    def __init__(self, session: Session, config: ServerConfig) -> None:
        super().__init__(session.line, config, session.id, codec("pcmu", 8_000))
        self.session = session
        self.stats["sequence_gaps"] = 0
        self._pending: list[str] = []  # marks since the last playback_completed
        self._close_seen = asyncio.Event()

    async def send_audio(self, data: bytes) -> None:
        await self.line.send_bytes(data)

    async def send_mark(self, name: str) -> None:
        self._pending.append(name)  # confirmed by the next playback_completed

    async def send_clear(self) -> None:
        self._pending.clear()
        await self.session.send("event", {"entities": [{"type": "barge_in", "data": {}}]})

    async def handle(self, call: Call, message: str | bytes) -> bool:
        if isinstance(message, bytes):
            if len(message) > self.config.max_message_bytes:
                limit = self.config.max_message_bytes
                raise WireError(f"audio of {len(message)} bytes is over the {limit} limit", 1009)
            await self.audio_in(call, message)
            return False
        data = parse_json(message, self.config.max_message_bytes, "type")
        kind = data["type"]
        if not self.session.saw(data):
            self.stats["sequence_gaps"] += 1
        parameters = obj(data.get("parameters"))
        if kind == "ping":
            await self.session.send("pong")
        elif kind == "dtmf":
            await self.digit(call, parameters.get("digit"))
        elif kind == "playback_completed":
            for name in self._pending:
                self.played(name)
            self._pending.clear()
        elif kind == "close":
            await self.session.send("closed")
            self._close_seen.set()
            return True
        elif kind == "open":
            self.ignore("repeated 'open'")
        elif kind not in QUIET:
            self.ignore(f"unknown message type {kind[:40]!r}")
        return False

    async def hang_up(self, ending: Ending) -> None:
        """`disconnect` with output variables, then wait for Genesys's `close` (answered by the reader)."""
        if not self._close_seen.is_set() and not self.line.gone:
            transfer = ending.transfer
            variables = {"endReason": ending.describe()[:200], "transfer": str(transfer is not None).lower()}
            variables["transferTarget"] = transfer.target or "agent" if transfer is not None else ""
            variables |= ending.handoff.wire() if ending.handoff is not None else {}
            reason = "completed" if ending.by in ("bot", "caller", "server") else "error"
            await self.session.send("disconnect", {"reason": reason, "outputVariables": variables})
            try:
                await asyncio.wait_for(self._close_seen.wait(), self.config.hangup_grace_s)
            except TimeoutError:
                log.info("genesys session %s: no 'close' after our disconnect", self.sid)
        await self.line.close(ending.code, ending.describe())


async def await_open(line: WebSocketLine, limit: int) -> Message:
    message = await line.receive()
    if message is None:
        raise WireError("caller disconnected before 'open'", 1000)
    if isinstance(message, bytes):
        raise WireError("audio before 'open'", 1002)
    data = parse_json(message, limit, "type")
    if data["type"] != "open":
        raise WireError(f"'{text(data['type'])[:40]}' before 'open'")
    if not isinstance(data.get("id"), str) or text(data["id"]) != data["id"] or not data["id"]:
        raise WireError("'open' without a session id", 1007)
    return data


async def probe(session: Session, line: WebSocketLine, media: Message, limit: int) -> None:
    """Genesys's connection probe: answer it, then its `close`, with no call."""
    await session.send("opened", {"startPaused": False, "media": [media]})
    while (message := await line.receive()) is not None:
        if not isinstance(message, bytes) and parse_json(message, limit, "type")["type"] == "close":
            await session.send("closed")
            break
    await line.close(1000, "probe answered")


async def genesys_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    config = hub.config
    refusal = check_request(ws, config, query_token)

    async def opening(line: WebSocketLine) -> Opened:
        if refusal is not None:  # before anything is read; a close reason Genesys's logs can show
            raise WireError(refusal, 1008)
        data = await await_open(line, config.max_message_bytes)
        session = Session(line, data["id"])
        session.saw(data)
        parameters = obj(data.get("parameters"))
        media = chosen_media(parameters.get("media"))
        if text(parameters.get("conversationId", "")) == PROBE:
            await probe(session, line, media, config.max_message_bytes)
            raise WireError("connection probe answered", 1000)
        await session.send("opened", {"startPaused": False, "media": [media]})
        participant = obj(parameters.get("participant"))
        meta: Message = {
            "sessionId": session.id,
            "conversationId": text(parameters.get("conversationId", "")),
        }
        meta |= {"ani": text(participant.get("ani", "")), "dnis": text(participant.get("dnis", ""))}
        meta["parameters"] = strings(parameters.get("inputVariables"))
        return Opened(GenesysTransport(session, config), 8_000, meta, check_token=False)

    await serve_stream(ws, hub, "genesys", opening, "'open'")
