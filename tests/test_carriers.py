"""Every carrier protocol end to end, with model-free fakes (the fast tier): the real gateway, transports,
pipeline and the shop's real dialogue engine and back end, the callers from `voicebot.testing.carriers`
(each written from its carrier's reference), the models from `voicebot.testing.fakes`.

One whole shop task per carrier — barge in on the greeting, ask where the order is, key the order number,
hear its status, say goodbye, and the bot puts the line down the carrier's way — then each carrier's bad
input: every one must end that call with a close code and a reason a carrier's logs can show.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from telephony.session import WireStats
from voicebot.dialogue.brain import DialogueFactory
from voicebot.domain.loader import load_domain
from voicebot.frames import TurnDone
from voicebot.testing.carriers import PEERS, CarrierCaller, GenesysCaller, fake_gateway
from voicebot.testing.fakes import ScriptedNLU, ToneVoice
from voicebot.testing.faults.callers import until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder

SHOP = Path(__file__).resolve().parent.parent / "domains" / "shop"
TOKEN = "s3cret42"
RATE = 8_000
LINES = ("where is my order", "no thanks goodbye")
SCRIPT: dict[str, tuple[str, dict[str, str]]] = {LINES[0]: ("track_order", {}), LINES[1]: ("goodbye", {})}
VOICE = ToneVoice(LINES)
CALLERS: dict[str, Callable[..., CarrierCaller]] = dict(PEERS)
MEDIA_STREAMS = ("telnyx", "plivo", "exotel")  # JSON with base64 audio; the others send binary audio


def line(text: str, pause_s: float = 0.8) -> np.ndarray:
    return np.concatenate([VOICE.say(text, RATE), np.zeros(int(pause_s * RATE), np.int16)])


def shop(tmp_path: Path) -> DialogueFactory:
    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    nlu = ScriptedNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye"})
    return DialogueFactory(SHOP, nlu, cache_dir=tmp_path, scratch=tmp_path / "scratch")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Recorder]]:
    config = fault_config(token=TOKEN, audiosocket_port=None, max_message_bytes=4096, start_timeout_s=1.0)
    async with fake_gateway(config, shop(tmp_path), VOICE) as running:
        yield running


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_a_shop_task_over_each_carrier(gateway: tuple[Gateway, Recorder], protocol: str) -> None:
    gw, recorder = gateway
    caller = CALLERS[protocol]({"customer": "c42"}, TOKEN)
    await caller.connect(gw)
    try:
        call_id = await call_of(caller, gw)
        assert await until(lambda: caller.bot_frames > 25, 10)  # half a second into the greeting
        caller.say(line(LINES[0]))  # barges in: "where is my order"
        assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= 2, 15)
        await caller.press("457219", gap_s=0.15)  # the order number on the keypad (6 digits end it)
        assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= 3, 15)
        assert await until(lambda: not caller.playout.pending and caller.bot_frames > 0, 15)
        caller.say(line(LINES[1]))
        await gone(call_id, gw)
        assert await until(caller.closed.is_set, 10)  # the bot put the line down after its goodbye
    finally:
        await caller.close()
    protocol_seen, meta = recorder.starts[call_id]
    assert protocol_seen == protocol and meta["parameters"] == {"customer": "c42"}  # the token is not kept
    records = [t.record for t in recorder.of(call_id, TurnDone)]
    greeting, asked, status = records[:3]
    assert greeting.cause == "greeting" and greeting.interrupted and greeting.played_ms > 0
    assert asked.understanding is not None and asked.understanding.intent == "track_order"
    assert asked.previous_interrupted and asked.transcript == LINES[0]
    assert status.cause == "dtmf" and status.understanding is not None
    assert status.understanding.action == "order_status" and status.understanding.action_result == "ok"
    assert status.reply is not None and "blue denim jacket" in status.reply
    assert records[-1].reply == "Thanks for calling Acme Shop. Goodbye!" and not records[-1].interrupted
    assert recorder.ends[call_id] == "caller needed nothing else"
    stats = recorder.of(call_id, WireStats)[0].stats
    assert stats["clears"] >= 1 and caller.playout.clears == stats["clears"] and stats["ignored"] == 0
    if isinstance(caller, GenesysCaller):  # playback_completed confirmed the sentences; output variables
        assert 1 <= stats["marks_played"] <= stats["marks_sent"] and caller.disconnect is not None
        variables = {"endReason": "caller needed nothing else", "transfer": "false", "transferTarget": ""}
        assert caller.disconnect == {"reason": "completed", "outputVariables": variables}
    elif caller.marks:
        assert 1 <= stats["marks_played"] <= stats["marks_sent"]
        assert "end-of-call" in caller.playout.marks_echoed  # it hung up once the goodbye had played
    else:
        assert stats["marks_sent"] == 0
    assert caller.ws is not None and caller.ws.close_code == 1000


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_the_caller_hanging_up_ends_the_call(gateway: tuple[Gateway, Recorder], protocol: str) -> None:
    gw, recorder = gateway
    caller = CALLERS[protocol](token=TOKEN)
    await caller.connect(gw)
    call_id = await call_of(caller, gw)
    assert await until(lambda: caller.bot_frames > 10, 10)
    await caller.hang_up()
    await gone(call_id, gw)
    await caller.close()
    hung_up = "caller hung up" if caller.bye() is not None else "caller disconnected"
    assert recorder.ends[call_id] == hung_up


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_a_line_that_drops_or_freezes_mid_reply_ends_the_call(
    gateway: tuple[Gateway, Recorder], protocol: str
) -> None:
    """The two ways a carrier's connection fails without a word: gone at once (no close frame), or frozen
    half-open (nothing more arrives); the call ends either way and nothing is left behind."""
    gw, recorder = gateway
    dropped, frozen = CALLERS[protocol](token=TOKEN), CALLERS[protocol](token=TOKEN)
    for caller in (dropped, frozen):
        await caller.connect(gw)
    ids = [await call_of(caller, gw) for caller in (dropped, frozen)]
    assert await until(lambda: dropped.bot_frames > 10 and frozen.bot_frames > 10, 10)  # mid-greeting
    dropped.abort()
    frozen.freeze()
    for call_id in ids:
        await gone(call_id, gw)
    for caller in (dropped, frozen):
        await caller.close()
    assert recorder.ends[ids[0]] == "caller disconnected"
    assert recorder.ends[ids[1]].startswith("line dead: nothing from the caller")
    assert not gw.hub.calls


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_a_line_that_dies_mid_opening_sets_up_no_call(
    gateway: tuple[Gateway, Recorder], protocol: str
) -> None:
    """The fault campaign's "before set-up" point: the carrier drops halfway through the frame of the opening
    message that sets the call up. No call may start, and the next caller is served as usual."""
    gw, recorder = gateway
    await CALLERS[protocol](token=TOKEN).handshake_abort(gw)
    await asyncio.sleep(0.5)  # what the server read of it, it has handled by now on an idle gateway
    caller = CALLERS[protocol](token=TOKEN)
    await caller.connect(gw)
    try:
        call_id = await call_of(caller, gw)
        assert await until(lambda: caller.bot_frames > 10, 10)
    finally:
        await caller.close()
    await gone(call_id, gw)
    assert list(recorder.starts) == [call_id]


async def test_a_stop_naming_another_stream_still_ends_the_call(gateway: tuple[Gateway, Recorder]) -> None:
    """Found by the 10k carrier fuzz: an Exotel `start` with another `stream_sid` than its `stop` names. One
    socket carries one stream, so the stop ends the call at once instead of a dead line for the 30 s idle
    timeout."""
    gw, recorder = gateway
    caller = CALLERS["exotel"]({}, TOKEN)
    first = [json.loads(m) for m in caller.opening()]
    first[-1]["stream_sid"] = first[-1]["start"]["stream_sid"] = "A" * 42
    stop = caller.bye()
    assert stop is not None
    messages = [json.dumps(m) for m in first] + [json.dumps({"event": "connected"}), stop]
    started = asyncio.get_running_loop().time()
    code, reason = await closed_with(gw, caller.path, *messages)
    assert (code, reason) == (1000, "caller hung up") and asyncio.get_running_loop().time() - started < 5
    assert len(recorder.starts) == 1


# --- bad input --------------------------------------------------------------------------------------------


async def closed_with(
    gw: Gateway, path: str, *messages: str | bytes, headers: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """Send `messages` on a fresh socket and return how the gateway closed it."""
    async with websockets.connect(f"ws://{gw.http}{path}", additional_headers=headers) as ws:
        for message in messages:
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(message)
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        return ws.close_code, ws.close_reason or ""


def opening(protocol: str, token: str | None = TOKEN, **start: Any) -> list[str | bytes]:
    """`protocol`'s opening messages, with `start` fields changed (a wrong rate, say)."""
    caller = CALLERS[protocol]({}, token)
    messages = caller.opening()
    last = json.loads(messages[-1])
    last["start"] |= start
    return [*messages[:-1], json.dumps(last)]


BAD_FORMAT: dict[str, dict[str, Any]] = {
    "telnyx": {"media_format": {"encoding": "OPUS", "sample_rate": 16000, "channels": 1}},
    "plivo": {"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 16000}},
    "exotel": {"media_format": {"encoding": "audio/x-raw", "sample_rate": "11025"}},
}


@pytest.mark.parametrize("protocol", MEDIA_STREAMS)
async def test_bad_input_ends_the_call_with_a_code_and_reason(
    gateway: tuple[Gateway, Recorder], protocol: str
) -> None:
    gw, recorder = gateway
    path = CALLERS[protocol].path  # type: ignore[attr-defined]
    good = opening(protocol)
    media = json.dumps({"event": "media", "media": {"payload": "AAAA"}})
    cases: dict[str, tuple[str | bytes, ...]] = {
        "malformed JSON": (*good, "{not json"),
        "media before start": (media,),
        "binary first": (b"\x00\x01",),
        "oversized": (*good, json.dumps({"event": "media", "pad": "x" * 5000})),
        "wrong token": tuple(opening(protocol, "nope")),
        "no token": tuple(opening(protocol, None)),
        "bad format": tuple(opening(protocol, **BAD_FORMAT[protocol])),
        "silence": (),
    }
    results = await asyncio.gather(*(closed_with(gw, path, *messages) for messages in cases.values()))
    got = dict(zip(cases, results, strict=True))
    assert got["malformed JSON"] == (1007, "protocol error: malformed JSON")
    assert got["media before start"] == (1002, "'media' before 'start'")
    assert got["binary first"] == (1003, "binary message where JSON text was due")
    assert got["oversized"] == (1009, "protocol error: message of 5029 characters is over the 4096 limit")
    assert got["wrong token"] == got["no token"] == (1008, "missing or wrong token")
    assert got["bad format"][0] == 1003 and "unsupported" in got["bad format"][1]
    assert got["silence"] == (1002, "no 'start' in time")
    await recorder.ended(count=2)  # the two that got in: malformed JSON and oversized
    assert not gw.hub.calls


BINARY_BAD_FORMAT: dict[str, dict[str, Any]] = {
    "vonage": {"content-type": "audio/l16;rate=11025"},
    "jambonz": {"mixType": "stereo"},
    "freeswitch": {"rate": 11025},
}
AWAITED = {"vonage": "'websocket:connected'", "jambonz": "call attributes", "freeswitch": "metadata"}


@pytest.mark.parametrize("protocol", sorted(BINARY_BAD_FORMAT))
async def test_binary_streams_bad_input(gateway: tuple[Gateway, Recorder], protocol: str) -> None:
    gw, recorder = gateway
    path = CALLERS[protocol].path  # type: ignore[attr-defined]
    kind = CALLERS[protocol]
    first = json.loads(kind({}, TOKEN).opening()[0]) | {"token": TOKEN}  # jambonz: its metadata.token
    no_token = {k: v for k, v in first.items() if k != "token"}
    cases: dict[str, tuple[str | bytes, ...]] = {
        "malformed JSON first": ("{not json",),
        "audio first": (bytes(320),),
        "malformed JSON later": (json.dumps(first), bytes(320), "[1, 2"),
        "oversized audio": (json.dumps(first), bytes(5000)),
        "wrong token": (json.dumps(first | {"token": "nope"}),),
        "no token": (json.dumps(no_token),),
        "bad format": (json.dumps(first | BINARY_BAD_FORMAT[protocol]),),
        "silence": (),
    }
    results = await asyncio.gather(*(closed_with(gw, path, *messages) for messages in cases.values()))
    got = dict(zip(cases, results, strict=True))
    assert got["malformed JSON first"] == (1007, "malformed JSON")
    assert got["audio first"] == (1002, f"audio before the {AWAITED[protocol]}")
    assert got["malformed JSON later"] == (1007, "protocol error: malformed JSON")
    assert got["oversized audio"] == (1009, "protocol error: audio of 5000 bytes is over the 4096 limit")
    assert got["wrong token"] == got["no token"] == (1008, "missing or wrong token")
    assert got["bad format"][0] == 1003 and "unsupported" in got["bad format"][1]
    assert got["silence"] == (1002, f"no {AWAITED[protocol]} in time")
    await recorder.ended(count=2)
    assert not gw.hub.calls


async def test_wideband_streams_run_at_their_rate(gateway: tuple[Gateway, Recorder]) -> None:
    """Vonage at audio/l16;rate=16000 and Telnyx L16 at 16 kHz: the call runs at 16 kHz and the bot's
    20 ms frames are 640 bytes (Telnyx: big-endian, as RTP's L16)."""
    gw, recorder = gateway
    vonage = json.dumps(
        {"event": "websocket:connected", "content-type": "audio/l16;rate=16000", "token": TOKEN}
    )
    telnyx = opening("telnyx", media_format={"encoding": "L16", "sample_rate": 16000, "channels": 1})
    sizes: dict[str, list[int]] = {}
    for name, path, first in (("vonage", "/vonage/socket", [vonage]), ("telnyx", "/telnyx/stream", telnyx)):
        async with websockets.connect(f"ws://{gw.http}{path}") as ws:
            for message in first:
                await ws.send(message)
            frames: list[bytes] = []
            async with asyncio.timeout(10):
                while len(frames) < 5:
                    message = await ws.recv()
                    if isinstance(message, bytes):
                        frames.append(message)
                    elif (data := json.loads(message)).get("event") == "media":
                        frames.append(base64.b64decode(data["media"]["payload"]))
            sizes[name] = [len(f) for f in frames]
            tone = np.frombuffer(b"".join(frames), ">i2" if name == "telnyx" else "<i2").astype(np.int32)
            # the greeting's 200 Hz tone: loud, and smooth sample to sample only in the right byte order
            assert np.abs(tone).max() > 1000 and np.abs(np.diff(tone)).max() < 1500
    assert sizes == {"vonage": [640] * 5, "telnyx": [640] * 5}
    await recorder.ended(count=2)
