"""The operator console's server side over real calls: its auth and CSRF refusals, the live feed, an
operator's transfer, history filters and the dashboard's figures, on the gateway with real call records,
the shop's dialogue engine and Twilio-protocol callers (fake models: `voicebot.testing.console`)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websockets

from telephony.console.api import reviews_path
from telephony.console.auth import hash_password, password_ok
from voicebot.config import ConsoleConfig, ServerConfig, VoicebotConfig
from voicebot.testing.console import CALLER_NUMBER, SHOP, TOKEN, ConsoleBed, console_gateway, line
from voicebot.testing.fakes import fake_services
from voicebot.testing.faults.callers import until
from voicebot.testing.faults.env import gone
from voicebot.testing.gateway import running_gateway

BEARER = {"Authorization": f"Bearer {TOKEN}"}
READS = ("/console/api/me", "/console/api/calls", "/console/api/facets", "/console/api/stats",
         "/console/api/calls/x", "/console/api/calls/x/recording", "/console/api/live")  # fmt: skip


async def request(
    host: str, path: str, method: str = "GET", headers: dict[str, str] | None = None, body: str = ""
) -> tuple[int, dict[str, str], str]:
    """One HTTP/1.1 request: status, headers (lower-case names; Set-Cookie values joined by newlines)
    and body."""
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    headers = {"Host": host} | (headers or {})
    head = [f"{method} {path} HTTP/1.1", "Connection: close", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n" + body).encode())
    data = (await reader.read()).decode(errors="replace")  # a recording is binary
    writer.close()
    top, _, text = data.partition("\r\n\r\n")
    lines = top.split("\r\n")
    found: dict[str, str] = {}
    for item in lines[1:]:
        key, _, value = item.partition(":")
        key = key.strip().lower()
        found[key] = f"{found[key]}\n{value.strip()}" if key in found else value.strip()
    return int(lines[0].split()[1]), found, text


def cookie_of(headers: dict[str, str]) -> str:
    """The console's session cookie as a request's Cookie header."""
    cookie = next(c for c in headers["set-cookie"].split("\n") if c.startswith("vb_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    return cookie.split(";")[0]


async def token_session(host: str) -> tuple[str, str]:
    """Log in with `?token=`: the session cookie and its CSRF token."""
    status, headers, _ = await request(host, f"/console?token={TOKEN}")
    assert status == 303 and headers["location"] == "/console"  # the token leaves the address bar
    cookie = cookie_of(headers)
    status, _, body = await request(host, "/console/api/me", headers={"Cookie": cookie})
    assert status == 200
    me = json.loads(body)
    assert (me["user"], me["role"]) == ("token", "supervisor") and len(me["csrf"]) > 20
    return cookie, me["csrf"]


async def sse(host: str, headers: dict[str, str], into: list[dict[str, Any]]) -> None:
    """Read the live feed's events into `into` until cancelled."""
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    head = ["GET /console/api/live HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    try:
        while line_ := await reader.readline():
            text = line_.decode().strip()
            if text.startswith("data: {"):  # chunked framing lines and comments are not events
                into.append(json.loads(text[6:]))
    finally:
        writer.close()


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[ConsoleBed]:
    viewer = {"name": "vera", "password_hash": hash_password("viewer-pass", 1000), "role": "viewer"}
    boss = {"name": "sam", "password_hash": hash_password("super-pass", 1000), "role": "supervisor"}
    async with console_gateway(tmp_path, {"users": [viewer, boss]}) as found:
        yield found


def test_password_hashes() -> None:
    stored = hash_password("correct horse", 1000)
    assert stored.startswith("pbkdf2_sha256$1000$") and password_ok("correct horse", stored)
    assert not password_ok("correct hors", stored) and not password_ok("x", "not a hash")
    assert hash_password("a", 1000) != hash_password("a", 1000)  # salted


async def test_nothing_is_readable_or_changeable_without_auth(bed: ConsoleBed) -> None:
    host = bed.gw.http
    status, headers, _ = await request(host, "/console")
    assert status == 303 and headers["location"] == "/console/login"
    assert (await request(host, "/console?token=wrong"))[0] == 403
    for path in READS:
        status, _, body = await request(host, path)
        assert status == 401 and "log in" in json.loads(body)["error"], path
        assert (await request(host, path, headers={"Cookie": "vb_console=forged"}))[0] == 401, path
        assert (await request(host, path, headers={"Authorization": "Bearer wrong"}))[0] == 401, path
    assert (await request(host, "/console/api/live/x/transfer", "POST"))[0] == 401
    assert (await request(host, "/console/login"))[0] == 200  # the form itself holds nothing
    status, _, body = await request(host, "/console/static/console.js")
    assert status == 200 and "EventSource" in body  # assets: no data in them


async def test_named_users_log_in_and_only_a_supervisor_transfers(bed: ConsoleBed) -> None:
    host, form = bed.gw.http, {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, body = await request(host, "/console/login", "POST", form, "name=vera&password=nope")
    assert status == 401 and "Wrong name or password" in body
    status, _, _ = await request(host, "/console/login", "POST", form, "name=nobody&password=viewer-pass")
    assert status == 401
    evil = form | {"Origin": "http://evil.example"}
    assert (await request(host, "/console/login", "POST", evil, "name=vera&password=viewer-pass"))[0] == 403
    status, headers, _ = await request(host, "/console/login", "POST", form, "name=vera&password=viewer-pass")
    assert status == 303
    viewer = cookie_of(headers)
    me = json.loads((await request(host, "/console/api/me", headers={"Cookie": viewer}))[2])
    assert (me["user"], me["role"]) == ("vera", "viewer")
    caller, call_id = await bed.call()
    try:
        csrf = {"Cookie": viewer, "X-CSRF-Token": me["csrf"]}
        status, _, body = await request(host, f"/console/api/live/{call_id}/transfer", "POST", csrf)
        assert status == 403 and "supervisor" in body
        assert call_id in bed.gw.hub.calls  # still talking to the bot
    finally:
        await caller.close()
    assert (await request(host, "/console/logout", "POST", {"Cookie": viewer}))[0] == 403  # no CSRF token
    assert (await request(host, "/console/logout", "POST", {"Cookie": viewer, "X-CSRF-Token": me["csrf"]}))[
        0
    ] == 200
    assert (await request(host, "/console/api/me", headers={"Cookie": viewer}))[0] == 401


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
    await bed.store.flush()
    detail = json.loads((await request(host, f"/console/api/calls/{call_id}", headers=BEARER))[2])
    assert detail["transfers"][0]["target"] == "agent"
    assert detail["transfers"][0]["reason"] == "operator token transferred the call"
    assert detail["call"]["end_reason"].startswith("transfer to agent")
    assert not bed.gw.app.state.gateway.hub.observers[-1].watchers  # the feed forgot the closed stream


async def test_history_filters_and_the_dashboard(bed: ConsoleBed) -> None:
    host = bed.gw.http
    tracked = await bed.place_call(["where is my order", "four five seven two one nine", "no thanks goodbye"])
    handed = await bed.place_call(["i want to talk to a person"])
    lost = await bed.place_call(["what is the meaning of life", "no thanks goodbye"])

    async def ids(query: str) -> list[str]:
        status, _, body = await request(host, f"/console/api/calls?{query}", headers=BEARER)
        assert status == 200, body
        return [c["id"] for c in json.loads(body)]

    assert await ids("") == [lost, handed, tracked]  # most recent first
    assert await ids("outcome=transferred") == [handed]
    assert await ids("outcome=contained") == [lost, tracked]
    assert await ids("intent=track_order") == [tracked]
    assert await ids("q=MEANING%20of") == [lost]
    assert await ids(f"q={tracked[:10]}") == [tracked]
    assert await ids("q=100%25") == []  # a % is a character, not a wildcard
    assert await ids("protocol=twilio&limit=1") == [lost]
    assert await ids("limit=1&offset=1") == [handed]  # the page's "older calls"
    future = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert await ids(f"since={future}") == [] and len(await ids(f"until={future}")) == 3
    assert (await request(host, "/console/api/calls?outcome=bogus", headers=BEARER))[0] == 400
    facets = json.loads((await request(host, "/console/api/facets", headers=BEARER))[2])
    assert {"track_order", "contact_human_agent", "goodbye"} <= set(facets["intents"])

    detail = json.loads((await request(host, f"/console/api/calls/{tracked}", headers=BEARER))[2])
    asked = next(t for t in detail["turns"] if t["action"] == "order_status")
    assert asked["slots"] == {"order_id": "457219"} and asked["action_result"] == "ok"
    assert asked["extra"]["at_ms"]["speech_end"] == 0.0 and asked["extra"]["at_ms"]["first_audio_sent"] > 0
    starts = [t["start_s"] for t in detail["turns"]]
    assert starts == sorted(starts) and starts[-1] < detail["call"]["duration_s"]
    assert CALLER_NUMBER not in json.dumps(detail) and detail["call"]["caller"].endswith("56")
    status, headers, wav = await request(host, detail["recording_url"], headers=BEARER)
    assert status == 200 and headers["content-type"] == "audio/wav" and wav.startswith("RIFF")
    status, headers, _ = await request(
        host, detail["recording_url"], headers=BEARER | {"Range": "bytes=0-99"}
    )
    assert status == 206 and headers["content-length"] == "100"  # the player can seek

    stats = json.loads((await request(host, "/console/api/stats?hours=2", headers=BEARER))[2])
    assert (stats["calls"], stats["ended"], stats["containment"]) == (3, 3, round(2 / 3, 4))
    assert sum(h["calls"] for h in stats["calls_per_hour"]) == 3 and len(stats["calls_per_hour"]) == 2
    assert [r["calls"] for r in stats["transfers_by_reason"]] == [1]
    assert {"intent": "track_order", "turns": 1, "success": 1.0} in stats["task_success"]
    assert stats["out_of_scope"] == [{"text": "what is the meaning of life", "count": 1}]
    assert (
        stats["voice_to_voice"]["n"] >= 5 and stats["voice_to_voice"]["p50"] <= stats["voice_to_voice"]["p95"]
    )


async def test_without_credentials_the_console_is_for_loopback_only(tmp_path: Path) -> None:
    server = ServerConfig(audiosocket_port=None, drain_s=1)
    config = VoicebotConfig(server=server, console=ConsoleConfig(), cache_dir=tmp_path)  # its records
    services = fake_services(config)
    try:
        async with running_gateway(config, services) as gw:
            status, headers, _ = await request(gw.http, "/console")
            assert status == 200 and cookie_of(headers)
            assert (await request(gw.http, "/console/api/calls"))[0] == 200
            rebound = {"Host": "attacker.example"}  # DNS rebinding: a page of that name, resolved to us
            assert (await request(gw.http, "/console/api/calls", headers=rebound))[0] == 401
            proxied = {"X-Forwarded-For": "203.0.113.7"}  # a client beyond a proxy on this box
            assert (await request(gw.http, "/console", headers=proxied))[0] == 403
            assert (await request(gw.http, "/console/api/calls", headers=proxied))[0] == 401
    finally:
        services.close()


async def test_an_operator_corrects_a_turn_into_the_reviewed_file_and_retrains(tmp_path: Path) -> None:
    boss = {"name": "sam", "password_hash": hash_password("super-pass", 1000), "role": "supervisor"}
    viewer = {"name": "vera", "password_hash": hash_password("viewer-pass", 1000), "role": "viewer"}
    command = [sys.executable, "-c", "import os; print('training on', os.environ['VOICEBOT_REVIEWED'])"]
    async with console_gateway(tmp_path, {"users": [boss, viewer], "retrain_command": command}) as bed:
        host = bed.gw.http
        call_id = await bed.place_call(
            ["where is my order", "what is the meaning of life", "no thanks goodbye"]
        )
        cookie, csrf = await token_session(host)
        sam = {"Cookie": cookie, "X-CSRF-Token": csrf, "Content-Type": "application/json"}
        detail = json.loads((await request(host, f"/console/api/calls/{call_id}", headers=BEARER))[2])
        turn = next(t for t in detail["turns"] if t["transcript"] == "what is the meaning of life")
        path = f"/console/api/calls/{call_id}/turns/{turn['index']}/review"

        async def review(
            body: dict[str, Any], headers: dict[str, str] = sam, to: str = path
        ) -> tuple[int, Any]:
            status, _, text = await request(host, to, "POST", headers, json.dumps(body))
            return status, json.loads(text)

        good = {
            "verdict": "corrected",
            "intent": "track_order",
            "example": "what is the [meaning](order_id) of life",
        }
        assert (await review(good, {"Cookie": cookie}))[0] == 403  # no CSRF token
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        _, headers, _ = await request(host, "/console/login", "POST", form, "name=vera&password=viewer-pass")
        vera = {"Cookie": cookie_of(headers), "Content-Type": "application/json"}
        vera["X-CSRF-Token"] = json.loads((await request(host, "/console/api/me", headers=vera))[2])["csrf"]
        assert (await review(good, vera))[0] == 403  # a viewer reads, never writes
        assert (await review(good | {"intent": "no_such_intent"}))[0] == 400
        assert (await review(good | {"example": "what is [the meaning(order_id) of life"}))[0] == 400
        assert (await review(good | {"verdict": "maybe"}))[0] == 400
        assert (await review(good, to=f"/console/api/calls/{call_id}/turns/0/review"))[
            0
        ] == 404  # the greeting
        assert not (tmp_path / "reviewed.jsonl").exists()

        status, written = await review(
            good | {"example": "call me on +44 7911 123456 about the [meaning](order_id)"}
        )
        assert status == 200 and written["by"] == "token" and "7911" not in written["example"]
        status, written = await review(good)  # the same turn again: the latest review wins
        assert status == 200 and written["slots"] == {"order_id": "meaning"}
        assert (written["heard"], written["heard_intent"]) == ("what is the meaning of life", "oos")
        lines = [json.loads(t) for t in (tmp_path / "reviewed.jsonl").read_text().splitlines()]
        assert [r["verdict"] for r in lines] == ["corrected", "corrected"] and lines[-1] == written
        listed = json.loads((await request(host, "/console/api/reviews", headers=BEARER))[2])
        assert listed["examples"] == {"track_order": ["what is the [meaning](order_id) of life"]}
        assert "track_order" in listed["known_intents"] and listed["reviews"][0] == written

        assert (await request(host, "/console/api/retrain", "POST", {"Cookie": cookie}))[0] == 403
        status, _, text = await request(host, "/console/api/retrain", "POST", sam)
        assert status == 200 and json.loads(text)["started"]

        async def finished() -> dict[str, Any]:
            while True:
                state: dict[str, Any] = json.loads(
                    (await request(host, "/console/api/retrain", headers=BEARER))[2]
                )
                if not state["running"]:
                    return state
                await asyncio.sleep(0.1)

        state = await asyncio.wait_for(finished(), 20)
        assert state["returncode"] == 0 and f"training on {tmp_path / 'reviewed.jsonl'}" in state["output"]
        config = bed.gw.app.state.gateway.config.model_copy(deep=True)
        config.console.reviews_file = None
        assert reviews_path(config, bed.gw.hub) == SHOP / "reviewed.jsonl"  # beside the domain by default


async def login(host: str, name: str, password: str) -> dict[str, str]:
    """Log in with the form: the session cookie as a Cookie header."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, _ = await request(
        host, "/console/login", "POST", form, f"name={name}&password={password}"
    )
    assert status == 303
    return {"Cookie": cookie_of(headers)}


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
