"""The gateway over real loopback sockets: the page, /health, and a whole /ws voice call."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import uvicorn
import websockets

from telephony.server import create_app
from tests.conftest import RATE, silence
from voicebot.audio import split_frames
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def gateway(services: Services) -> AsyncIterator[str]:
    port = free_port()
    config = VoicebotConfig(server=ServerConfig(port=port, max_calls=1, token="s3cret"))
    server = uvicorn.Server(
        uvicorn.Config(create_app(config, services), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def http_get(host: str, path: str) -> tuple[str, str]:
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = (await reader.read()).decode()
    writer.close()
    head, _, body = data.partition("\r\n\r\n")
    return head.splitlines()[0], body


async def test_page_and_health(gateway: str) -> None:
    status, body = await http_get(gateway, "/")
    assert "200" in status and "getUserMedia" in body
    status, body = await http_get(gateway, "/health")
    assert json.loads(body) == {"status": "ok", "active_calls": 0, "max_calls": 1}


async def receive_until(ws: Any, kind: str, audio: list[bytes], timeout: float = 30) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                audio.append(message)
                continue
            events.append(json.loads(message))
            if events[-1]["type"] == kind:
                return events


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
