"""Genesys Cloud AudioConnector beyond the shared carrier tests (tests/test_carriers.py runs its shop task):
the signed connection request, the connection probe, ping/pong numbering, and its bad input. Fakes for
every model (the fast tier); the Genesys side is `voicebot.testing.carriers.GenesysCaller`, written from
the AudioHook protocol specification."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from telephony.genesys import PROBE
from tests.test_carriers import closed_with
from voicebot.testing.carriers import GenesysCaller, fake_gateway, signed
from voicebot.testing.faults.callers import until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder

API_KEY = "audioconnector-key-1"
SECRET = base64.b64encode(b"a client secret of 32 bytes!!!!!").decode()


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, Recorder]]:
    config = fault_config(
        token="gateway-token", audiosocket_port=None, max_message_bytes=4096, start_timeout_s=1.0,
        genesys_api_key=API_KEY, genesys_client_secret=SECRET,
    )  # fmt: skip
    async with fake_gateway(config) as running:
        yield running


class Signed(GenesysCaller):
    api_key, secret = API_KEY, SECRET


async def test_a_signed_session_pings_and_hangs_up(gateway: tuple[Gateway, Recorder]) -> None:
    gw, recorder = gateway
    caller = Signed({"queue": "billing"})
    await caller.connect(gw)
    call_id = await call_of(caller, gw)
    assert await until(lambda: caller.bot_frames > 10, 10)  # the greeting, as PCMU binary frames
    await caller._send_raw(caller.ping())
    assert await until(lambda: bool(caller.kinds("pong")), 5)
    pong = caller.kinds("pong")[0]
    assert pong["clientseq"] == caller.sequence and pong["id"] == caller.id and pong["version"] == "2"
    opened = caller.kinds("opened")[0]
    assert opened["seq"] == 1 and opened["clientseq"] == 1
    assert opened["parameters"]["media"] == [{"type": "audio", "format": "PCMU", "channels": ["external"],
                                              "rate": 8000}]  # fmt: skip
    await caller.hang_up()  # close: the server answers closed
    await gone(call_id, gw)
    await caller.close()
    assert caller.kinds("closed") and recorder.ends[call_id] == "caller hung up"
    protocol, meta = recorder.starts[call_id]
    assert protocol == "genesys" and meta["parameters"] == {"queue": "billing"}
    assert meta["ani"] == "+13175550100" and meta["conversationId"] == caller.conversation


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"secret": base64.b64encode(b"another secret entirely......!!").decode()},
            "signature does not match",
        ),
        ({"secret": None}, "no or unreadable Signature-Input"),
        ({"api_key": "someone-elses-key"}, "wrong or missing X-API-KEY"),
        ({"stale": True}, "signature expired or not yet valid"),
    ],
)
async def test_unsigned_or_badly_signed_requests_are_refused(
    gateway: tuple[Gateway, Recorder], change: dict[str, Any], expected: str
) -> None:
    gw, recorder = gateway
    caller = Signed()
    for key in ("secret", "api_key"):
        if key in change:
            setattr(caller, key, change[key])
    if change.get("stale"):  # signed ten minutes ago: expired
        caller.headers = lambda: {  # type: ignore[method-assign]
            **(h := GenesysCaller.headers(caller)),
            **signed(h, caller.path, gw.http, API_KEY, SECRET, int(time.time()) - 600),
        }
    caller.host = gw.http
    async with websockets.connect(f"ws://{gw.http}{caller.path}", additional_headers=caller.headers()) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 1008 and ws.close_reason == expected
    assert not recorder.starts


async def test_the_connection_probe_gets_opened_and_closed_and_no_call(
    gateway: tuple[Gateway, Recorder],
) -> None:
    gw, recorder = gateway
    caller = Signed()
    caller.conversation = PROBE
    await caller.connect(gw)
    await caller.hang_up()  # Genesys closes the probe once it is opened
    assert caller.ws is not None
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(5):
            async for message in caller.ws:
                caller.read(message)
    await caller.close()
    assert caller.opened.is_set() and not recorder.starts


async def session_closed_with(
    gw: Gateway, *messages: str | bytes, offers: Any = None
) -> tuple[int | None, str]:
    """A signed session: `open` (with `offers`, if given), then `messages`; how the gateway closed it."""
    caller = Signed()
    caller.host = gw.http
    opening = json.loads(caller.opening()[0])
    if offers is not None:
        opening["parameters"]["media"] = offers
    sent = [json.dumps(opening), *messages] if messages != ("",) else []
    return await closed_with(gw, caller.path, *sent, headers=caller.headers())


async def test_bad_input_ends_the_session_with_a_code_and_reason(gateway: tuple[Gateway, Recorder]) -> None:
    gw, recorder = gateway
    stereo = [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]
    results = await asyncio.gather(
        session_closed_with(gw, "{not json"),
        session_closed_with(gw, bytes(5000)),
        session_closed_with(gw, offers=stereo),
        session_closed_with(gw, ""),  # nothing at all
    )
    malformed, oversized, stereo_only, silence = results
    assert malformed == (1007, "protocol error: malformed JSON")
    assert oversized == (1009, "protocol error: audio of 5000 bytes is over the 4096 limit")
    assert stereo_only[0] == 1003 and "PCMU, 8000 Hz, channels [external]" in stereo_only[1]
    assert silence == (1002, "no 'open' in time")
    early = Signed()
    early.host = gw.http
    async with websockets.connect(f"ws://{gw.http}{early.path}", additional_headers=early.headers()) as ws:
        await ws.send(bytes(160))  # audio before `open`
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.recv()
    assert (ws.close_code, ws.close_reason) == (1002, "audio before 'open'")
    await recorder.ended(count=2)  # the malformed and the oversized ones got in
