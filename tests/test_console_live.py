"""The operator console's live side over real calls: the live feed (SSE) with its partial transcripts, an
operator's transfer, listen-in, and a gateway that shuts down with a console still open (fake models:
`voicebot.testing.console`)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from voicebot.testing.console import (
    BEARER,
    ConsoleBed,
    console_gateway,
    line,
    login,
    request,
    sse,
    token_session,
    users,
)
from voicebot.testing.faults.callers import until
from voicebot.testing.faults.env import gone


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[ConsoleBed]:
    async with console_gateway(tmp_path, {"users": users()}) as found:
        yield found


async def test_a_supervisor_sees_a_live_call_and_transfers_it(bed: ConsoleBed) -> None:
    host = bed.gw.http
    cookie, csrf = await token_session(host)
    events: list[dict[str, Any]] = []
    feed = asyncio.create_task(sse(host, {"Cookie": cookie}, events))
    caller, call_id = await bed.call()
    try:
        assert await until(
            lambda: any(e["type"] == "call" and e["call"]["id"] == call_id for e in events), 10
        )
        started = next(e["call"] for e in events if e["type"] == "call")
        assert started["protocol"] == "twilio" and started["caller"].endswith("56")
        assert "7911" not in json.dumps(events)  # the caller's number is masked
        assert bed.gw.hub.calls[call_id].pipe.asr.partials  # watched: partial transcripts on
        assert await until(lambda: bed.turns(call_id) >= 1, 10)  # the greeting played
        caller.say(line("where is my order"))
        said = {"type": "line", "id": call_id, "who": "caller", "text": "where is my order"}
        assert await until(lambda: said in events, 10)
        assert await until(
            lambda: any(e["type"] == "state" and e.get("flow") == "track_order" for e in events), 10
        )
        assert await until(lambda: bed.turns(call_id) >= 2, 10)
        caller.say(line("four five seven two one nine"))  # long enough for a partial decode on the way
        heard = {"type": "partial", "id": call_id, "text": "four five seven two one nine"}
        assert await until(lambda: heard in events, 10)
        assert await until(lambda: bed.turns(call_id) >= 3, 10)
        path = f"/console/api/live/{call_id}/transfer"
        assert (await request(host, path, "POST", {"Cookie": cookie}))[0] == 403  # no CSRF token
        wrong = {"Cookie": cookie, "X-CSRF-Token": "x" * 43}
        assert (await request(host, path, "POST", wrong))[0] == 403
        other = {"Cookie": cookie, "X-CSRF-Token": csrf, "Origin": "http://evil.example"}
        assert (await request(host, path, "POST", other))[0] == 403
        assert call_id in bed.gw.hub.calls
        status, _, body = await request(host, path, "POST", {"Cookie": cookie, "X-CSRF-Token": csrf})
        assert status == 200 and json.loads(body)["target"] == "agent"
        await gone(call_id, bed.gw)
        assert await until(lambda: {"type": "ended", "id": call_id} in [
            {k: e.get(k) for k in ("type", "id")} for e in events], 5)  # fmt: skip
    finally:
        feed.cancel()
        await asyncio.gather(feed, return_exceptions=True)
        await caller.close()
    assert any(e["type"] == "line" and e["who"] == "bot" and "colleague" in e["text"] for e in events)
    handed = {"type": "transfer", "id": call_id, "reason": "operator",
              "reason_text": "an operator took the call over", "target": "agent"}  # fmt: skip
    assert events.index(handed) < [e["type"] for e in events].index("ended")  # while the notice plays
    await bed.store.flush()
    detail = json.loads((await request(host, f"/console/api/calls/{call_id}", headers=BEARER))[2])
    assert detail["transfers"][0]["target"] == "agent"
    assert detail["transfers"][0]["reason"] == "operator token transferred the call"
    assert detail["call"]["end_reason"].startswith("transfer to agent")
    assert detail["handoff"]["reason"] == "operator" and detail["handoff_wire"]["handoffReason"] == "operator"
    assert not bed.gw.app.state.gateway.hub.observers[-1].watchers  # the feed forgot the closed stream


async def test_a_supervisor_listens_in_and_the_line_closes_with_the_call(bed: ConsoleBed) -> None:
    host = bed.gw.http
    caller, call_id = await bed.call()
    try:
        url = f"ws://{host}/console/api/live/{call_id}/listen"
        cookie, _ = await token_session(host)
        refusals = [
            {},  # nobody
            {"Cookie": cookie, "Origin": "http://evil.example"},  # another site's page, with our cookie
            await login(host, "vera", "viewer-pass"),  # a viewer: never the caller's voice
        ]
        for headers in refusals:
            with pytest.raises(websockets.InvalidStatus):
                async with websockets.connect(url, additional_headers=headers):
                    pass
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(
                url.replace(call_id, "nope"), additional_headers={"Cookie": cookie}
            ):
                pass
        async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
            assert json.loads(await ws.recv()) == {"type": "start", "rate": 8000}
            caller.say(line("where is my order"))
            sides: Counter[int] = Counter()
            async with asyncio.timeout(15):
                while sides[0] < 50 or sides[1] < 10:  # a second of the line, and the bot's answer
                    message = await ws.recv()
                    assert isinstance(message, bytes) and len(message) == 1 + 320  # 20 ms of PCM16 at 8 kHz
                    sides[message[0]] += 1
        assert await until(lambda: not bed.gw.hub.calls[call_id].taps, 5)  # the tap left with the browser
        async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
            await ws.recv()
            caller.abort()  # the line drops: the listen socket closes with the call
            async with asyncio.timeout(15):
                with pytest.raises(websockets.ConnectionClosedOK):
                    while True:
                        await ws.recv()
    finally:
        await caller.close()


async def test_an_open_live_feed_does_not_hold_the_gateway_up(tmp_path: Path) -> None:
    """uvicorn waits for open responses before it stops: an operator's open console must not keep a
    gateway from shutting down."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(20):
        async with console_gateway(tmp_path) as bed:
            feed = asyncio.create_task(sse(bed.gw.http, BEARER, events))
            assert await until(lambda: bool(events), 5)
        await asyncio.wait_for(feed, 5)  # the server ended the stream
    assert events[0]["type"] == "snapshot"
