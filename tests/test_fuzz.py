"""Fuzzing the gateway's inbound parsers: the fast part of scripts/fuzz_gateway.py, in `make test`.

Property tests call the parsers directly with Hypothesis-drawn input (thousands of cases in a second or two);
the live test plays a few hundred malformed calls per protocol against the real gateway on loopback, with
good calls alongside, and checks what docs/reliability.md reports at 10,000 per protocol: no crash, no
unhandled exception in the log, every bad call closed with a reason, nothing leaked, every call recorded.
All draws are derandomized, so a failure reproduces.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.audiosocket import FrameError, read_frame
from telephony.exotel import EXOTEL
from telephony.freeswitch import FREESWITCH
from telephony.jambonz import JAMBONZ
from telephony.mediastream import Dialect, start_object, stream_id
from telephony.plivo import PLIVO
from telephony.stream import WireError
from telephony.stream import as_int as _int
from telephony.stream import parse_json as parse
from telephony.telnyx import TELNYX
from telephony.twilio import TWILIO, media_format
from telephony.vonage import VONAGE
from telephony.websocket import MAX_REASON_BYTES, close_reason
from voicebot.pipeline import Services
from voicebot.testing.fuzz.campaign import fuzz_config, run_campaign
from voicebot.testing.fuzz.carriers import CARRIER_STRATEGIES, peer
from voicebot.testing.fuzz.cases import (
    JSON,
    LIMIT,
    SCALAR,
    STRATEGIES,
    TEXT,
    TOKEN,
    Case,
    audiosocket_case,
    generate,
    raw_garbage,
    start_message,
    twilio_message,
)
from voicebot.testing.gateway import no_greeting, running_gateway

PER_PROTOCOL = 250
PER_CARRIER = 60
FAST = settings(
    max_examples=1000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- the parsers, called directly ------------------------------------------------------------------------


def start_fields(data: dict[str, Any]) -> list[Any]:
    """What the gateway takes from a Twilio `start`: its stream id, format, ids and parameters."""
    start = start_object(data)
    sid = stream_id(TWILIO, data, start)
    media_format(start)
    return [sid, *TWILIO.meta(data, start).values(), TWILIO.token(data, start)]


@FAST
@given(twilio_message() | raw_garbage() | JSON.map(json.dumps))
def test_twilio_parse_only_raises_wire_errors(message: str | bytes) -> None:
    try:
        data = parse(message, LIMIT)
    except WireError as exc:
        assert exc.reason and 1000 <= exc.code <= 1015
        return
    assert isinstance(data["event"], str)
    for key in ("sequenceNumber", "timestamp"):
        assert _int(data.get(key)) is None or isinstance(_int(data.get(key)), int)
    if data["event"] == "start":
        try:
            fields = start_fields(data)
        except WireError:
            return
        json.dumps(fields, ensure_ascii=False).encode()  # all of it can go back out on the wire


@FAST
@given(st.builds(start_message, sid=TEXT, token=SCALAR | JSON), TEXT, SCALAR | JSON)
def test_twilio_start_fields_can_go_back_out(start: dict[str, Any], key: str, value: object) -> None:
    """What a `start` carries goes into the token check, call records, the transfer hook and every message
    sent back: it must be valid Unicode, whatever JSON escapes the caller used."""
    start["start"]["customParameters"][key] = start["start"]["callSid"] = value
    try:
        fields = start_fields(parse(json.dumps(start), LIMIT))
    except WireError:
        return
    json.dumps(fields, ensure_ascii=False).encode()


MEDIA_DIALECTS = {"telnyx": TELNYX, "plivo": PLIVO, "exotel": EXOTEL}


@FAST
@given(st.sampled_from(sorted(MEDIA_DIALECTS)), TEXT, SCALAR | JSON, st.data())
def test_carrier_starts_only_raise_wire_errors(protocol: str, key: str, value: object, data: Any) -> None:
    """Any field of a Telnyx, Plivo or Exotel `start` set to anything: a WireError or fields that can go
    back out on the wire."""
    dialect: Dialect = MEDIA_DIALECTS[protocol]
    start = json.loads(peer(protocol).opening()[-1])
    fmt = next(v for k, v in start["start"].items() if k in ("media_format", "mediaFormat"))
    holder = data.draw(st.sampled_from([start, start["start"], fmt]))  # the format's fields too
    holder[data.draw(st.sampled_from(sorted(holder)) | st.just(key))] = value
    try:
        inner = start_object(start)
        fields = [stream_id(dialect, start, inner), dialect.meta(start, inner), dialect.token(start, inner)]
        dialect.fmt(inner)
    except WireError as exc:
        assert 1000 <= exc.code <= 1015
        return
    json.dumps(fields, ensure_ascii=False).encode()


@FAST
@given(st.sampled_from(["vonage", "jambonz", "freeswitch"]), TEXT, SCALAR | JSON)
def test_binary_stream_openings_only_raise_wire_errors(protocol: str, key: str, value: object) -> None:
    dialect = {"vonage": VONAGE, "jambonz": JAMBONZ, "freeswitch": FREESWITCH}[protocol]
    first = json.loads(peer(protocol).opening()[0]) | {key: value}
    try:
        opened = dialect.opening(first, {})
    except WireError as exc:
        assert 1000 <= exc.code <= 1015
        return
    json.dumps([opened.meta, opened.token, opened.codec.name], ensure_ascii=False).encode()


@FAST
@given(SCALAR | JSON)
def test_twilio_counters_are_int_or_none(value: object) -> None:
    assert _int(value) is None or isinstance(_int(value), int)


@FAST
@given(st.text(st.characters(exclude_categories=())))
def test_close_reasons_always_fit_a_close_frame(text: str) -> None:
    reason = close_reason(text)
    assert len(reason.encode()) <= MAX_REASON_BYTES


@settings(max_examples=500, derandomize=True, deadline=None)
@given(audiosocket_case())
def test_audiosocket_frames_only_raise_frame_errors(case: Case) -> None:
    stream = b"".join(m if isinstance(m, bytes) else m.encode() for m in case.messages)

    async def read_all() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(stream)
        reader.feed_eof()
        while True:
            try:
                kind, payload = await read_frame(reader, LIMIT)
            except (FrameError, asyncio.IncompleteReadError):
                return
            assert len(payload) <= LIMIT and 0 <= kind <= 0xFF

    asyncio.run(read_all())


# --- the live server -------------------------------------------------------------------------------------


async def test_live_fuzz_every_protocol(services: Services, tmp_path: Path) -> None:
    """A few hundred malformed calls per protocol, 8 at a time, good calls alongside: every rule holds."""
    cases = [case for strategy in STRATEGIES.values() for case in generate(strategy(), PER_PROTOCOL)]
    result = await run_campaign(services, cases, tmp_path, concurrency=8)
    assert result.failures() == []
    assert {p: t.inputs for p, t in result.protocols.items()} == dict.fromkeys(STRATEGIES, PER_PROTOCOL)
    assert all(result.good[f"{p} ok"] >= 1 for p in STRATEGIES)  # a good call of each kind completed
    assert result.health_checks >= 1 and result.errors == [] and result.calls_left == 0
    assert result.leaks == {"fds": 0, "sockets": 0, "tasks": 0}
    assert all(result.admitted[p] == result.stored[p] > 0 for p in STRATEGIES)
    closes = {p: " | ".join(t.closes) for p, t in result.protocols.items()}
    assert "protocol error" in closes["twilio"] and "protocol error" in closes["audiosocket"]  # got in
    assert "caller hung up" in closes["twilio"] and "caller hung up" in closes["browser"]  # tolerated


async def test_live_fuzz_every_carrier(services: Services, tmp_path: Path) -> None:
    """The same rules for the seven carrier protocols, a good call of each alongside."""
    cases = [case for strategy in CARRIER_STRATEGIES.values() for case in generate(strategy(), PER_CARRIER)]
    result = await run_campaign(services, cases, tmp_path, concurrency=8)
    assert result.failures() == []
    assert {p: t.inputs for p, t in result.protocols.items()} == dict.fromkeys(
        CARRIER_STRATEGIES, PER_CARRIER
    )
    assert all(result.good[f"{p} ok"] >= 1 for p in CARRIER_STRATEGIES)
    assert result.errors == [] and result.calls_left == 0
    assert result.leaks == {"fds": 0, "sockets": 0, "tasks": 0}
    assert all(result.admitted[p] == result.stored[p] > 0 for p in CARRIER_STRATEGIES)
    closes = " | ".join(c for t in result.protocols.values() for c in t.closes)
    assert "protocol error" in closes and "caller hung up" in closes and "missing or wrong token" in closes


async def test_browser_rate_that_is_not_a_number_gets_a_reason(services: Services) -> None:
    async with running_gateway(fuzz_config(1), no_greeting(services)) as gw:
        async with websockets.connect(f"ws://{gw.http}/ws?rate=abc&token={TOKEN}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 1003 and ws.close_reason
