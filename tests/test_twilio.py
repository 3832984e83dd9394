"""Twilio Media Streams and the /twilio/voice webhook, over real loopback sockets with real models.

Two Twilio-side peers: streamdouble (a Media Streams simulator, written by others) for whole calls and its
protocol-violation report, and `TwilioPeer` below (voicebot.testing.twilio's `TwilioStream`, written from
Twilio's "Media Streams — WebSocket Messages" reference, keeping every message), for what streamdouble
cannot script: exact counters, timestamp gaps, bad input and watching individual messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pytest
import websockets
from streamdouble.api import run_scenario  # type: ignore[import-untyped]
from streamdouble.scenario import parse as parse_scenario  # type: ignore[import-untyped]
from streamdouble.session import SessionConfig  # type: ignore[import-untyped]

from telephony.session import WireStats
from voicebot.brain import BrainInput, EchoBrain
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM, Action, BotReply, FinalTranscript, PlaybackReport, TurnDone
from voicebot.pipeline import Services
from voicebot.testing.gateway import Recorder, http_get, no_greeting, running_gateway
from voicebot.testing.speech import caller_audio, caller_wavs
from voicebot.testing.twilio import TwilioStream

TOKEN = "s3cret"


class TransferBrain(EchoBrain):
    """EchoBrain that hands callers asking for an agent to 'sales': a brain with a transfer action."""

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, FinalTranscript) and "agent" in event.text.lower():
            transfer = Action("transfer", target="sales", reason="caller asked for an agent")
            return BotReply(text="Connecting you to an agent.", actions=(transfer,))
        return await super().handle(event)


@pytest.fixture(scope="module")
def wavs(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return caller_wavs(services, tmp_path_factory.mktemp("twilio"))


@pytest.fixture(scope="module")
def phrases(services: Services) -> dict[str, PCM]:
    return caller_audio(services)


def server_config(**changes: Any) -> VoicebotConfig:
    return VoicebotConfig(server=ServerConfig(token=TOKEN, audiosocket_port=None, drain_s=2, **changes))


def only(recorder: Recorder) -> str:
    assert len(recorder.starts) == 1
    return next(iter(recorder.starts))


# --- whole calls, streamdouble as Twilio ---------------------------------------------------------------


async def test_streamdouble_reply_dtmf_and_hangup_mid_reply(
    services: Services, wavs: dict[str, Path]
) -> None:
    services.tts.warm(["You pressed 7."], 8_000)  # so the reply is surely playing when the caller hangs up
    scenario = parse_scenario(
        {
            "name": "question, key press, hang up while the bot talks",
            "steps": [
                {"say": str(wavs["hours"])},
                {"wait_for": {"event": "audio", "timeout": 20}},
                {"wait_for": {"event": "quiet", "timeout": 20}},
                {"dtmf": "7"},
                {"wait": 0.5},
                "hangup",
            ],
        }
    )
    recorder = Recorder()
    async with running_gateway(server_config(), no_greeting(services), observers=[recorder]) as gw:
        report = await run_scenario(
            f"ws://{gw.http}/twilio/stream",
            scenario,
            config=SessionConfig(custom_parameters={"token": TOKEN}, response_timeout_s=20),
        )
        await recorder.ended()
        assert not gw.hub.calls
    assert report.violations == [] and report.result.unknown_events == []
    assert report.spoke and report.result.failed_expectations == []
    assert report.result.marks_received and report.result.marks_echoed
    assert report.result.clears_received == 0 and report.result.closed_by == "caller"
    call = only(recorder)
    protocol, meta = recorder.starts[call]
    assert (
        protocol == "twilio" and meta["streamSid"] == report.stream_sid and "token" not in meta["parameters"]
    )
    transcript = recorder.of(call, FinalTranscript)[0].text.lower()
    assert "opening hours" in transcript
    replies = [r.text for r in recorder.of(call, BotReply)]
    assert replies[0].startswith("You said") and replies[-1] == "You pressed 7."
    turns = recorder.of(call, TurnDone)
    assert turns[0].record.interrupted is False
    assert turns[-1].record.reply == "You pressed 7." and turns[-1].record.interrupted is True
    reports = recorder.of(call, PlaybackReport)  # what the caller heard: one report per reply, as recorded
    assert [r.reply_id for r in reports] == [t.record.reply_id for t in turns]
    assert reports[0].heard == turns[0].record.heard == turns[0].record.reply and reports[0].played_ms > 500
    stats = recorder.of(call, WireStats)[0].stats  # marks echoed by "Twilio" once their audio had played
    assert 1 <= stats["marks_played"] <= stats["marks_sent"]
    assert recorder.ends[call] == "caller disconnected"


async def test_streamdouble_barge_in_then_goodbye(services: Services, wavs: dict[str, Path]) -> None:
    scenario = parse_scenario(
        {
            "name": "interrupt the greeting, say goodbye",
            "steps": [
                {"wait_for": "audio"},
                {"wait": 1.0},
                {"say": str(wavs["bye"])},
                {"expect": "clear"},
                {"wait": 8},  # the bot says goodbye and closes the stream before this runs out
            ],
        }
    )
    recorder = Recorder()
    async with running_gateway(server_config(), services, observers=[recorder]) as gw:
        report = await run_scenario(
            f"ws://{gw.http}/twilio/stream",
            scenario,
            config=SessionConfig(custom_parameters={"token": TOKEN}),
        )
        await recorder.ended()
    assert report.violations == [] and report.result.failed_expectations == []
    assert report.result.clears_received == 1 and report.result.closed_by == "agent"
    assert "end-of-call" in report.result.marks_echoed  # hung up only after the goodbye was heard
    call = only(recorder)
    turns = recorder.of(call, TurnDone)
    assert turns[0].record.interrupted is True and turns[-1].record.reply == "Goodbye."
    assert recorder.ends[call] == "caller said goodbye"


# --- protocol details, TwilioPeer as Twilio ------------------------------------------------------------


class TwilioPeer(TwilioStream):
    """Twilio's side of one stream, keeping every message the app sent with its arrival time."""

    def __init__(self, ws: Any, stream_sid: str = "MZ" + "0" * 32) -> None:
        super().__init__(ws, stream_sid, "CA" + "2" * 32)
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._reader = asyncio.create_task(self.listen())

    def handle(self, message: str | bytes) -> dict[str, Any]:
        data = super().handle(message)
        self.received.append((asyncio.get_running_loop().time(), data))
        return data

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m["event"] == kind]

    async def closed(self) -> tuple[int | None, str | None]:
        await self._reader
        return self.ws.close_code, self.ws.close_reason


async def hook_server(posts: list[dict[str, Any]]) -> tuple[asyncio.Server, str]:
    """A real HTTP endpoint standing in for the user's transfer hook; keeps each JSON body."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(
            next(
                line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length")
            )
        )
        posts.append({"request": head.split("\r\n")[0], "body": json.loads(await reader.readexactly(length))})
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/transfer"


async def test_stream_counters_marks_barge_in_and_transfer(
    services: Services, phrases: dict[str, PCM]
) -> None:
    posts: list[dict[str, Any]] = []
    hook, hook_url = await hook_server(posts)
    recorder = Recorder()
    config = server_config(twilio_transfer_url=hook_url)
    gateway = running_gateway(config, services, TransferBrain, [recorder])
    async with gateway as gw, websockets.connect(f"ws://{gw.http}/twilio/stream") as ws:
        peer = TwilioPeer(ws)
        await peer.start({"token": TOKEN, "caller": "+15550100"})
        await peer.play(np.zeros(8000, np.int16))  # 1 s of line noise while the greeting plays
        peer.timestamp += 100  # 100 ms lost before Twilio
        await peer.audio(np.zeros(160, np.int16))
        peer.sequence += 1  # and a sequence number we never see
        await peer.play(phrases["agent"])  # barge in: "Can I speak to a human agent please?"
        while not peer.events("clear"):
            await peer.play(np.zeros(1600, np.int16))
        cleared_at = next(t for t, m in peer.received if m["event"] == "clear")
        silent = np.zeros(1600, np.int16)
        while ws.close_code is None and asyncio.get_running_loop().time() - cleared_at < 30:
            await peer.play(silent)  # Twilio keeps streaming until the app closes
        code, reason = await peer.closed()
    hook.close()
    assert code == 1000 and reason == "transfer to sales: caller asked for an agent"
    sent = [m for _, m in peer.received]
    assert all(m["streamSid"] == peer.stream_sid for m in sent)
    assert sent[0]["event"] == "media" and {m["event"] for m in sent} == {"media", "mark", "clear"}
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in peer.events("media"))
    names = [m["mark"]["name"] for m in peer.events("mark")]
    assert len(names) == len(set(names)) >= 2 and names[-1] == "end-of-call"
    first_after_clear = next(t for t, m in peer.received if m["event"] == "media" and t > cleared_at)
    assert first_after_clear - cleared_at > 0.3  # the greeting stopped; the next audio is the notice
    assert posts and posts[0]["request"].startswith("POST /transfer")
    body = {"callSid": "CA" + "2" * 32, "streamSid": peer.stream_sid}
    assert posts[0]["body"] == body | {"target": "sales", "reason": "caller asked for an agent"}
    call = only(recorder)
    assert recorder.starts[call][1]["parameters"] == {"caller": "+15550100"}
    assert recorder.ends[call] == "transfer to sales: caller asked for an agent"
    stats = recorder.of(call, WireStats)[0].stats
    assert stats["lost_ms"] == 100 and stats["sequence_gaps"] == 1 and stats["clears"] == 1
    assert stats["marks_played"] >= 1 and stats["transfer_hook_ok"] == 1 and stats["ignored"] == 0
    greeting = recorder.of(call, TurnDone)[0].record
    assert greeting.interrupted is True and 0 < greeting.played_ms < 6000  # cut partway


# --- bad input and refusals ----------------------------------------------------------------------------


async def refused(url: str, *messages: str | bytes) -> tuple[int | None, str | None]:
    """Send `messages` on a fresh stream and return how the gateway closed it."""
    async with websockets.connect(url) as ws:
        for message in messages:
            await ws.send(message)
        with contextlib.suppress(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                async for _ in ws:
                    pass
        return ws.close_code, ws.close_reason


def start_message(token: str | None = TOKEN, sid: str = "MZbad", rate: int = 8000) -> str:
    params = {"token": token} if token else {}
    media_format = {"encoding": "audio/x-mulaw", "sampleRate": rate, "channels": 1}
    start = {"streamSid": sid, "callSid": "CAbad", "customParameters": params, "mediaFormat": media_format}
    return json.dumps({"event": "start", "sequenceNumber": "1", "start": start, "streamSid": sid})


async def test_bad_input_ends_only_that_call(
    services: Services, phrases: dict[str, PCM], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="telephony")
    recorder = Recorder()
    config = server_config(max_message_bytes=4096, start_timeout_s=1.0)
    async with running_gateway(config, no_greeting(services), observers=[recorder]) as gw:
        url = f"ws://{gw.http}/twilio/stream"
        async with websockets.connect(url) as ws:  # a healthy call running all along
            healthy = TwilioPeer(ws, "MZhealthy")
            await healthy.start({"token": TOKEN})
            talking = asyncio.create_task(
                healthy.play(np.concatenate([phrases["hours"], np.zeros(24_000, np.int16)]))
            )
            media = json.dumps({"event": "media", "streamSid": "MZbad", "media": {"payload": "AAAA"}})
            cases: dict[str, tuple[str | bytes, ...]] = {
                "malformed JSON": (start_message(), "{not json"),
                "media before start": (media,),
                "binary": (b"\x00\x01",),
                "oversized": (start_message(), json.dumps({"event": "media", "pad": "x" * 5000})),
                "wrong token": (start_message("nope"),),
                "no token": (start_message(None),),
                "bad format": (start_message(rate=16000),),
                "silence": (),
            }
            results = await asyncio.gather(*(refused(url, *messages) for messages in cases.values()))
            got = dict(zip(cases, results, strict=True))
            # harmless oddities are ignored; the stream goes on until its stop
            ignored = [
                json.dumps({"event": "media", "streamSid": "MZother", "media": {"payload": "AAAA"}}),
                json.dumps({"event": "media", "streamSid": "MZbad", "media": {"payload": "not base64!"}}),
                json.dumps({"event": "shiny-new-event", "streamSid": "MZbad"}),
                json.dumps({"event": "mark", "streamSid": "MZbad", "mark": {"name": "never-sent"}}),
                json.dumps({"event": "dtmf", "streamSid": "MZbad", "dtmf": {"digit": "x"}}),
                json.dumps({"event": "stop", "streamSid": "MZbad", "stop": {}}),
            ]
            async with websockets.connect(f"{url}?token={TOKEN}") as odd:  # the token may come in the URL
                await odd.send(start_message(None))
                for message in ignored:
                    await odd.send(message)
                async with asyncio.timeout(10):
                    async for _ in odd:
                        pass
            await talking
            async with asyncio.timeout(20):
                while not healthy.events("media"):  # its reply, unaffected by the others' failures
                    await healthy.play(np.zeros(1600, np.int16))
            await healthy.stop()
            await healthy.closed()
        await recorder.ended(count=4)
    assert got["malformed JSON"] == (1007, "protocol error: malformed JSON")
    assert got["media before start"] == (1002, "'media' before 'start'")
    assert got["binary"][0] == 1003 and got["oversized"][0] == 1009
    assert got["wrong token"] == (1008, "missing or wrong token") == got["no token"]
    assert got["bad format"][0] == 1003 and got["silence"] == (1002, "no 'start' in time")
    oversized = "protocol error: message of 5029 characters is over the 4096 limit"
    ends = sorted(recorder.ends.values())
    assert ends == ["caller hung up", "caller hung up", "protocol error: malformed JSON", oversized]
    bad = [c for c, (_, meta) in recorder.starts.items() if meta["streamSid"] == "MZbad"]
    odd_call = next(c for c in bad if recorder.ends[c] == "caller hung up")
    assert recorder.of(odd_call, WireStats)[0].stats["ignored"] == 5
    assert "ignored unknown event 'shiny-new-event'" in caplog.text
    healthy_call = next(c for c, (_, meta) in recorder.starts.items() if meta["streamSid"] == "MZhealthy")
    assert any(r.text.startswith("You said") for r in recorder.of(healthy_call, BotReply))


# --- /twilio/voice --------------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """As Twilio's webhook security docs define it, written out independently of the gateway's code."""
    data = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


async def http(
    host: str, method: str, path: str, form: str = "", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    status, body = await http_get(host, path, method, form, headers)
    return int(status.split()[1]), body


@pytest.fixture
async def voice_gateways(services: Services) -> AsyncIterator[tuple[str, str]]:
    """Two gateways: one taking URLs from the Host header, one with a public_url."""
    plain = server_config(twilio_auth_token="authtok")
    public = server_config(twilio_auth_token="authtok", public_url="https://bot.example.com/")
    async with running_gateway(plain, services) as one, running_gateway(public, services) as two:
        yield one.http, two.http


async def test_voice_twiml_and_signature(voice_gateways: tuple[str, str]) -> None:
    plain, public = voice_gateways
    params = {"CallSid": "CA123", "From": "+15550100", "To": "+15550199", "Digits": "1 2"}
    body = urlencode(params)
    good = twilio_signature("authtok", f"http://{plain}/twilio/voice", params)
    status, twiml = await http(plain, "POST", "/twilio/voice", body, {"X-Twilio-Signature": good})
    assert status == 200
    stream = ET.fromstring(twiml).find("./Connect/Stream")
    assert stream is not None and stream.get("url") == f"wss://{plain}/twilio/stream"
    parameter = stream.find("Parameter")
    assert parameter is not None and parameter.attrib == {"name": "token", "value": TOKEN}
    for headers in ({"X-Twilio-Signature": good[:-2] + "x="}, {}):  # wrong or missing signature
        assert (await http(plain, "POST", "/twilio/voice", body, headers))[0] == 403
    tampered = urlencode(params | {"To": "+15550000"})
    assert (await http(plain, "POST", "/twilio/voice", tampered, {"X-Twilio-Signature": good}))[0] == 403
    # GET: parameters are in the signed URL; public_url decides the URL Twilio signed and the stream URL
    path = "/twilio/voice?CallSid=CA9&From=%2B15550100"
    signature = twilio_signature("authtok", "https://bot.example.com" + path, {})
    status, twiml = await http(public, "GET", path, headers={"X-Twilio-Signature": signature})
    assert status == 200 and 'url="wss://bot.example.com/twilio/stream"' in twiml
    assert (await http(plain, "GET", path, headers={"X-Twilio-Signature": signature}))[0] == 403
