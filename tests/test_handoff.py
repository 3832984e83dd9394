"""The warm hand-off (issue 27 item 3), model-free (the fast tier).

The shop's real dialogue engine on a scripted NLU makes each reason's transfer, and the caller hears why;
`HandoffNotes` turns the call's turn records into the summary, its slots masked; the call record keeps it.
Then whole calls through the real gateway on fakes: Genesys gets the summary as `disconnect` output
variables, FreeSWITCH as a `transfer` message before `disconnect`, Twilio in the `<Dial>` its `<Connect
action>` fetches, a real local HTTP server receives the signed webhook (its first answer a 503, so the
retry is exercised), and `GET /calls/{id}/handoff` answers only with the gateway token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pytest
from sqlalchemy import text as sql

from telephony.handoff import HandoffDesk
from telephony.session import CallOutcome, Ending
from telephony.twiml import dial_twiml
from voicebot.config import VoicebotConfig
from voicebot.dialogue.actions import Actions
from voicebot.dialogue.brain import DialogueBrain, DialogueFactory
from voicebot.domain.loader import load_domain
from voicebot.frames import Action, BotReply, CallEnded, Cause, FinalTranscript, NoInput
from voicebot.handoff import HandoffNotes, HandoffSummary, trend_of
from voicebot.nlu.parser import Parse
from voicebot.records import CallStore
from voicebot.records.cli import format_call
from voicebot.records.db import ensure_schema, make_engine, resolve_url
from voicebot.testing.carriers import FreeSwitchCaller, GenesysCaller, fake_gateway
from voicebot.testing.fakes import ScriptedNLU, ToneVoice
from voicebot.testing.faults.callers import TwilioCaller, until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder, http_get
from voicebot.turns import TurnRecord

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"
TOKEN = "handoff-token-7"
SECRET = "webhook-secret-1"
EMAIL = "john.smith@gmail.com"
SCRIPT: dict[str, tuple[str, dict[str, str]]] = {
    "where is my order": ("track_order", {}),
    "i need a copy of my invoice": ("get_invoice", {}),
    "send it to my email": ("inform", {"email": EMAIL}),
    "can i talk to a person": ("contact_human_agent", {}),
    "can you transfer money to my savings": ("oos", {}),
    "this is useless": ("oos", {}),
    "this is ridiculous": ("oos", {}),
    "four five seven two one nine": ("inform", {"order_id": "457219"}),
}
ANGRY = {"this is useless": 0.8, "this is ridiculous": 0.9}  # frustration scores; others neutral (0.1)


class MoodNLU(ScriptedNLU):
    """ScriptedNLU with a sentiment on every scripted line (the frustration signal the policy reads)."""

    def parse(self, text: str, today: date | None = None) -> Parse:
        parse = super().parse(text, today)
        score = ANGRY.get(text.lower(), 0.1)
        label = "negative" if score > 0.5 else "neutral"
        scores = {"negative": score, "neutral": 1 - score, "positive": 0.0}
        return replace(parse, sentiment={"label": label, "scores": scores, "frustration": score})


def shop(tmp_path: Path) -> DialogueFactory:
    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    nlu = MoodNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye"})
    return DialogueFactory(SHOP, nlu, cache_dir=tmp_path, scratch=tmp_path / "scratch")


async def transfer_after(brain: DialogueBrain, *said: str | None) -> tuple[BotReply, HandoffSummary]:
    """Say each line (None: stay silent), the turn records going into `HandoffNotes` as the pipeline's
    would; the last reply must be the transfer. Returns it and the summary."""
    notes = HandoffNotes(brain.call_id, "browser")
    greeting = brain.greeting()
    assert greeting is not None
    notes.add(TurnRecord.build(replace(greeting, cause="greeting"), 0, None, None))
    reply: BotReply | None = None
    for n, text in enumerate(said, 1):
        event = NoInput(after_s=7.0) if text is None else FinalTranscript(text=text, t=float(n))
        reply = await brain.handle(event)
        assert reply is not None
        cause: Cause = "no_input" if text is None else "speech"
        notes.add(TurnRecord.build(replace(reply, cause=cause), n, None, None))
    assert reply is not None
    transfer = next(a for a in reply.actions if a.kind == "transfer")
    return reply, notes.summary(transfer, "https://bot.example.com/")


CASES: dict[str, tuple[tuple[str | None, ...], str]] = {  # reason → what the caller does, what they hear
    "asked_for_person": (("where is my order", "can i talk to a person"), "Of course, you'd like to talk"),
    "frustration": (("where is my order", "this is useless", "this is ridiculous"), "frustrating"),
    "not_understood": (("blah", "blah blah", "blah blah blah"), "trouble understanding"),
    "out_of_scope": (("can you transfer money to my savings",) * 3, "my colleagues can help you with"),
    "no_input": ((None, None, None), "can't hear you"),
}


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory: pytest.TempPathFactory) -> DialogueFactory:
    return shop(tmp_path_factory.mktemp("handoff"))


@pytest.mark.parametrize("reason", sorted(CASES))
async def test_each_reason_makes_its_summary_and_the_caller_hears_why(
    dialogue: DialogueFactory, reason: str
) -> None:
    said, why = CASES[reason]
    reply, summary = await transfer_after(dialogue(), *said)
    assert why in reply.text and reply.text.index(why) < reply.text.index("put you through")
    assert summary.reason == reason and summary.target == "agent"
    assert summary.console_url == f"https://bot.example.com/console#/call/{summary.call_id}"
    assert summary.turns == len(said) and f"after {len(said)} turns" in summary.lines[1]
    if said[0] == "where is my order":  # a task was under way: the agent sees which
        assert (summary.intent, summary.flow) == ("track_order", "track_order")
        assert summary.lines[0] == "Caller wants to track order; gave no details yet."
    if reason == "frustration":
        assert summary.sentiments == ("neutral", "negative", "negative") and summary.trend == "worsening"
        assert "frustrated (caller frustrated for 2 turns in a row)" in summary.lines[1]
        assert summary.lines[1].endswith("mood worsening.")
    wire = summary.wire()
    assert wire["handoffReason"] == reason and wire["callId"] == summary.call_id
    assert all(isinstance(v, str) and 0 < len(v) <= 240 for v in wire.values())


async def test_a_back_end_failure_hands_over_with_what_was_collected(dialogue: DialogueFactory) -> None:
    """Every action is a webhook to a closed port: the look-up fails for real, not through a mock."""
    dead = Actions(timeout_s=2.0)
    for name in dialogue.actions.names():
        dead.register_webhook(name, "http://127.0.0.1:9/")
    brain = DialogueBrain(dialogue.domain, dialogue.nlu, dead)
    reply, summary = await transfer_after(brain, "where is my order", "four five seven two one nine")
    assert "A colleague can finish this for you. I'll put you through" in reply.text
    assert summary.reason == "backend_error" and summary.detail.startswith("back end error: order_status")
    assert (summary.intent, summary.slots) == ("track_order", {"order_id": "457219"})
    assert summary.lines[0] == "Caller wants to track order; gave order id 457219."


def test_the_trend_compares_late_turns_with_early_ones() -> None:
    assert trend_of([]) == "unknown" and trend_of([0.5]) == "steady"
    assert trend_of([0.1, 0.2, 0.7, 0.8]) == "worsening" and trend_of([0.9, 0.2]) == "improving"
    assert trend_of([0.3, 0.35, 0.3]) == "steady"


async def test_personal_data_is_masked_in_the_summary_and_in_the_stored_record(
    dialogue: DialogueFactory, tmp_path: Path
) -> None:
    said = ("i need a copy of my invoice", "send it to my email", "can i talk to a person")
    _, summary = await transfer_after(dialogue(), *said)
    assert (summary.intent, summary.flow) == ("get_invoice", "get_invoice")
    assert summary.slots == {"email": "j***@g***.com"}
    assert "email j***@g***.com" in summary.lines[0]
    for form in (summary.as_json(), summary.wire()):
        assert "john" not in json.dumps(form) and "smith" not in json.dumps(form)
    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite'}", spool=tmp_path / "spool.jsonl")
    try:
        store.add_handoff(summary.call_id, summary.as_json() | {"detail": f"caller said {EMAIL}"})
        assert await store.flush() == 0
        detail = store.get_call(summary.call_id)
        desk = HandoffDesk(VoicebotConfig(), store)  # a fresh process: nothing in memory, the records answer
        found = await desk.find(summary.call_id)
        assert found is not None and found["summary"] == list(summary.lines)
        assert await desk.find("0" * 32) is None
    finally:
        store.close()
    assert detail is not None and detail.handoff is not None
    stored = detail.handoff
    assert stored["call_id"] == summary.call_id and stored["reason"] == "asked_for_person"
    assert stored["slots"] == {"email": "j***@g***.com"} and stored["detail"] == "caller said [email]"
    assert detail.as_json()["handoff"]["summary"] == list(summary.lines)
    assert f"hand-off: {summary.lines[0]}" in format_call(detail).splitlines()  # voicebot calls show


async def test_a_database_made_before_hand_offs_gets_the_column(
    db_url: str, make_store: Callable[..., CallStore]
) -> None:
    """`calls.handoff` is added to a records database made by an older version (SQLite and PostgreSQL)."""
    engine = make_engine(resolve_url(db_url))
    ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(sql("ALTER TABLE calls DROP COLUMN handoff"))  # as the tables were before
    engine.dispose()
    store = make_store(db_url)
    summary = {"call_id": "c" * 32, "reason": "no_input", "summary": ["a", "b"]}
    store.add_handoff("c" * 32, summary)
    assert await store.flush() == 0
    detail = store.get_call("c" * 32)
    assert detail is not None and detail.handoff == summary


async def test_a_transfer_ended_from_the_server_side_still_gets_its_summary() -> None:
    """An operator's transfer whose notice was lost ends by `Call.end`: no `CallEnded` carries the action,
    the `CallOutcome` does (the desk is a real observer here, fed as the session core feeds it)."""
    desk = HandoffDesk(VoicebotConfig())
    desk.on_start("d" * 32, "audiosocket", {"uuid": "5c0ffee0-0000-4000-8000-000000000001"})
    desk.on_event("d" * 32, CallEnded(reason="server ended the call"))  # the pipeline's own end: no action
    assert desk.handoff_of("d" * 32) is None
    action = Action("transfer", "agent", "operator ann transferred the call", "operator")
    desk.on_event("d" * 32, CallOutcome(Ending(action.reason or "", "server", (action,))))
    summary = desk.handoff_of("5c0ffee0-0000-4000-8000-000000000001")
    assert summary is not None and summary.reason == "operator" and summary.call_id == "d" * 32
    why = "an operator took the call over (operator ann transferred the call)"
    assert summary.lines[1] == f"Transferred because {why} after 0 turns."
    desk.on_end("d" * 32, "transfer to agent")
    assert desk.notes == {}


def test_dial_twiml_carries_the_summary_as_sip_headers_or_client_parameters() -> None:
    notes = HandoffNotes("c" * 32, "twilio", "CA" + "1" * 32)
    summary = notes.summary(Action("transfer", "agent", "caller asked for a person", "asked_for_person"))
    sip = ET.fromstring(dial_twiml(summary, "sip:queue@pbx.example.com;transport=tls") or "")
    uri = sip.findtext("./Dial/Sip") or ""
    assert uri.startswith("sip:queue@pbx.example.com;transport=tls?")
    headers = dict(parse_qsl(uri.split("?", 1)[1]))
    assert headers["X-HandoffReason"] == "asked_for_person" and headers["X-CallId"] == "c" * 32
    assert headers["X-ConsoleUrl"] == f"/console#/call/{'c' * 32}" and "X-Summary" not in headers
    client = ET.fromstring(dial_twiml(summary, "client:alice") or "").find("./Dial/Client")
    assert client is not None and client.findtext("Identity") == "alice"
    params = {p.get("name"): p.get("value") or "" for p in client.findall("Parameter")}
    assert params == summary.wire() and params["summary"].startswith("Caller's request is not known")
    number = ET.fromstring(dial_twiml(summary, "+441134960000") or "")
    assert number.findtext("./Dial/Number") == "+441134960000"
    assert dial_twiml(summary, "agent") is None  # a queue name is not dialable: <Hangup/> instead


# --- whole calls through the gateway ------------------------------------------------------------------

LINES = ("where is my order", "can i talk to a person")
VOICE = ToneVoice(LINES)


class Receiver:
    """A real HTTP/1.1 server on loopback standing in for a contact centre's webhook endpoint: answers 503
    to the first POST, 204 to the rest, and keeps every request's headers and raw body."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hooks/handoff"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:] if h)}
        body = await reader.readexactly(int(headers["content-length"]))
        self.posts.append((headers, body))
        status = "503 Service Unavailable" if len(self.posts) == 1 else "204 No Content"
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Recorder, Receiver]]:
    receiver = Receiver()
    url = await receiver.start()
    config = fault_config(token=TOKEN, audiosocket_port=None, max_message_bytes=4096, start_timeout_s=1.0)
    config.pipeline.greeting = False  # the call starts silent: the caller speaks first
    config.handoff.webhook_url, config.handoff.webhook_secret = url, SECRET
    config.handoff.webhook_backoff_s = 0.05
    config.handoff.twilio_dial = {"agent": "sip:queue@pbx.example.com"}
    try:
        async with fake_gateway(config, shop(tmp_path), VOICE) as (gw, recorder):
            yield gw, recorder, receiver
    finally:
        assert receiver.server is not None
        receiver.server.close()


def line(text: str) -> np.ndarray:
    return np.concatenate([VOICE.say(text, 8_000), np.zeros(6_400, np.int16)])


async def ask_for_a_person(caller: Any, gw: Gateway, recorder: Recorder) -> str:
    """Start a task, ask for a person, and wait for the bot to put the line down; the call's id."""
    await caller.connect(gw)
    call_id = await call_of(caller, gw)
    caller.say(line(LINES[0]))
    assert await until(lambda: caller.bot_frames > 10, 15)  # the bot asks for the order number
    caller.say(line(LINES[1]))
    await gone(call_id, gw)
    await caller.close()
    return call_id


async def get(gw: Gateway, path: str, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, body = await http_get(gw.http, path, headers=headers)
    return int(status.split()[1]), body


class TokenTwilio(TwilioCaller):
    async def _open(self, gw: Gateway) -> None:
        self.stream.ws = await self._connect(gw)
        await self.stream.start({"token": TOKEN})


async def test_each_line_carries_the_summary_and_the_webhook_and_endpoint_deliver_it(
    gateway: tuple[Gateway, Recorder, Receiver],
) -> None:
    """Three calls at once (one test's time): Genesys, FreeSWITCH and Twilio, each asking for a person."""
    gw, recorder, receiver = gateway
    genesys, freeswitch, twilio = (
        GenesysCaller({"queue": "billing"}, TOKEN),
        FreeSwitchCaller({}, TOKEN),
        TokenTwilio(),
    )
    ids = await asyncio.gather(*(ask_for_a_person(c, gw, recorder) for c in (genesys, freeswitch, twilio)))
    await genesys_checks(gw, recorder, genesys, ids[0])
    freeswitch_checks(recorder, freeswitch, ids[1])
    await twilio_checks(gw, twilio, ids[2])
    await endpoint_checks(gw, recorder, ids[0])
    await webhook_checks(receiver, set(ids))


async def genesys_checks(gw: Gateway, recorder: Recorder, caller: GenesysCaller, call_id: str) -> None:
    """The `disconnect` output variables carry the summary."""
    assert caller.disconnect is not None
    variables = caller.disconnect["outputVariables"]
    assert variables["transfer"] == "true" and variables["transferTarget"] == "agent"
    assert variables["handoffReason"] == "asked_for_person" and variables["intent"] == "track_order"
    assert variables["callId"] == call_id and variables["consoleUrl"] == f"/console#/call/{call_id}"
    assert variables["summary"].startswith("Caller wants to track order;")
    status, body = await get(gw, f"/calls/{call_id}/handoff")
    assert status == 200 and json.loads(body)["summary"] == variables["summary"].split(" / ")


def freeswitch_checks(recorder: Recorder, caller: FreeSwitchCaller, call_id: str) -> None:
    """mod_audio_fork's `transfer` message comes just before `disconnect`."""
    kinds = [kind for kind, _ in caller.received if kind not in ("media", "mark", "clear")]
    assert kinds[-2:] == ["transfer", "disconnect"]
    data = caller.kinds("transfer")[0]["data"]
    assert data["call_id"] == call_id and data["reason"] == "asked_for_person"
    assert data["provider_id"] == recorder.starts[call_id][1]["uuid"]


async def twilio_checks(gw: Gateway, caller: TokenTwilio, call_id: str) -> None:
    """`<Connect action>` → `/twilio/handoff` → `<Dial><Sip>` with the summary as X- headers."""
    status, twiml = await http_get(gw.http, f"/twilio/voice?token={TOKEN}")
    connect = ET.fromstring(twiml).find("./Connect")
    action = connect.get("action", "") if connect is not None else ""
    assert status.split()[1] == "200" and action == f"/twilio/handoff?token={TOKEN}"
    form = urlencode({"CallSid": caller.stream.call_sid, "CallStatus": "in-progress"})
    status, twiml = await http_get(gw.http, action, "POST", form)
    uri = ET.fromstring(twiml).findtext("./Dial/Sip") or ""
    headers = dict(parse_qsl(urlsplit(uri).query))
    assert status.split()[1] == "200" and uri.startswith("sip:queue@pbx.example.com?")
    assert headers["X-HandoffReason"] == "asked_for_person" and headers["X-CallId"] == call_id
    assert headers["X-Intent"] == "track_order"
    assert (await http_get(gw.http, "/twilio/handoff", "POST", form))[0].split()[1] == "403"  # no token
    unknown = urlencode({"CallSid": "CA" + "9" * 32})
    _, hangup = await http_get(gw.http, action, "POST", unknown)
    assert ET.fromstring(hangup).find("./Hangup") is not None  # no transfer: the call just ends


async def endpoint_checks(gw: Gateway, recorder: Recorder, call_id: str) -> None:
    """`GET /calls/{id}/handoff`: by our id or the carrier's, only with the gateway token."""
    conversation = recorder.starts[call_id][1]["conversationId"]
    assert json.loads((await get(gw, f"/calls/{conversation}/handoff"))[1])["call_id"] == call_id
    assert (await get(gw, f"/calls/{call_id}/handoff", token=None))[0] == 403
    assert (await get(gw, f"/calls/{call_id}/handoff", token="wrong"))[0] == 403
    assert (await get(gw, "/calls/no-such-call/handoff"))[0] == 404


async def webhook_checks(receiver: Receiver, ids: set[str]) -> None:
    """One signed POST per call, the first answered 503 and retried (same delivery id, same body)."""
    assert await until(lambda: len(receiver.posts) == 4, 10)
    deliveries = [headers["x-voicebot-delivery"] for headers, _ in receiver.posts]
    assert set(deliveries) == ids and deliveries.count(deliveries[0]) == 2
    assert receiver.posts[0][1] == next(
        b for h, b in receiver.posts[1:] if h["x-voicebot-delivery"] == deliveries[0]
    )
    for headers, raw in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert headers["x-voicebot-signature"] == expected  # verified here, independently of telephony
        assert headers["x-voicebot-event"] == "call.handoff" and headers["content-type"] == "application/json"
        posted = json.loads(raw)
        assert posted["event"] == "call.handoff" and posted["handoff"]["reason"] == "asked_for_person"
        tampered = raw.replace(b"asked_for_person", b"frustration")  # the signature covers the body
        assert expected != "sha256=" + hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
