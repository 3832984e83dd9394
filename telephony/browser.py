"""The browser/app voice WebSocket (`/ws`): binary PCM16 both ways plus JSON control and events.

Caller → server: binary messages of mono signed 16-bit little-endian PCM at the rate given in the URL
(`/ws?rate=16000`, 8000–48000 in steps of 50, so 20 ms is whole samples), any length up to
`server.max_message_bytes` (64 KiB); `&domain=NAME` picks one of the gateway's domains (telephony/domains.py;
default: its first); text messages are JSON controls: `{"type": "dtmf", "digit": "5"}` and
`{"type": "hangup"}`.
Server → caller: binary PCM16 bot audio at the same rate in 20 ms frames, paced in real time; JSON events
`speech_started`, `partial`, `transcript`, `reply`, `turn`, `clear` (barge-in: drop queued audio),
`error`, `ended`. Refusals close with 1008 (bad token, too many calls from one address, no such domain),
1003 (bad rate), 1013 (too many calls).
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
from fastapi import WebSocket

from telephony.domains import domain_names
from telephony.session import DTMF_DIGITS, Call, CallHub, Ending, Refusal
from telephony.websocket import WebSocketLine
from voicebot.frames import (
    BotAudio,
    BotReply,
    CallEnded,
    FinalTranscript,
    Frame,
    PartialTranscript,
    SpeechStarted,
    StageError,
    TurnDone,
)

log = logging.getLogger(__name__)
RATES = range(8_000, 48_001)


def event_json(frame: Frame) -> dict[str, Any] | None:
    """The browser's JSON event for a pipeline frame, or None for frames it does not show."""
    if isinstance(frame, SpeechStarted):
        return {"type": "speech_started", "t": round(frame.t, 3)}
    if isinstance(frame, PartialTranscript):
        return {"type": "partial", "text": frame.text}
    if isinstance(frame, FinalTranscript):
        return {"type": "transcript", "text": frame.text, "timings_ms": frame.timings_ms}
    if isinstance(frame, BotReply):
        return {"type": "reply", "text": frame.text} if frame.text else None
    if isinstance(frame, TurnDone):
        return {"type": "turn", "record": frame.record.as_json()}
    if isinstance(frame, StageError):
        return {"type": "error", "stage": frame.stage, "message": frame.message}
    if isinstance(frame, CallEnded):
        actions = [{"kind": a.kind, "target": a.target, "reason": a.reason} for a in frame.actions]
        return {"type": "ended", "reason": frame.reason, "actions": actions}
    return None


class BrowserTransport:
    """One `/ws` call: bot audio as binary PCM16, events as JSON, caller input checked and fed in."""

    protocol = "browser"
    shows_partials = True  # the page prints them as the caller speaks

    def __init__(self, ws: WebSocket, max_bytes: int) -> None:
        self.line = WebSocketLine(ws)
        self.max_bytes = max_bytes
        self.stats: dict[str, float] = {"frames_in": 0, "frames_out": 0, "bad_messages": 0}

    async def play(self, frame: BotAudio) -> None:
        self.stats["frames_out"] += 1
        await self.line.send_bytes(frame.pcm.astype("<i2").tobytes())

    async def clear(self) -> None:
        await self.line.send_json({"type": "clear"})

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        """The page plays what arrives at once (after its small buffer): the clock is the best we know."""
        return clock_ms

    async def on_event(self, frame: Frame) -> None:
        message = event_json(frame)
        if message is not None:
            await self.line.send_json(message)

    async def receive(self, call: Call) -> Ending:
        while (message := await self.line.receive()) is not None:
            call.inbound()
            if isinstance(message, bytes):
                if len(message) > self.max_bytes or len(message) % 2:
                    self.stats["bad_messages"] += 1
                    limit = f"{self.max_bytes // 1024} KiB"
                    await self.line.send_json(
                        {"type": "error", "message": f"audio must be PCM16 and at most {limit}"}
                    )
                    continue
                self.stats["frames_in"] += 1
                await call.caller_audio(np.frombuffer(message, "<i2").astype(np.int16))
            else:
                await self._control(call, message)
        return Ending("caller disconnected", "caller")

    async def _control(self, call: Call, text: str) -> None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "dtmf" and isinstance(message, dict) and str(message.get("digit", "")) in DTMF_DIGITS:
            await call.send_dtmf(str(message["digit"]))
        elif kind == "hangup":
            await call.hangup("caller hung up")
        else:
            self.stats["bad_messages"] += 1
            await self.line.send_json({"type": "error", "message": f"unknown control message: {text[:200]}"})

    async def finish(self, ending: Ending) -> None:
        await self.line.close(ending.code, ending.reason)


def rate_refusal(text: str, frame_ms: int) -> Refusal | None:
    """None for a rate the pipeline can speak at: 8-48 kHz and a whole number of samples per frame (at
    11025 Hz a 20 ms frame is 220.5 samples, so every reply would fail)."""
    step = 1000 // math.gcd(1000, frame_ms)
    rate = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else -1
    if rate in RATES and rate % step == 0:
        return None
    return Refusal(1003, f"unsupported rate {text[:20]!r}: use 8000-48000, a multiple of {step}")


def domain_refusal(hub: CallHub, name: str | None) -> Refusal | None:
    """None when a call may ask for domain `name` (None or empty: the default), else why not."""
    if not name or name in domain_names(hub.brain_factory):
        return None
    return Refusal(1008, f"no domain {name[:40]!r} on this gateway")


async def browser_call(
    ws: WebSocket, hub: CallHub, rate_text: str, token: str | None, domain: str | None = None
) -> None:
    """Admit and run one `/ws` call. The rate comes as text: a bad one gets a close reason, not a bare 403
    from the framework."""
    await ws.accept()  # accept first, so the client gets the close code and reason, not a bare 403
    frame_ms = hub.services.config.pipeline.frame_ms if hub.services else 20
    bad_request = rate_refusal(rate_text, frame_ms) or domain_refusal(hub, domain)
    source = ws.client.host if ws.client else None  # the real client behind a proxy: X-Forwarded-For
    refusal = hub.refusal(token, extra=bad_request, source=source)
    if refusal is not None:
        log.info("browser call refused: %s", refusal.reason)
        await ws.close(code=refusal.code, reason=refusal.reason)
        return
    transport = BrowserTransport(ws, hub.config.max_message_bytes)
    rate = int(rate_text)
    meta: dict[str, Any] = {"rate": rate} | ({"domain": domain} if domain else {})
    await hub.open(transport, rate, meta, source).run()
