"""Listen-in: a supervisor hears a live call in the browser, caller and bot as they pass.

A `Listener` is one of the call's audio taps (`telephony.recording.AudioTap`): it copies each 20 ms frame
into a bounded queue with `put_nowait` and drops frames when the browser falls behind, so a slow listener
costs the call nothing. The WebSocket carries `{"type": "start", "rate": R}` first, then binary messages: one
byte for the side (0 caller, 1 bot) and the frame as PCM16 little-endian at the call's channel rate; it
closes with 1000 when the call ends. It is the caller's unmasked voice: supervisors only, and only while
`console.listen_in` is on.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import WebSocket, WebSocketDisconnect

from telephony.session import Call, CallHub
from voicebot.frames import PCM

QUEUE_FRAMES = 150  # 1.5 s of both sides: more behind than that and frames are dropped
CALLER, BOT = b"\x00", b"\x01"


class Listener:
    """One browser's tap on one call."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)
        self.dropped = 0

    def caller(self, pcm: PCM) -> None:
        self._put(CALLER + pcm.astype("<i2").tobytes())

    def bot(self, pcm: PCM) -> None:
        self._put(BOT + pcm.astype("<i2").tobytes())

    def _put(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1


async def listen(ws: WebSocket, hub: CallHub, call: Call) -> None:
    """Stream `call`'s audio to an accepted WebSocket until the call ends or the browser leaves."""
    listener = Listener()
    call.taps.append(listener)
    try:
        await ws.send_json({"type": "start", "rate": call.pipe.channel_rate})
        while call.id in hub.calls:
            try:
                data = await asyncio.wait_for(listener.queue.get(), 1.0)
            except TimeoutError:
                continue  # a silent second: is the call still on?
            await ws.send_bytes(data)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(1000, "call ended")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the browser left
    finally:
        call.taps.remove(listener)
