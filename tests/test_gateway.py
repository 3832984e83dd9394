"""The gateway over real loopback sockets: the page, /health, a whole /ws voice call, graceful shutdown.

The in-process gateway, the recording observer and the caller phrases other tests share live in
voicebot.testing (`gateway`, `speech`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from voicebot.audio import split_frames
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM, Frame
from voicebot.pipeline import Services
from voicebot.testing.gateway import Recorder, http_get, receive_until, running_gateway
from voicebot.testing.speech import RATE, silence


class AsyncObserver:
    """The same, through `async def` methods, as database-backed observers have them."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self.recorder.on_start(call_id, protocol, meta)

    async def on_event(self, call_id: str, frame: Frame) -> None:
        self.recorder.on_event(call_id, frame)

    async def on_end(self, call_id: str, reason: str) -> None:
        self.recorder.on_end(call_id, reason)


@pytest.fixture
async def gateway(services: Services) -> AsyncIterator[str]:
    config = VoicebotConfig(
        server=ServerConfig(max_calls=1, token="s3cret", audiosocket_port=None, drain_s=2)
    )
    async with running_gateway(config, services) as running:
        yield running.http


async def test_page_and_health(gateway: str) -> None:
    status, body = await http_get(gateway, "/")
    assert "200" in status and "getUserMedia" in body
    status, body = await http_get(gateway, "/health")
    assert json.loads(body) == {"status": "ok", "active_calls": 0, "max_calls": 1, "warming_tts": False}


async def test_browser_call_end_to_end(gateway: str, speech: dict[str, PCM]) -> None:
    audio: list[bytes] = []
    async with websockets.connect(f"ws://{gateway}/ws?rate=16000&token=s3cret") as ws:
        await receive_until(ws, "turn", audio)  # greeting played
        assert audio and all(len(b) == 640 for b in audio)  # 20 ms of PCM16 at 16 kHz
        await ws.send("not json")
        await ws.send(b"\x01")  # odd length: not PCM16
        for chunk in split_frames(np.concatenate([speech["agent"], silence(1.0)]), RATE, 20):
            await ws.send(chunk.tobytes())
        events = await receive_until(ws, "turn", audio)
        kinds = [e["type"] for e in events]
        assert kinds.count("error") == 2
        transcript = next(e for e in events if e["type"] == "transcript")
        assert "human agent" in transcript["text"].lower()
        assert any(e["type"] == "reply" and e["text"].startswith("You said") for e in events)
        async with websockets.connect(f"ws://{gateway}/ws?token=s3cret") as second:  # over max_calls
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await second.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        await ws.send(json.dumps({"type": "dtmf", "digit": "7"}))
        events = await receive_until(ws, "turn", audio)
        assert any(e.get("text") == "You pressed 7." for e in events)
        await ws.send(json.dumps({"type": "hangup"}))
        events = await receive_until(ws, "ended", audio)
        assert events[-1]["reason"] == "caller hung up"


async def test_wrong_token_and_bad_rate_are_refused(gateway: str) -> None:
    for query, code in (("token=nope", 1008), ("token=s3cret&rate=1234", 1003)):
        async with websockets.connect(f"ws://{gateway}/ws?{query}") as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code


async def test_shutdown_drains_running_calls(services: Services) -> None:
    recorder = Recorder()
    config = VoicebotConfig(server=ServerConfig(audiosocket_port=None, drain_s=1.0))
    async with running_gateway(config, services, observers=[AsyncObserver(recorder)]) as gw:
        audio: list[bytes] = []
        async with websockets.connect(f"ws://{gw.http}/ws") as ws:
            while not audio:  # the greeting is playing
                message = await ws.recv()
                if isinstance(message, bytes):
                    audio.append(message)
            started = asyncio.get_running_loop().time()
            gw.server.should_exit = True
            await asyncio.sleep(0.3)
            health = json.loads((await http_get(gw.http, "/health"))[1])
            assert health["status"] == "draining" and health["active_calls"] == 1
            async with websockets.connect(f"ws://{gw.http}/ws") as late:  # no new calls while draining
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await late.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            heard = len(audio)
            events = await receive_until(ws, "ended", audio)
            assert len(audio) > heard + 20  # the call went on talking during the drain
            assert events[-1]["reason"] == "server shutting down"
            await ws.wait_closed()
            assert ws.close_code == 1001
            assert asyncio.get_running_loop().time() - started >= 0.9
    assert list(recorder.ends.values()) == ["server shutting down"]
    assert [p for p, _ in recorder.starts.values()] == ["browser"]


async def test_call_is_recorded_with_both_sides_and_stored(
    services: Services, speech: dict[str, PCM], tmp_path: Path
) -> None:
    import wave

    from voicebot.records import CallStore

    config = VoicebotConfig(server=ServerConfig(audiosocket_port=None, recordings_dir=tmp_path / "rec"))
    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite'}", tmp_path / "rec", tmp_path / "spool.jsonl")
    audio: list[bytes] = []
    async with (
        running_gateway(config, services, observers=[store]) as running,
        websockets.connect(f"ws://{running.http}/ws?rate=16000") as ws,
    ):
        await receive_until(ws, "turn", audio)  # the greeting
        for chunk in split_frames(np.concatenate([speech["agent"], silence(1.0)]), RATE, 20):
            await ws.send(chunk.tobytes())
        await receive_until(ws, "turn", audio)
        await ws.send(json.dumps({"type": "hangup"}))
        await receive_until(ws, "ended", audio)
    await store.flush()
    (summary,) = store.list_calls()
    detail = store.get_call(summary.id)
    store.close()
    assert detail is not None and detail.call.recording is not None
    with wave.open(str(detail.call.recording)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == RATE
        frames = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    caller_rms, bot_rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=0))
    assert caller_rms > 50 and bot_rms > 50  # both the caller's words and the bot's replies are on it
    assert frames.shape[0] / RATE >= len(b"".join(audio)) / 2 / RATE  # the bot's audio fits on the timeline
