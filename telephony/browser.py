"""The browser/app voice WebSocket (`/ws`): binary PCM16 both ways plus JSON control and events.

Caller → server: binary messages of mono signed 16-bit little-endian PCM at the rate given in the URL
(`/ws?rate=16000`, 8000–48000), any length up to 64 KiB; text messages are JSON controls:
`{"type": "dtmf", "digit": "5"}` and `{"type": "hangup"}`.
Server → caller: binary PCM16 bot audio at the same rate in 20 ms frames, paced in real time; JSON events
`speech_started`, `partial`, `transcript`, `reply`, `turn`, `clear` (barge-in: drop queued audio),
`error`, `ended`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from voicebot.brain import Brain
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
from voicebot.pipeline import CallPipeline, Services

log = logging.getLogger(__name__)
MAX_MESSAGE = 64 * 1024
RATES = range(8_000, 48_001)
DTMF_DIGITS = set("0123456789*#ABCD")


class WebSocketSink:
    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def send_audio(self, frame: BotAudio) -> None:
        await self.ws.send_bytes(frame.pcm.astype("<i2").tobytes())

    async def clear(self) -> None:
        await self.ws.send_json({"type": "clear"})


def event_json(frame: Frame) -> dict[str, Any] | None:
    if isinstance(frame, SpeechStarted):
        return {"type": "speech_started", "t": round(frame.t, 3)}
    if isinstance(frame, PartialTranscript):
        return {"type": "partial", "text": frame.text}
    if isinstance(frame, FinalTranscript):
        return {"type": "transcript", "text": frame.text, "timings_ms": frame.timings_ms}
    if isinstance(frame, BotReply):
        return {"type": "reply", "text": frame.text}
    if isinstance(frame, TurnDone):
        return {"type": "turn", "record": frame.record}
    if isinstance(frame, StageError):
        return {"type": "error", "stage": frame.stage, "message": frame.message}
    if isinstance(frame, CallEnded):
        actions = [{"kind": a.kind, "target": a.target, "reason": a.reason} for a in frame.actions]
        return {"type": "ended", "reason": frame.reason, "actions": actions}
    return None


async def _forward_events(pipe: CallPipeline, ws: WebSocket) -> str:
    while True:
        frame = await pipe.events.get()
        message = event_json(frame)
        if message is not None:
            await ws.send_json(message)
        if isinstance(frame, CallEnded):
            return frame.reason


async def _control(pipe: CallPipeline, ws: WebSocket, text: str) -> None:
    try:
        message = json.loads(text)
        kind = message.get("type") if isinstance(message, dict) else None
    except ValueError:
        kind = None
    if kind == "dtmf" and str(message.get("digit", "")) in DTMF_DIGITS:
        await pipe.send_dtmf(str(message["digit"]))
    elif kind == "hangup":
        await pipe.hangup("caller hung up")
    else:
        await ws.send_json({"type": "error", "message": f"unknown control message: {text[:200]}"})


async def browser_call(ws: WebSocket, services: Services, brain: Brain, rate: int) -> str:
    """Run one call on an accepted WebSocket; returns why it ended."""
    pipe = CallPipeline(services, brain, WebSocketSink(ws), channel_rate=rate, paced=True)
    await pipe.start()
    events = asyncio.create_task(_forward_events(pipe, ws))
    reason = "caller disconnected"
    try:
        while not events.done():
            receive = asyncio.create_task(ws.receive())
            done, _ = await asyncio.wait({receive, events}, return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:
                receive.cancel()
                break
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                break
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                if len(data) > MAX_MESSAGE or len(data) % 2:
                    await ws.send_json({"type": "error", "message": "audio must be PCM16 and at most 64 KiB"})
                    continue
                await pipe.send_audio(np.frombuffer(data, "<i2").astype(np.int16))
            elif text is not None:
                await _control(pipe, ws, text)
        if events.done():
            reason = events.result()
            await ws.close(code=1000, reason=reason[:120])
    except (WebSocketDisconnect, RuntimeError) as exc:
        log.info("browser call closed: %s", exc)
    finally:
        events.cancel()
        await asyncio.gather(events, return_exceptions=True)
        await pipe.close()
    return reason
