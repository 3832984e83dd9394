"""The carrier WebSocket routes: one path per protocol, each handing the socket to its module.

Kept apart from `telephony.server` so the app's own routes stay readable as carriers are added. Every
route takes the gateway token as `?token=…` (some carriers can also send it inside the stream; see each
module), and every one is admitted by the same `CallHub`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, WebSocket

from telephony.exotel import exotel_call
from telephony.freeswitch import freeswitch_call
from telephony.genesys import genesys_call
from telephony.jambonz import jambonz_call
from telephony.plivo import plivo_call
from telephony.session import CallHub
from telephony.telnyx import telnyx_call
from telephony.vonage import vonage_call

Handler = Callable[[WebSocket, CallHub, str | None], Awaitable[None]]
CARRIERS: dict[str, Handler] = {
    "/telnyx/stream": telnyx_call,
    "/plivo/stream": plivo_call,
    "/exotel/stream": exotel_call,
    "/vonage/socket": vonage_call,
    "/jambonz/listen": jambonz_call,
    "/freeswitch/fork": freeswitch_call,
    "/genesys/audiohook": genesys_call,
}


def _route(handler: Handler, hub: CallHub) -> Callable[[WebSocket, str | None], Awaitable[None]]:
    async def route(ws: WebSocket, token: str | None = None) -> None:
        await handler(ws, hub, token)

    return route


def add_carrier_routes(app: FastAPI, hub: CallHub) -> None:
    for path, handler in CARRIERS.items():
        app.add_api_websocket_route(path, _route(handler, hub))
