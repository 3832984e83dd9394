"""Asterisk AudioSocket over a real loopback TCP socket, with real models.

`AsteriskPeer` is Asterisk's side written from the AudioSocket documentation and `res_audiosocket.h`:
frames of 1-byte kind, 2-byte big-endian length, payload; the UUID first; 20 ms of signed-linear audio
every 20 ms for as long as the call lasts (silence when the caller is quiet), DTMF and hang-up frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import uuid
from collections import deque
from typing import Any

import numpy as np
import pytest

from telephony.session import WireStats
from voicebot.audio import resample, split_frames
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM, BotReply, FinalTranscript, TurnDone
from voicebot.pipeline import Services
from voicebot.testing.gateway import Recorder, no_greeting, running_gateway
from voicebot.testing.speech import caller_audio

HANGUP, UUID, DTMF, AUDIO, AUDIO_16K, ERROR = 0x00, 0x01, 0x03, 0x10, 0x12, 0xFF


def frame(kind: int, payload: bytes = b"") -> bytes:
    return struct.pack(">BH", kind, len(payload)) + payload


class AsteriskPeer:
    """One AudioSocket call as Asterisk places it; records every frame the app sends, with arrival time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.received: list[tuple[float, int, bytes]] = []
        self.outgoing: deque[tuple[int, bytes]] = deque()
        self._reading = asyncio.create_task(self._read())
        self._line: asyncio.Task[None] | None = None

    @classmethod
    async def dial(cls, port: int) -> AsteriskPeer:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, payload))

    def answer(self) -> None:
        """UUID first, then a frame every 20 ms: queued caller audio, else silence."""
        self.send(UUID, uuid.uuid4().bytes)
        self._line = asyncio.create_task(self._stream())

    def say(self, pcm: PCM, rate: int = 8000, kind: int = AUDIO) -> None:
        self.outgoing.extend((kind, f.astype("<i2").tobytes()) for f in split_frames(pcm, rate, 20))

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        clock, n = loop.time(), 0
        with contextlib.suppress(ConnectionError):
            while not self.reader.at_eof():
                kind, payload = self.outgoing.popleft() if self.outgoing else (AUDIO, bytes(320))
                self.writer.write(frame(kind, payload))
                n += 1
                await asyncio.sleep(max(0.0, clock + n * 0.02 - loop.time()))

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                kind, size = struct.unpack(">BH", await self.reader.readexactly(3))
                payload = await self.reader.readexactly(size)
                self.received.append((asyncio.get_running_loop().time(), kind, payload))

    async def quiet(self, after: int, seconds: float = 0.5, timeout: float = 30) -> int:
        """Wait until the app sent audio beyond frame `after` and then nothing for `seconds`."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while len(self.audio) <= after or loop.time() - self.audio[-1][0] < seconds:
                await asyncio.sleep(0.05)
        return len(self.audio)

    @property
    def audio(self) -> list[tuple[float, bytes]]:
        return [(t, p) for t, kind, p in self.received if kind == AUDIO]

    async def closed(self, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            await self._reading
        if self._line is not None:
            self._line.cancel()
            await asyncio.gather(self._line, return_exceptions=True)
        self.writer.close()


@pytest.fixture(scope="module")
def phrases(services: Services) -> dict[str, PCM]:
    return caller_audio(services)


def config(**changes: Any) -> VoicebotConfig:
    return VoicebotConfig(server=ServerConfig(audiosocket_port=0, drain_s=2, **changes))


@pytest.mark.serial  # its frame-gap assertions measure the pacer, not the other workers
async def test_audiosocket_call(services: Services, phrases: dict[str, PCM]) -> None:
    recorder = Recorder()
    async with running_gateway(config(), services, observers=[recorder]) as gw:
        assert gw.audiosocket_port
        peer = await AsteriskPeer.dial(gw.audiosocket_port)
        peer.answer()
        async with asyncio.timeout(15):
            while len(peer.audio) < 100:  # two seconds of the greeting
                await asyncio.sleep(0.05)
        spoke_at = asyncio.get_running_loop().time()
        peer.say(resample(phrases["hours"], 8000, 16000), 16000, AUDIO_16K)  # barge in, as 16 kHz slin
        greeting_frames = await peer.quiet(after=100, seconds=0.4)
        replied = await peer.quiet(after=greeting_frames + 50)
        peer.send(DTMF, b"5")
        pressed = await peer.quiet(after=replied + 20)
        peer.say(phrases["bye"])
        await peer.closed()
    kinds = [(kind, len(payload)) for _, kind, payload in peer.received]
    assert kinds[-1] == (HANGUP, 0) and set(kinds[:-1]) == {(AUDIO, 320)}  # 20 ms slin frames, then hang-up
    # pacing of the greeting, on arrival: one 320-byte frame per 20 ms
    times = np.array([t for t, _ in peer.audio[5:greeting_frames]])
    gaps = np.diff(times) * 1000
    assert 15 <= np.median(gaps) <= 25 and np.percentile(np.abs(gaps - 20), 90) <= 5, gaps
    assert abs((times[-1] - times[0]) / (len(times) - 1) * 1000 - 20) < 1  # no drift
    # barge-in: the greeting stopped soon after the caller started talking (0.3 s of silence before the
    # words; the judge cuts on a stop word or after bargein.max_backchannel_ms of speech)
    assert peer.audio[greeting_frames - 1][0] - spoke_at < 1.5
    assert len(peer.audio) - pressed > 20  # the goodbye was played before the hang-up frame
    call = next(iter(recorder.starts))
    assert recorder.starts[call][0] == "audiosocket"
    assert "opening hours" in recorder.of(call, FinalTranscript)[0].text.lower()
    replies = [r.text for r in recorder.of(call, BotReply)]
    assert replies[1].startswith("You said") and "You pressed 5." in replies and replies[-1] == "Goodbye."
    greeting = recorder.of(call, TurnDone)[0].record
    assert greeting.interrupted is True and 0 < greeting.played_ms < 5000  # what the pacer put on the line
    assert recorder.ends[call] == "caller said goodbye"
    assert recorder.of(call, WireStats)[0].stats["frames_in"] > 200


async def hang_up_while_bot_talks(port: int) -> AsteriskPeer:
    peer = await AsteriskPeer.dial(port)
    peer.answer()
    peer.send(DTMF, b"5")
    async with asyncio.timeout(10):
        while len(peer.audio) < 5:
            await asyncio.sleep(0.02)
    peer.writer.close()
    await peer.closed(timeout=10)
    return peer


async def bad_call(port: int, *frames: bytes, answer: bool = True, close: bool = False) -> AsteriskPeer:
    """Dial, optionally send the UUID, then `frames`; wait for the app to close (or close ourselves)."""
    peer = await AsteriskPeer.dial(port)
    if answer:
        peer.send(UUID, uuid.uuid4().bytes)
    for data in frames:
        peer.writer.write(data)
    if close:
        await asyncio.sleep(0.3)
        peer.writer.close()
    await peer.closed(timeout=10)
    return peer


async def test_bad_input_ends_the_call_cleanly(services: Services, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="telephony")
    recorder = Recorder()
    async with running_gateway(
        config(max_message_bytes=4096), no_greeting(services), observers=[recorder]
    ) as gw:
        port = gw.audiosocket_port
        assert port
        healthy = await AsteriskPeer.dial(port)
        healthy.answer()
        healthy.send(DTMF, b"5")
        peers = await asyncio.gather(
            bad_call(port, frame(AUDIO, bytes(320)), answer=False),  # audio before the UUID
            bad_call(port, frame(UUID, bytes(10)), answer=False),  # wrong length
            bad_call(port, frame(0x42, b"??")),  # unknown kind
            bad_call(port, frame(DTMF, b"12")),  # wrong length
            bad_call(port, frame(AUDIO, bytes(321))),  # not 16-bit samples
            bad_call(port, struct.pack(">BH", AUDIO, 5000)),  # oversized
            bad_call(port, frame(ERROR, b"\x02")),  # Asterisk reports an error
            bad_call(port, frame(HANGUP)),  # Asterisk hangs up
            bad_call(port, struct.pack(">BH", AUDIO, 320) + bytes(100), close=True),  # gone mid-frame
            hang_up_while_bot_talks(port),
        )
        await healthy.quiet(after=0)
        assert len(healthy.audio) > 40  # "You pressed 5." played in full meanwhile
        healthy.send(HANGUP)
        await healthy.closed()
        await recorder.ended(count=9)
    for peer in peers[:6] + peers[6:7]:  # the app hung up: a hang-up frame, then the socket closed
        assert [(kind, payload) for _, kind, payload in peer.received] == [(HANGUP, b"")]
    assert all(not peer.received for peer in peers[7:9])
    assert "audio 8000 Hz frame before the UUID" in caplog.text and "UUID frame of 10 bytes" in caplog.text
    assert sorted(recorder.ends.values()) == sorted(
        [
            "protocol error: unknown frame kind 0x42",
            "protocol error: DTMF frame of 2 bytes, need 1",
            "protocol error: audio 8000 Hz frame of 321 bytes: not 16-bit samples",
            "protocol error: audio 8000 Hz payload of 5000 bytes is over the 4096-byte limit",
            "asterisk error: frame forwarding",
            "caller hung up",
            "caller disconnected mid-frame",
            "caller disconnected",
            "caller hung up",
        ]
    )


async def test_a_call_cancelled_without_a_drain_is_recorded_as_such(services: Services) -> None:
    """A second Ctrl-C cancels running calls instead of draining them: their records still say why."""
    recorder = Recorder()
    async with running_gateway(config(), no_greeting(services), observers=[recorder]) as gw:
        assert gw.audiosocket_port
        peer = await AsteriskPeer.dial(gw.audiosocket_port)
        peer.answer()
        async with asyncio.timeout(10):
            while not gw.hub.calls:
                await asyncio.sleep(0.02)
        handlers = [t for t in asyncio.all_tasks() if "_connection" in repr(t.get_coro())]
        assert len(handlers) == 1
        handlers[0].cancel()
        await recorder.ended()
        await peer.closed()
    assert list(recorder.ends.values()) == ["call cancelled: server stopping"]
