"""A public phone line: who may connect to each endpoint, and the limits every call lives under.

Every way in is tried without credentials (refused), Twilio's signature is checked against the vectors
Twilio publishes, and each limit (message size, message rate, calls per address, call length, a dead line)
is pushed past on the live gateway over loopback until the call is ended with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets

from telephony.limits import TokenBucket, address_allowed, networks
from telephony.twiml import signature
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.pipeline import Services
from voicebot.testing.gateway import Recorder, http_get, running_gateway

TOKEN = "s3cret"


def config(**server: Any) -> VoicebotConfig:
    defaults: dict[str, Any] = {"token": TOKEN, "audiosocket_port": None, "drain_s": 1.0}
    return VoicebotConfig(server=ServerConfig(**(defaults | server)), pipeline={"greeting": False})


@pytest.fixture
async def gateway(services: Services) -> AsyncIterator[str]:
    async with running_gateway(config(), services) as running:
        yield running.http


async def closed_with(
    url: str, *messages: str | bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """Open `url`, send `messages`, read until the server closes; its close code and reason."""
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            for message in messages:
                await ws.send(message)
            async with asyncio.timeout(20):
                async for _ in ws:
                    pass
        assert ws.close_code is not None, "the server never closed the connection"
        return ws.close_code, ws.close_reason or ""


def twilio_start(token: str | None, sid: str = "MZsec") -> str:
    params = {"token": token} if token else {}
    fmt = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    start = {"streamSid": sid, "callSid": "CAsec", "customParameters": params, "mediaFormat": fmt}
    return json.dumps({"event": "start", "start": start, "streamSid": sid})


def twilio_media(sid: str = "MZsec") -> str:
    return json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "/" * 212}})  # 20 ms


# --- credentials ----------------------------------------------------------------------------------------


def test_twilio_signature_matches_twilios_published_vectors() -> None:
    """The example of Twilio's "Webhooks security" page (also in each official helper library's tests)."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert signature("12345", url, params.items()) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature("12345", url + "&x=1", params.items()) != "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature("54321", url, params.items()) != "RSOYDt4T1cUTdK1PDd93/VVr8B8="


async def test_every_endpoint_refuses_a_caller_without_the_token(gateway: str) -> None:
    for query in ("", "&token=nope"):
        assert (await closed_with(f"ws://{gateway}/ws?rate=16000{query}"))[0] == 1008
    for token in (None, "nope"):
        code, reason = await closed_with(f"ws://{gateway}/twilio/stream", twilio_start(token))
        assert (code, reason) == (1008, "missing or wrong token")
    for path in ("/twilio/voice", "/twilio/voice?token=nope", "/metrics", "/metrics?token=nope"):
        status, _ = await http_get(gateway, path)
        assert " 403 " in status, path
    status, twiml = await http_get(gateway, f"/twilio/voice?token={TOKEN}")
    assert " 200 " in status and f'value="{TOKEN}"' in twiml
    status, text = await http_get(gateway, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert " 200 " in status and "voicebot_calls" in text
    status, _ = await http_get(gateway, "/health")  # load balancers probe it: counts only, no call data
    assert " 200 " in status


async def audiosocket_greeting(port: int, send: bytes = b"", wait_s: float = 10.0) -> bytes:
    """Connect to AudioSocket, send `send`, return everything the server sends before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(send)
    try:
        async with asyncio.timeout(wait_s):
            return await reader.read()
    finally:
        writer.close()


async def test_audiosocket_refuses_addresses_outside_the_allow_list(services: Services) -> None:
    recorder = Recorder()
    cfg = config(audiosocket_port=0, audiosocket_allow=["10.0.0.0/8"])
    async with running_gateway(cfg, services, observers=[recorder]) as gw:
        assert gw.audiosocket_port
        # Refused at accept, before anything is read: a hang-up frame, then the close.
        assert await audiosocket_greeting(gw.audiosocket_port) == b"\x00\x00\x00"
        assert not recorder.starts
    assert address_allowed("::ffff:10.1.2.3", networks(["10.0.0.0/8"]))
    assert not address_allowed("not an address", networks(["0.0.0.0/0"]))
    with pytest.raises(ValueError, match=r"audiosocket_allow: '10\.0\.0\.0/33'"):
        networks(["10.0.0.0/33"])


# --- limits ---------------------------------------------------------------------------------------------


async def test_message_size_and_rate_limits_end_the_call(services: Services) -> None:
    cfg = config(max_message_bytes=4096, max_messages_per_s=10, twilio_auth_token="tw")
    async with running_gateway(cfg, services) as gw:
        url = f"ws://{gw.http}/twilio/stream"
        code, _ = await closed_with(url, twilio_start(TOKEN), "x" * 100_000)  # over the WebSocket limit
        assert code == 1009
        flood = [twilio_media()] * 60  # far over 10/s with a 20-message burst
        code, reason = await closed_with(url, twilio_start(TOKEN), *flood)
        assert (code, reason) == (1008, "limit exceeded: more than 10 messages per second")
        status, text = await http_get(gw.http, "/twilio/voice", "POST", "a=" + "b" * 10_000)
        assert " 413 " in status and "over 4096 bytes" in text
        async with asyncio.timeout(10):  # the flooded call winds down after its line is closed
            while gw.hub.calls:
                await asyncio.sleep(0.02)


async def test_calls_per_address_counts_the_client_behind_a_proxy(services: Services) -> None:
    async with running_gateway(config(max_calls_per_source=1, max_calls=4), services) as gw:
        url = f"ws://{gw.http}/ws?rate=16000&token={TOKEN}"
        async with websockets.connect(url, additional_headers={"X-Forwarded-For": "203.0.113.7"}):
            while len(gw.hub.calls) < 1:
                await asyncio.sleep(0.02)
            code, reason = await closed_with(url, headers={"X-Forwarded-For": "203.0.113.7"})
            assert (code, reason) == (1008, "too many calls from 203.0.113.7 (limit 1)")
            async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.2"}):
                while len(gw.hub.calls) < 2:  # another client through the same proxy is admitted
                    await asyncio.sleep(0.02)


async def test_call_length_limit_and_dead_line_end_calls(services: Services) -> None:
    recorder = Recorder()
    cfg = config(max_call_s=1.0, idle_timeout_s=30.0, audiosocket_port=0)
    async with running_gateway(cfg, services, observers=[recorder]) as gw:
        url = f"ws://{gw.http}/ws?rate=16000&token={TOKEN}"
        async with websockets.connect(url) as ws:

            async def talk() -> None:  # a caller who keeps sending audio, so the line is never idle
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        await ws.send(np.zeros(320, "<i2").tobytes())
                        await asyncio.sleep(0.02)

            talking = asyncio.create_task(talk())
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(20):
                    async for _ in ws:  # read what the bot sends, as a real client does
                        pass
            talking.cancel()
            assert ws.close_code == 1008 and ws.close_reason == "call length limit reached (1 s)"
    cfg = config(idle_timeout_s=1.0, audiosocket_port=0)
    async with running_gateway(cfg, services, observers=[recorder]) as gw:
        assert gw.audiosocket_port
        uuid_frame = struct.pack(">BH", 0x01, 16) + uuid.uuid4().bytes
        # A half-open connection: the caller's side says nothing more and never closes.
        assert (await audiosocket_greeting(gw.audiosocket_port, uuid_frame))[-3:] == b"\x00\x00\x00"
    while len(recorder.ends) < 2:
        await asyncio.sleep(0.02)
    reasons = sorted(recorder.ends.values())
    assert reasons == ["call length limit reached (1 s)", "line dead: nothing from the caller for 1 s"]


def test_token_bucket_allows_bursts_then_the_average_rate() -> None:
    bucket = TokenBucket(rate=50, burst=100, now=0.0)
    assert all(bucket.take(0.0) for _ in range(100)) and not bucket.take(0.0)
    assert sum(bucket.take(1.0) for _ in range(100)) == 50  # one second refills 50
    steady = [bucket.take(2.0 + i * 0.02) for i in range(500)]  # 50/s for 10 s: all allowed
    assert all(steady)
