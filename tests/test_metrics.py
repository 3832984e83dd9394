"""`/metrics` and call ids on log lines, over real /ws calls through the in-process gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import websockets
from prometheus_client.parser import text_string_to_metric_families

from telephony.logs import NO_CALL, CallIdFilter, JsonFormatter
from telephony.metrics import voice_to_voice_ms
from telephony.session import NullObserver
from voicebot.audio import split_frames
from voicebot.brain import BrainInput, EchoBrain
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM, Action, BotReply, DTMFDigit, Frame
from voicebot.pipeline import Services
from voicebot.testing.gateway import Recorder, receive_until, running_gateway
from voicebot.testing.speech import RATE, silence

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class AgentOnZero(EchoBrain):
    """EchoBrain where keypad 0 hands the call to an agent: a transfer without an NLU model."""

    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, DTMFDigit) and event.digit == "0":
            return BotReply(text="Transferring you.", actions=(Action("transfer", target="agent"),))
        return await super().handle(event)


def config() -> VoicebotConfig:
    return VoicebotConfig(server=ServerConfig(token="s3cret", max_calls=2, audiosocket_port=None, drain_s=1))


async def scrape(host: str) -> tuple[str, Samples]:
    """GET /metrics (with the gateway token, as Prometheus sends it): its content type and every sample,
    keyed by (name, sorted labels)."""
    request = urllib.request.Request(f"http://{host}/metrics", headers={"Authorization": "Bearer s3cret"})
    with await asyncio.to_thread(urllib.request.urlopen, request, timeout=10) as reply:
        content_type, text = reply.headers["Content-Type"], reply.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return content_type, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape_until(host: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until a sample has the expected value: `on_end` runs just after the line closes."""
    async with asyncio.timeout(10):
        while value(samples := (await scrape(host))[1], name, **labels) != expected:
            await asyncio.sleep(0.05)
    return samples


async def say(ws: Any, pcm: PCM) -> None:
    for chunk in split_frames(np.concatenate([pcm, silence(1.0)]), RATE, 20):
        await ws.send(chunk.tobytes())


async def test_metrics_count_calls_turns_latency_barge_ins_transfers_and_refusals(
    services: Services, speech: dict[str, PCM]
) -> None:
    audio: list[bytes] = []
    async with running_gateway(config(), services, AgentOnZero) as gw:
        content_type, before = await scrape(gw.http)
        assert content_type.startswith("text/plain; version=0.0.4")
        assert value(before, "voicebot_active_calls", protocol="twilio") == 0  # shown before any call
        async with websockets.connect(f"ws://{gw.http}/ws?rate=16000&token=s3cret") as ws:
            await receive_until(ws, "turn", audio)  # the greeting
            assert value((await scrape(gw.http))[1], "voicebot_active_calls", protocol="browser") == 1
            await say(ws, speech["agent"])
            await receive_until(ws, "reply", audio)
            await say(ws, speech["agent"])  # while the reply plays: a barge-in
            turns = [e for e in await receive_until(ws, "turn", audio) if e["type"] == "turn"]
            assert turns[-1]["record"]["interrupted"]
            echo = (await receive_until(ws, "turn", audio))[-1]  # the second utterance's reply
            assert not echo["record"]["interrupted"]
            await say(ws, speech["bye"])
            assert (await receive_until(ws, "ended", audio))[-1]["reason"] == "caller said goodbye"
        async with websockets.connect(f"ws://{gw.http}/ws?rate=16000&token=s3cret") as ws:
            await receive_until(ws, "turn", audio)
            await ws.send(json.dumps({"type": "dtmf", "digit": "0"}))
            assert (await receive_until(ws, "ended", audio))[-1]["actions"][0]["kind"] == "transfer"
        async with websockets.connect(f"ws://{gw.http}/ws?token=wrong") as ws:
            await ws.wait_closed()
        samples = await scrape_until(gw.http, "voicebot_calls_total", 1, protocol="browser", end="transfer")
    assert value(samples, "voicebot_active_calls", protocol="browser") == 0
    assert value(samples, "voicebot_calls_total", protocol="browser", end="bot") == 1
    assert value(samples, "voicebot_refused_calls_total", code="1008") == 1
    assert value(samples, "voicebot_transfers_total") == 1
    assert value(samples, "voicebot_barge_ins_total") == 1
    assert value(samples, "voicebot_turns_total") == 6  # 2 greetings, 2 echoes, goodbye, transfer
    for stage in ("endpoint", "asr", "asr_decode", "dialogue", "tts_first_audio", "voice_to_voice"):
        assert value(samples, "voicebot_turn_latency_seconds_count", stage=stage) >= 2, stage
    voice = value(samples, "voicebot_turn_latency_seconds_sum", stage="voice_to_voice")
    assert 0 < voice < 30
    assert value(samples, "voicebot_turn_latency_seconds_bucket", stage="asr", le="+Inf") >= 2
    assert not any(name == "voicebot_stage_errors_total" for name, _ in samples)
    assert value(samples, "voicebot_heap_bytes", kind="in_use") > 50 * 2**20  # the models' buffers
    assert value(samples, "voicebot_heap_bytes", kind="free") > 0
    beats = value(samples, "voicebot_loop_lag_seconds_count")
    assert beats > 20  # 40 heartbeats a second over several seconds of calls
    assert value(samples, "voicebot_loop_lag_seconds_bucket", le="1.0") == beats  # no 1 s stalls


def test_voice_to_voice_adds_the_brain_once() -> None:
    parts = {"endpoint": 300.0, "asr": 200.0, "asr_decode": 150.0, "tts_first_audio": 100.0}
    assert voice_to_voice_ms(parts | {"nlu": 40.0, "dialogue_step": 5.0, "dialogue": 50.0}) == 650.0
    assert voice_to_voice_ms(parts | {"nlu": 40.0, "dialogue_step": 5.0}) == 645.0  # no total: add parts
    assert voice_to_voice_ms({"dialogue": 3.0, "tts_first_audio": 90.0}) is None  # greeting, keypad


class Captured(logging.Handler):
    """Keeps records, with `CallIdFilter` on it as the CLI's handlers have it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(*names: str) -> Iterator[Captured]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


class Chatty(NullObserver):
    """An observer that logs from the call's event task, as observers with troubles do."""

    def on_event(self, call_id: str, frame: Frame) -> None:
        logging.getLogger("tests.chatty").info("saw %s", type(frame).__name__)


async def test_log_records_of_a_call_carry_its_id_and_a_hang_up_is_no_barge_in(services: Services) -> None:
    recorder = Recorder()
    with captured("telephony", "tests.chatty") as logs:
        async with running_gateway(config(), services, observers=[recorder, Chatty()]) as gw:
            async with websockets.connect(f"ws://{gw.http}/ws?token=s3cret") as ws:
                while not isinstance(await ws.recv(), bytes):  # the greeting started playing
                    pass
                await ws.send(json.dumps({"type": "hangup"}))
                await receive_until(ws, "ended", [])
            async with websockets.connect(f"ws://{gw.http}/ws?token=wrong") as ws:
                await ws.wait_closed()
            samples = await scrape_until(gw.http, "voicebot_calls_total", 1, protocol="browser", end="caller")
    assert value(samples, "voicebot_barge_ins_total") == 0  # the hang-up cut the greeting, not speech
    (call_id,) = recorder.starts
    ended = [r for r in logs.records if "ended by caller" in r.getMessage()]
    seen = [r for r in logs.records if r.name == "tests.chatty"]
    refused = [r for r in logs.records if "refused" in r.getMessage()]
    assert ended and seen and refused
    assert {getattr(r, "call_id", None) for r in ended + seen} == {call_id}
    assert {getattr(r, "call_id", None) for r in refused} == {NO_CALL}  # no call was started
    line = json.loads(JsonFormatter().format(ended[0]))
    assert line["call_id"] == call_id and line["level"] == "INFO" and line["logger"] == "telephony.session"
    assert "ended by caller" in line["message"] and line["time"].endswith("+00:00")
    assert json.loads(JsonFormatter().format(refused[0]))["call_id"] is None
