"""The operator console's server side over real calls: its auth and CSRF refusals, history filters, the
dashboard's figures and learning from calls (the live side: test_console_live.py), on the gateway with
real call records, the shop's dialogue engine and Twilio-protocol callers (fake models:
`voicebot.testing.console`)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from telephony.console.auth import hash_password, password_ok
from telephony.console.learn import reviews_path
from voicebot.config import ConsoleConfig, ServerConfig, VoicebotConfig
from voicebot.testing.console import (
    BEARER,
    CALLER_NUMBER,
    ConsoleBed,
    console_gateway,
    cookie_of,
    request,
    token_session,
    users,
)
from voicebot.testing.fakes import fake_services
from voicebot.testing.gateway import running_gateway
from voicebot.testing.shop import SHOP

READS = ("/console/api/me", "/console/api/calls", "/console/api/facets", "/console/api/stats",
         "/console/api/calls/x", "/console/api/calls/x/recording", "/console/api/live")  # fmt: skip


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[ConsoleBed]:
    async with console_gateway(tmp_path, {"users": users()}) as found:
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

    # The hand-off: its reason in the history, its summary and what the person received on the call's page.
    listed = json.loads((await request(host, "/console/api/calls", headers=BEARER))[2])
    assert [c["handoff_reason"] for c in listed] == [None, "asked_for_person", None]
    sent = json.loads((await request(host, f"/console/api/calls/{handed}", headers=BEARER))[2])
    assert sent["handoff"]["reason"] == "asked_for_person" and sent["handoff"]["target"] == "agent"
    assert sent["handoff_wire"]["handoffReason"] == "asked_for_person"
    assert sent["handoff_wire"]["summary"] == " / ".join(sent["handoff"]["summary"])
    assert sent["handoff"]["summary"][1].startswith("Transferred because the caller asked for a person")
    assert CALLER_NUMBER not in json.dumps(sent) and sent["domain"] == "shop"

    detail = json.loads((await request(host, f"/console/api/calls/{tracked}", headers=BEARER))[2])
    assert detail["handoff"] is None and detail["handoff_wire"] is None
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
    assert stats["transfers_by_reason"] == [{"reason": "asked_for_person", "calls": 1}]
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
    command = [sys.executable, "-c", "import os; print('training on', os.environ['VOICEBOT_REVIEWED'])"]
    async with console_gateway(tmp_path, {"users": users(), "retrain_command": command}) as bed:
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

        first = next(t for t in detail["turns"] if t["transcript"] == "where is my order")["index"]
        asked = f"/console/api/calls/{call_id}/turns/{first}/review"
        question = {"verdict": "faq", "example": "where is my order"}
        assert (await review(question | {"faq": "no_such_answer"}, to=asked))[0] == 400  # new: needs words
        status, _ = await review(question | {"faq": "gift_wrap", "answer": "See www.shop.example"}, to=asked)
        assert status == 400  # answers are spoken: no URLs
        status, written = await review(question | {"faq": "delivery_options"}, to=asked)
        assert status == 200 and (written["verdict"], written["faq"], written["answer"]) == (
            "faq", "delivery_options", None)  # fmt: skip
        new = {"faq": "gift_wrap", "answer": "Yes, we gift wrap any order for free."}
        assert (await review(question | new, to=asked))[0] == 200  # the same turn again: this one wins
        listed = json.loads((await request(host, "/console/api/reviews", headers=BEARER))[2])
        assert listed["faq"] == [
            {"id": "gift_wrap", "answer": new["answer"], "questions": ["where is my order"]}
        ]
        assert "delivery_options" in listed["known_answers"]
        assert listed["examples"] == {"track_order": ["what is the [meaning](order_id) of life"]}

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
        shop = bed.gw.hub.brain_factory
        assert reviews_path(config, shop) == SHOP / "reviewed.jsonl"  # beside the domain by default


async def test_each_domain_learns_from_its_own_calls(tmp_path: Path) -> None:
    """With two domains, a call's reviews go to the reviewed file of the domain that answered it, checked
    against that domain's model, and "retrain" runs for the domain asked for."""
    from tests.tiny import tiny_domain
    from voicebot.nlu.brain import UnderstandingFactory
    from voicebot.testing.console import DomainCaller
    from voicebot.testing.fakes import ScriptedNLU

    script: dict[str, tuple[str, dict[str, str]]] = {
        "where is my order": ("greet", {}),
        "no thanks goodbye": ("goodbye", {}),
    }
    tiny = UnderstandingFactory(tiny_domain(tmp_path / "tiny"), ScriptedNLU(script, ["track_order"]))
    command = [sys.executable, "-c", "import os; print('training on', os.environ['VOICEBOT_REVIEWED'])"]
    async with console_gateway(tmp_path, {"retrain_command": command}, {"tiny": tiny}) as bed:
        host = bed.gw.http
        lines = ["where is my order", "no thanks goodbye"]
        shop_call, tiny_call = await asyncio.gather(  # a Twilio call gets the default domain
            bed.place_call(lines), bed.place_call(lines, caller=DomainCaller("tiny"))
        )

        async def api(path: str, method: str = "GET") -> tuple[int, Any]:
            status, _, text = await request(host, path, method, BEARER)
            return status, json.loads(text)

        calls = {c: (await api(f"/console/api/calls/{c}"))[1] for c in (shop_call, tiny_call)}
        assert [calls[c]["domain"] for c in (shop_call, tiny_call)] == ["shop", "tiny"]

        async def review(call_id: str, intent: str) -> tuple[int, Any]:
            turn = next(t for t in calls[call_id]["turns"] if t["transcript"] == "where is my order")
            path = f"/console/api/calls/{call_id}/turns/{turn['index']}/review"
            body = {"verdict": "corrected", "intent": intent, "example": "where is my order"}
            status, _, text = await request(host, path, "POST", BEARER, json.dumps(body))
            return status, json.loads(text)

        assert (await review(tiny_call, "contact_human_agent"))[0] == 400  # the shop's, not the tiny model's
        assert (await review(tiny_call, "track_order"))[0] == 200
        assert (await review(shop_call, "track_order"))[0] == 200
        shop_file, tiny_file = tmp_path / "reviewed-shop.jsonl", tmp_path / "reviewed-tiny.jsonl"
        assert [json.loads(t)["call"] for t in tiny_file.read_text().splitlines()] == [tiny_call]
        assert [json.loads(t)["call"] for t in shop_file.read_text().splitlines()] == [shop_call]

        status, listed = await api("/console/api/reviews?domain=tiny")
        assert status == 200 and (listed["domain"], listed["domains"]) == ("tiny", ["shop", "tiny"])
        assert listed["file"] == str(tiny_file) and listed["known_answers"] == ["hours"]
        assert listed["examples"] == {"track_order": ["where is my order"]}
        assert listed["known_intents"] == ["goodbye", "greet", "oos", "track_order"]
        assert (await api("/console/api/reviews"))[1]["file"] == str(shop_file)  # the default domain's
        assert (await api("/console/api/reviews?domain=bank"))[0] == 400
        assert (await api("/console/api/retrain?domain=tiny", "POST"))[0] == 200

        async def finished() -> Any:
            while (state := (await api("/console/api/retrain?domain=tiny"))[1])["running"]:
                await asyncio.sleep(0.1)
            return state

        assert f"training on {tiny_file}" in (await asyncio.wait_for(finished(), 20))["output"]
        assert (await api("/console/api/retrain"))[1]["started"] is None  # the shop's never ran
