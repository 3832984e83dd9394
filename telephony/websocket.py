"""WebSocket plumbing shared by the browser and Twilio transports.

Sends tolerate a caller who already left (the pipeline may still be speaking when the socket dies; that is
not an error), receiving reports a disconnect as None, and close reasons are cut to the 123 bytes a close
frame allows (RFC 6455 §5.5.1).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import WebSocket

log = logging.getLogger(__name__)
MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame, never splitting a UTF-8 character; characters UTF-8 cannot carry
    (lone surrogates from a caller's JSON escapes) become '?' instead of failing the close."""
    return text.encode(errors="replace")[:MAX_REASON_BYTES].decode(errors="ignore")


class WebSocketLine:
    """An accepted WebSocket, as a phone line: it can go dead at any moment and that is normal."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.gone = False

    async def send_json(self, message: dict[str, Any]) -> None:
        if not self.gone:
            try:
                await self.ws.send_json(message)
            except Exception as exc:  # closed under us: the reader will see the disconnect
                self._lost(exc)

    async def send_bytes(self, data: bytes) -> None:
        if not self.gone:
            try:
                await self.ws.send_bytes(data)
            except Exception as exc:
                self._lost(exc)

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the peer has gone."""
        if self.gone:
            return None
        try:
            message = await self.ws.receive()
        except Exception as exc:
            self._lost(exc)
            return None
        if message["type"] == "websocket.disconnect":
            self.gone = True
            return None
        text: str | None = message.get("text")
        return text if text is not None else bytes(message.get("bytes") or b"")

    async def close(self, code: int, reason: str) -> None:
        if not self.gone:
            self.gone = True
            try:
                await self.ws.close(code=code, reason=close_reason(reason))
            except Exception as exc:
                log.debug("close failed: %s", exc)

    def _lost(self, exc: Exception) -> None:
        log.debug("websocket send failed, caller gone: %s", exc)
        self.gone = True
