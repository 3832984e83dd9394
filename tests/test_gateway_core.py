"""Whole calls over every wire protocol with fake models: the gateway, the transports and the pipeline are
real, the models are `voicebot.testing.fakes` (the callers' "speech" is tones the fake recogniser knows)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from voicebot.frames import BotReply, CallEnded, FinalTranscript, PlaybackReport, TurnDone
from voicebot.testing.fakes import ToneTTS, ToneVoice, fake_services
from voicebot.testing.faults.callers import AudioSocketCaller, BrowserCaller, Caller, TwilioCaller, until
from voicebot.testing.faults.env import call_of, fault_config, gone
from voicebot.testing.gateway import Gateway, Recorder, running_gateway

LINES = ("what are your opening hours", "no thanks goodbye")
RATE = 8_000
CALLERS = {"twilio": TwilioCaller, "audiosocket": AudioSocketCaller, "browser": BrowserCaller}
VOICE = ToneVoice(LINES)


def line(text: str, pause_s: float = 0.8) -> np.ndarray:
    return np.concatenate([VOICE.say(text, RATE), np.zeros(int(pause_s * RATE), np.int16)])


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, Recorder]]:
    config = fault_config()
    services = fake_services(config, voice=VOICE, tts=ToneTTS(ms_per_char=20.0))
    recorder = Recorder()
    try:
        async with running_gateway(config, services, observers=[recorder]) as gw:
            yield gw, recorder
    finally:
        services.close()


async def dial(gw: Gateway, protocol: str) -> tuple[Caller, str]:
    caller: Caller = CALLERS[protocol]()
    await caller.connect(gw)
    return caller, await call_of(caller, gw)


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_a_whole_call_with_barge_in_keys_and_goodbye(
    gateway: tuple[Gateway, Recorder], protocol: str
) -> None:
    gw, recorder = gateway
    caller, call_id = await dial(gw, protocol)
    try:
        assert await until(lambda: caller.bot_frames > 25, 10)  # half a second of the 1.7 s greeting
        caller.say(line(LINES[0]))  # talks over the greeting
        assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= 2, 15)
        await caller.press("5")
        assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= 3, 15)
        caller.say(line(LINES[1]))
        await gone(call_id, gw)
        assert await until(caller.closed.is_set, 10)  # the bot put the line down after its goodbye
    finally:
        await caller.close()
    records = [t.record for t in recorder.of(call_id, TurnDone)]
    greeting, answer, keys, bye = records
    assert greeting.cause == "greeting" and greeting.interrupted and 0 < greeting.played_ms < 1700
    said = (greeting.reply or "").split()
    assert said[: len(greeting.heard.split())] == greeting.heard.split() != said  # what the caller heard
    assert answer.transcript == LINES[0] and answer.reply == f"You said: {LINES[0]}"
    assert answer.previous_heard == greeting.heard and answer.previous_interrupted
    assert answer.times.speech is not None and answer.timings_ms["tts_first_audio"] >= 0
    assert keys.reply == "You pressed 5." and keys.cause == "dtmf"
    assert bye.transcript == LINES[1] and not bye.interrupted and bye.heard == "Goodbye."
    reports = recorder.of(call_id, PlaybackReport)
    assert [r.reply_id for r in reports] == [r.reply_id for r in records]
    assert recorder.of(call_id, CallEnded)[0].reason == "caller said goodbye"
    assert recorder.ends[call_id] == "caller said goodbye"


@pytest.mark.parametrize("protocol", sorted(CALLERS))
async def test_a_caller_who_hangs_up_mid_sentence_is_still_heard(
    gateway: tuple[Gateway, Recorder], protocol: str
) -> None:
    gw, recorder = gateway
    caller, call_id = await dial(gw, protocol)
    assert await until(lambda: len(recorder.of(call_id, TurnDone)) >= 1, 10)  # the greeting was played
    speech = VOICE.say(LINES[0], RATE)
    _, last = caller.say(speech[: speech.size // 2])
    assert await until(lambda: caller.sent >= last + 2, 10)
    caller.abort()  # the line drops: no goodbye on the wire
    await gone(call_id, gw)
    await caller.close()
    finals = recorder.of(call_id, FinalTranscript)
    assert [f.text for f in finals] == [LINES[0]]
    turn = recorder.of(call_id, TurnDone)[-1].record
    assert turn.transcript == LINES[0] and turn.played_ms == 0.0  # answered, recorded, never played
    assert any(
        isinstance(r, BotReply) and r.text == f"You said: {LINES[0]}" for r in recorder.events[call_id]
    )
    assert recorder.ends[call_id] == "caller disconnected"
