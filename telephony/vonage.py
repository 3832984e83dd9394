"""Vonage Voice API websockets (`/vonage/socket`): an NCCO `connect` action to a `websocket` endpoint.

Per Vonage's "WebSockets in the Vonage Voice API" guide and the NCCO reference (developer.vonage.com,
2025-26). Vonage opens the socket, sends one text message — `{"event": "websocket:connected",
"content-type": "audio/l16;rate=16000", …}` plus every key of the endpoint's `headers` — then binary frames
of 16-bit little-endian linear PCM, 20 ms each (320 bytes at 8 kHz, 640 at 16 kHz). DTMF arrives as text
`{"event": "websocket:dtmf", "digit": "5", "duration": 260}`. We send binary frames of the same format,
exactly 20 ms each (Vonage drops other sizes); after each sentence `{"action": "notify", "payload":
{"name": …}}`, which Vonage returns as `{"event": "websocket:notify", "payload": …}` once the audio before
it has played; on barge-in `{"action": "clear"}` (acknowledged by `websocket:cleared`, pending notifies are
dropped). The guide gives these control messages by example only, without a schema or a version: we read
`payload.name` and accept any other fields.

Authentication: Vonage signs its webhooks, not the socket, so the gateway token goes in the endpoint's
`headers` (`"token": "…"`, arriving in the first message) or in the URI (`?token=…`). Our hang-up closes the
socket, which ends that leg; the call goes on to the next NCCO only with the connect's `eventType:
synchronous` and an `eventUrl` that answers one (e.g. a `connect` to your agents).
"""

from __future__ import annotations

import re

from fastapi import WebSocket

from telephony.binarystream import BinaryDialect, First, Message, binary_stream_call
from telephony.session import CallHub
from telephony.stream import WireError, codec, text

CONTENT = re.compile(r"audio/l16;\s*rate=(8000|16000|24000)", re.IGNORECASE)


def opening(data: Message, query: dict[str, str]) -> First:
    if data.get("event") != "websocket:connected":
        raise WireError(f"{text(data.get('event'))[:40]!r} before 'websocket:connected'")
    found = CONTENT.fullmatch(text(data.get("content-type", "")).strip())
    if found is None:
        raise WireError(
            f"unsupported content-type {text(data.get('content-type'))[:40]!r}: need audio/l16", 1003
        )
    headers = {text(k): text(v) for k, v in data.items() if k not in ("event", "content-type")}
    params = {k: v for k, v in headers.items() if k != "token"}
    return First(codec("l16le", int(found.group(1))), {"parameters": params}, headers.get("token"))


VONAGE = BinaryDialect(
    protocol="vonage",
    opening=opening,
    kind=lambda data: text(data.get("event", "")),
    dtmf={"websocket:dtmf": lambda data: data["digit"]},
    echoes={"websocket:notify": lambda data: (data["payload"]["name"], False)},
    clear={"action": "clear"},
    mark=lambda name: {"action": "notify", "payload": {"name": name}},
    quiet=frozenset({"websocket:cleared"}),
    awaited="'websocket:connected'",
)


async def vonage_call(ws: WebSocket, hub: CallHub, query_token: str | None) -> None:
    await binary_stream_call(ws, hub, VONAGE, query_token, dict(ws.query_params))
