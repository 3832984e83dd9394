"""Whole calls through `CallPipeline` on fake models: turns, barge-in, DTMF, hang-up, the way back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voicebot.asr.base import QUICK
from voicebot.audio import write_wav
from voicebot.brain import EchoBrain
from voicebot.filecall import FileCall, ReplyCollector, feed_audio
from voicebot.frames import (
    PCM,
    BotReply,
    CallEnded,
    FinalTranscript,
    ListeningContext,
    PlaybackReport,
    StageError,
    TurnDone,
)
from voicebot.nlu.grammar import GRAMMARS
from voicebot.pipeline import CallPipeline, Services
from voicebot.testing.fakes import FakeASR, ToneTTS, ToneVoice, fake_services
from voicebot.testing.stages import events_until
from voicebot.vad import RATE

LINES = ("I need a human agent", "no thanks goodbye", "track my order please")


@pytest.fixture
def voice() -> ToneVoice:
    return ToneVoice(LINES)


@pytest.fixture
def svc(voice: ToneVoice) -> Iterator[Services]:
    svc = fake_services(voice=voice, tts=ToneTTS(ms_per_char=20.0))
    yield svc
    svc.close()


def quiet(seconds: float, rate: int = RATE) -> PCM:
    return np.zeros(int(seconds * rate), np.int16)


async def test_a_file_call_gives_the_documented_json(svc: Services, voice: ToneVoice, tmp_path: Path) -> None:
    files = []
    for n, line in enumerate(LINES[:2]):
        files.append(tmp_path / f"{n}.wav")
        write_wav(files[-1], np.concatenate([quiet(0.3), voice.say(line), quiet(0.3)]), RATE)
    result = await FileCall(svc, EchoBrain(), fast=True).run(files)
    assert not result.errors and result.greeting and "automated assistant" in result.greeting
    first, second = result.turns
    assert {"file", "transcript", "intent", "confidence", "entities", "sentiment", "reply", "actions",
            "timings_ms", "asr", "interrupted", "played_ms", "heard", "at_ms"} <= set(first)  # fmt: skip
    assert first["transcript"] == LINES[0] and first["reply"] == f"You said: {LINES[0]}"
    assert {"endpoint", "asr", "asr_decode", "dialogue", "tts_first_audio", "turn_wall"} <= set(
        first["timings_ms"]
    )
    assert first["heard"] == first["reply"] and first["previous_heard"] == result.greeting
    assert second["actions"] == [{"kind": "hangup", "target": None, "reason": "caller said goodbye"}]
    assert result.ended == "caller said goodbye"


async def test_barge_in_over_the_greeting(svc: Services, voice: ToneVoice) -> None:
    brain = EchoBrain()
    sink = ReplyCollector()
    pipe = CallPipeline(svc, brain, sink, channel_rate=RATE, paced=True)
    await pipe.start()
    await events_until(pipe, BotReply)  # ~1.7 s of greeting
    await feed_audio(pipe, quiet(0.3), realtime=True)
    await feed_audio(pipe, np.concatenate([voice.say(LINES[2]), quiet(1.0)]), realtime=True)
    frames = await events_until(pipe, TurnDone)
    greeting = next(f for f in frames if isinstance(f, TurnDone)).record
    assert greeting.cause == "greeting" and greeting.interrupted and 300 <= greeting.played_ms < 1500
    said = (greeting.reply or "").split()
    assert said[: len(greeting.heard.split())] == greeting.heard.split() != said
    frames = await events_until(pipe, TurnDone)
    turn = [f for f in frames if isinstance(f, TurnDone)][-1].record
    assert turn.transcript == LINES[2] and turn.previous_heard == greeting.heard and turn.previous_interrupted
    assert brain.heard[0].heard == greeting.heard  # the brain and the record read the same report
    await pipe.close()


async def test_keypad_turns(svc: Services) -> None:
    pipe = CallPipeline(svc, EchoBrain(), ReplyCollector(), channel_rate=8_000, paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    await pipe.send_dtmf("5")
    record = [f for f in await events_until(pipe, TurnDone) if isinstance(f, TurnDone)][-1].record
    assert record.reply == "You pressed 5." and record.cause == "dtmf" and record.as_json()["dtmf"] is True
    await pipe.close()


async def test_hang_up_mid_sentence_keeps_the_words_and_records_the_turn(
    svc: Services, voice: ToneVoice
) -> None:
    pipe = CallPipeline(svc, EchoBrain(), ReplyCollector(), channel_rate=RATE, paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    line = voice.say(LINES[2])
    await feed_audio(
        pipe, np.concatenate([quiet(0.3), line[: line.size // 2]]), realtime=False
    )  # hangs up half way through
    await pipe.hangup("caller hung up")
    frames = await events_until(pipe, CallEnded)
    finals = [f for f in frames if isinstance(f, FinalTranscript)]
    assert [f.text for f in finals] == [LINES[2]]
    (record,) = [f.record for f in frames if isinstance(f, TurnDone)]
    assert record.transcript == LINES[2] and record.played_ms == 0.0 and record.heard == ""
    assert frames[-1] == CallEnded(reason="caller hung up")
    await pipe.close()


class ExpectingBrain(EchoBrain):
    """Asks for an order number: listens for six digits, with a long pause allowed, after each reply."""

    def listening_context(self) -> ListeningContext | None:
        return ListeningContext(
            expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6,
            prompt="Order number 4 5 7 2 1 9.", end_silence_ms=1200,
        )  # fmt: skip


async def test_the_listening_context_reaches_the_ear_before_the_callers_turn(
    svc: Services, voice: ToneVoice
) -> None:
    """The brain's context goes up to the endpointer (a 0.8 s pause does not end the turn) and the ASR (the
    digit grammar's prompt instead of the domain's words, a few hypotheses, a constrained fallback), and the
    record says what the bot was listening for."""
    pipe = CallPipeline(svc, ExpectingBrain(), ReplyCollector(), channel_rate=RATE, paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    part = voice.say(LINES[2])
    await feed_audio(pipe, np.concatenate([quiet(0.3), part, quiet(0.8), part, quiet(1.5)]), realtime=False)
    frames = await events_until(pipe, TurnDone)
    await asyncio.sleep(0.5)  # a second utterance would have been decoded and answered by now
    while not pipe.events.empty():
        frames.append(pipe.events.get_nowait())
    finals = [f for f in frames if isinstance(f, FinalTranscript)]
    assert len(finals) == 1  # one turn, not two
    record = [f for f in frames if isinstance(f, TurnDone)][-1].record
    assert record.listening is not None and record.listening.slot == "order_id"
    assert record.as_json()["listening"]["end_silence_ms"] == 1200
    asr = svc.asr
    assert isinstance(asr, FakeASR) and GRAMMARS["digits"].prompt in asr.prompts
    digit_decodes = [h for p, h in zip(asr.prompts, asr.hints, strict=True) if p == GRAMMARS["digits"].prompt]
    assert digit_decodes[0] == QUICK  # the speculative reading at a pause is greedy; three digits of six
    hints = next(h for h in digit_decodes if h is not None and not h.quick)  # then get the slot's decode
    assert hints.hypotheses == svc.config.asr.slot_hypotheses > 1
    assert hints.fits is not None and hints.fits("4 5 7 2 1 9") and not hints.fits("4 5 7")
    assert "double" in hints.vocabulary
    await pipe.close()


@pytest.mark.parametrize(
    ("line", "waits"), [("four five seven two one nine", False), ("four five seven", True)]
)
async def test_a_whole_number_ends_the_turn_at_once_a_half_one_waits(
    svc: Services, line: str, waits: bool
) -> None:
    """Live, the long pause a digit slot allows is only waited out while the number is incomplete: six
    digits are answered after `turn.complete_ms` (240 ms), three are given the context's 1200 ms to go on."""
    voice = ToneVoice([line])
    svc = fake_services(voice=voice, tts=ToneTTS(ms_per_char=20.0))
    pipe = CallPipeline(svc, ExpectingBrain(), ReplyCollector(), channel_rate=RATE, paced=True)
    await pipe.start()
    await events_until(pipe, TurnDone)
    await feed_audio(pipe, np.concatenate([quiet(0.3), voice.say(line), quiet(1.6)]), realtime=True)
    final = next(f for f in await events_until(pipe, FinalTranscript) if isinstance(f, FinalTranscript))
    assert final.text == line and final.times is not None
    pause_ms = (final.times.turn_decision - final.times.speech_end) * 1000
    assert (pause_ms >= 1100) if waits else (200 <= pause_ms < 450), pause_ms
    await pipe.close()
    svc.close()


async def test_upstream_frames_reach_the_observers(svc: Services, voice: ToneVoice) -> None:
    """What the first stage sends upstream, and the playback reports, are on the call's event stream."""
    pipe = CallPipeline(svc, EchoBrain(), ReplyCollector(), channel_rate=RATE, paced=False)
    await pipe.start()
    frames = await events_until(pipe, TurnDone)  # the greeting's
    assert any(isinstance(f, ListeningContext) for f in frames)  # sent with the greeting, up to the VAD
    assert any(isinstance(f, PlaybackReport) and f.reply_id == 1 and f.heard == f.text for f in frames)
    await pipe.close()


async def test_a_failing_brain_is_reported_and_the_call_goes_on(svc: Services, voice: ToneVoice) -> None:
    class Exploding(EchoBrain):
        async def handle(self, event):  # type: ignore[no-untyped-def]
            if isinstance(event, FinalTranscript) and "agent" in event.text:
                raise RuntimeError("back end down")
            return await super().handle(event)

    pipe = CallPipeline(svc, Exploding(), ReplyCollector(), channel_rate=RATE, paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    await feed_audio(pipe, np.concatenate([quiet(0.3), voice.say(LINES[0]), quiet(1.0)]), realtime=False)
    frames = await events_until(pipe, StageError)
    assert "back end down" in frames[-1].message  # type: ignore[attr-defined]
    await feed_audio(pipe, np.concatenate([voice.say(LINES[1]), quiet(1.0)]), realtime=False)
    frames = await events_until(pipe, CallEnded)
    assert frames[-1] == CallEnded(reason="caller said goodbye", actions=frames[-1].actions)  # type: ignore[attr-defined]
    await pipe.close()


async def test_text_turns_skip_the_ear(svc: Services) -> None:
    pipe = CallPipeline(svc, EchoBrain(), ReplyCollector(), paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    await pipe.send_text("hello there")
    record = [f for f in await events_until(pipe, TurnDone) if isinstance(f, TurnDone)][-1].record
    assert record.cause == "text" and record.transcript == "hello there" and record.times.speech is None
    await pipe.close()
