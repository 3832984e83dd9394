"""Twilio's side of a Media Streams WebSocket, written from Twilio's "Media Streams — WebSocket Messages"
reference: the one Twilio client of the tests, the benchmarks and the soak.

What Twilio sends: `connected` (before the stream exists: no sequenceNumber, no streamSid), then `start`
(accountSid, streamSid, callSid, tracks, customParameters, mediaFormat audio/x-mulaw 8000 Hz mono),
`media` (track, chunk, timestamp and a base64 μ-law payload), `dtmf`, `mark` and `stop`, each with the
streamSid and a sequenceNumber; sequenceNumber, chunk and timestamp are strings of integers. What it does
with the app's messages: plays `media` in order (audio sent ahead waits its turn in the playout buffer),
returns each `mark` once the audio sent before it has played, and on `clear` drops the audio not yet played
and returns the marks still pending at once. No permessage-deflate: Twilio does not use it.

`TwilioStream` is that peer on one connection: `start`, `media`/`audio`/`play`, `dtmf`, `stop` going out;
`handle` (or `listen`) for what the app sends, keeping the playout clock and the mark echoes; subclasses
hear the app through `on_media`, `on_mark` and `on_clear`. Messages are written as text, not through
`json.dumps`: the capacity benchmark runs dozens of streams in one process, and the peer must not cost more
than a real Twilio would. Built on by scripts/_calls_client.py (the benchmark and soak caller),
`faults.callers.TwilioCaller`, the fuzz campaign's good calls and tests/test_twilio.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from typing import Any

import numpy as np
import websockets

from voicebot.audio import split_frames, ulaw_encode
from voicebot.frames import PCM

RATE = 8_000  # the only rate Twilio streams
FRAME_S = 0.02  # Twilio's media messages: 20 ms each
ACCOUNT_SID = "AC" + "1" * 32


def payload(pcm: PCM) -> str:
    """PCM16 at 8 kHz as a media payload: μ-law, base64."""
    return base64.b64encode(ulaw_encode(pcm)).decode("ascii")


def duration(media_payload: str) -> float:
    """Seconds of 8 kHz μ-law in a base64 media payload."""
    return (len(media_payload) * 3 // 4 - media_payload[-2:].count("=")) / RATE


SILENCE = payload(np.zeros(int(RATE * FRAME_S), np.int16))  # 20 ms of a silent line


class TwilioStream:
    """Twilio's side of one Media Stream over `ws` (a `websockets` connection; set it later if need be)."""

    def __init__(self, ws: Any = None, stream_sid: str | None = None, call_sid: str | None = None) -> None:
        self.ws = ws
        self.stream_sid = stream_sid or "MZ" + uuid.uuid4().hex
        self.call_sid = call_sid or "CA" + uuid.uuid4().hex
        self.sequence = self.chunk = 0  # the last sequenceNumber and media chunk sent
        self.timestamp = 0  # ms of the inbound track streamed so far
        self.play_end = float("-inf")  # event loop time when the app's audio received so far has played
        self.pending: dict[str, asyncio.TimerHandle] = {}  # marks received, returned once their audio played
        self.tasks: set[asyncio.Task[None]] = set()  # mark echoes being sent
        self._connected = False

    # --- Twilio → app ----------------------------------------------------------------------------------

    async def send(self, event: str, body: str) -> None:
        """One message of the stream; `body`: the event's JSON members, encoded. What is sent after the app
        closed the stream is dropped (the app may close it at any moment)."""
        self.sequence += 1
        message = (
            f'{{"event":"{event}","sequenceNumber":"{self.sequence}",{body},"streamSid":"{self.stream_sid}"}}'
        )
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(message)

    async def connected(self) -> None:
        self._connected = True
        await self.ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')

    async def start(self, parameters: dict[str, str] | None = None) -> None:
        """`connected` (unless sent already), then `start`; `parameters`: the <Stream>'s <Parameter>s."""
        if not self._connected:
            await self.connected()
        start = {
            "accountSid": ACCOUNT_SID,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": parameters or {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        }
        await self.send("start", '"start":' + json.dumps(start, separators=(",", ":")))

    async def media(self, media_payload: str, ms: int = 20) -> None:
        """`media_payload` (base64 μ-law) as the next `ms` of the inbound track."""
        self.chunk += 1
        media = (
            f'"media":{{"track":"inbound","chunk":"{self.chunk}","timestamp":"{self.timestamp}",'
            f'"payload":"{media_payload}"}}'
        )
        self.timestamp += ms
        await self.send("media", media)

    async def audio(self, pcm: PCM) -> None:
        """`pcm` (8 kHz) as one media message."""
        await self.media(payload(pcm), len(pcm) * 1000 // RATE)

    async def play(self, pcm: PCM) -> None:
        """`pcm` in real time, 20 ms per message, as Twilio streams a line."""
        loop = asyncio.get_running_loop()
        clock = loop.time()
        for n, frame in enumerate(split_frames(pcm, RATE, 20)):
            await self.audio(frame)
            await asyncio.sleep(max(0.0, clock + (n + 1) * FRAME_S - loop.time()))

    async def dtmf(self, digit: str) -> None:
        await self.send("dtmf", f'"dtmf":{{"track":"inbound_track","digit":{json.dumps(digit)}}}')

    async def mark(self, name: str) -> None:
        """Return the app's mark `name`: the audio before it has played (or was cleared)."""
        await self.send("mark", f'"mark":{{"name":{json.dumps(name)}}}')

    async def stop(self) -> None:
        """The caller hung up."""
        await self.send("stop", f'"stop":{{"accountSid":"{ACCOUNT_SID}","callSid":"{self.call_sid}"}}')

    # --- app → Twilio ----------------------------------------------------------------------------------

    def handle(self, message: str | bytes) -> dict[str, Any]:
        """Act on one message from the app as Twilio does; returns it parsed."""
        now = asyncio.get_running_loop().time()
        data: dict[str, Any] = json.loads(message)
        event = data.get("event")
        if event == "media":
            media_payload = str(data.get("media", {}).get("payload", ""))
            at = max(self.play_end, now)  # after what is still playing, else at once
            self.play_end = at + duration(media_payload)
            self.on_media(now, media_payload, at)
        elif event == "mark":
            name = str(data.get("mark", {}).get("name", ""))
            self.pending[name] = asyncio.get_running_loop().call_at(self.play_end, self._played, name)
            self.on_mark(now, name)
        elif event == "clear":
            for name in list(self.pending):  # dropped unplayed: Twilio returns them now
                self.pending[name].cancel()
                self._echo(name)
            self.play_end = now
            self.on_clear(now)
        return data

    async def listen(self) -> None:
        """Handle the app's messages until it closes the stream."""
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in self.ws:
                self.handle(message)

    def hush(self) -> None:
        """Return no more marks (the line is gone)."""
        for handle in self.pending.values():
            handle.cancel()
        self.pending.clear()

    def _played(self, name: str) -> None:
        """`name`'s audio has played: return it, and first any mark before it (they come back in order)."""
        for earlier in list(self.pending):
            self.pending[earlier].cancel()
            self._echo(earlier)
            if earlier == name:
                return

    def _echo(self, name: str) -> None:
        self.pending.pop(name, None)
        task = asyncio.ensure_future(self.mark(name))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- what a subclass hears -------------------------------------------------------------------------

    def on_media(self, now: float, media_payload: str, at: float) -> None:
        """The app's audio arrived at `now` (loop time); it plays from `at`."""

    def on_mark(self, now: float, name: str) -> None:
        """The app's mark `name` arrived; it is returned once the audio before it has played."""

    def on_clear(self, now: float) -> None:
        """The app cleared the playout buffer."""
