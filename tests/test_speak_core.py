"""Speaking without models: barge-in, hang-up mid-reply, playback reports and the typed turn record."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from voicebot.frames import (
    Action,
    BotReply,
    BotSpeaking,
    BrainTimes,
    CallEnded,
    Direction,
    EndOfStream,
    FinalTranscript,
    Frame,
    HangUp,
    ListeningContext,
    PlaybackReport,
    SpeechStarted,
    SpeechTimes,
    TurnDone,
    Understanding,
)
from voicebot.stages.base import ModelPool
from voicebot.stages.record import TurnStage
from voicebot.stages.respond import SpeakStage
from voicebot.testing.fakes import TapSink, ToneTTS
from voicebot.testing.stages import run_stage
from voicebot.tts import CachedTTS
from voicebot.turns import TurnRecord

LONG = "This is the first reply, and it goes on for quite a while before it is over."


@pytest.fixture
def executor() -> Iterator[ModelPool]:
    pool = ModelPool(max_workers=2, thread_name_prefix="test")
    yield pool
    pool.shutdown(wait=False)


def speak(sink: TapSink, executor: ModelPool, paced: bool = True, barge_in: bool = True) -> SpeakStage:
    tts = CachedTTS(ToneTTS(ms_per_char=20.0))
    return SpeakStage(tts, sink, executor, 16_000, 20, paced=paced, barge_in=barge_in, send_ahead_ms=100.0)


def talking() -> SpeechStarted:
    return SpeechStarted(t=0.0, audio=np.zeros(160, np.int16))


def of(frames: list[Frame], kind: type) -> list:  # type: ignore[type-arg]
    return [f for f in frames if isinstance(f, kind)]


async def test_barge_in_cuts_the_reply_drops_the_queued_one_and_reports_what_was_heard(
    executor: ModelPool,
) -> None:
    sink = TapSink()
    up: list[Frame] = []
    frames: list[Frame | float] = [BotReply(text=LONG), BotReply(text="Second reply."), 0.5, talking()]
    out = await run_stage(speak(sink, executor), frames, upstream=up)
    assert [r.text for r in of(out, BotReply)] == [LONG]  # the second never started: it was stale
    (report,) = of(out, PlaybackReport)
    assert report.interrupted and report.reply_id == 1
    assert up == [BotSpeaking(True, 1), BotSpeaking(False, 1), report]  # the listener knows the bot spoke
    assert 350 <= report.played_ms <= 700  # about the 0.5 s since its first frame
    sent_ms = len(sink.frames) * 20
    assert report.played_ms < sent_ms <= report.played_ms + 160  # the lead sent ahead was dropped…
    assert sink.clears == 1  # …by the transport's clear
    heard, said = report.heard.split(), LONG.split()
    assert 0 < len(heard) < len(said) and said[: len(heard)] == heard
    assert sink.replies() == {1}


async def test_the_transports_word_on_what_was_played_counts(executor: ModelPool) -> None:
    """A transport that confirmed more than the clock says (a Twilio mark echoed) wins; what was never
    sent was never played, whatever a transport says."""
    sink = TapSink(confirmed={1: 395.0})
    out = await run_stage(speak(sink, executor), [BotReply(text=LONG), 0.3, talking()])
    (report,) = of(out, PlaybackReport)
    assert 395.0 <= report.played_ms <= len(sink.frames) * 20  # the clock says ~300 ms
    sink = TapSink(confirmed={1: 60_000.0})
    out = await run_stage(speak(sink, executor), [BotReply(text=LONG), 0.3, talking()])
    assert of(out, PlaybackReport)[0].played_ms == len(sink.frames) * 20


async def test_a_protected_reply_is_not_cut(executor: ModelPool) -> None:
    sink = TapSink()
    notice = "This call may be recorded."
    out = await run_stage(speak(sink, executor), [BotReply(text=notice, interruptible=False), 0.2, talking()])
    (report,) = of(out, PlaybackReport)
    assert not report.interrupted and report.heard == notice and sink.clears == 0


async def test_barge_in_can_be_switched_off(executor: ModelPool) -> None:
    sink = TapSink()
    out = await run_stage(speak(sink, executor, barge_in=False), [BotReply(text=LONG), 0.2, talking()])
    assert not of(out, PlaybackReport)[0].interrupted


async def test_a_hang_up_stops_the_bot_at_once_and_later_replies_are_recorded_unplayed(
    executor: ModelPool,
) -> None:
    sink = TapSink()
    frames: list[Frame | float] = [BotReply(text=LONG), BotReply(text="Anything else?"), 0.3, HangUp()]
    frames.append(EndOfStream(reason="gone"))
    started = time.perf_counter()
    out = await run_stage(speak(sink, executor), frames)
    assert time.perf_counter() - started < 1.5  # not the ~2 s the reply would have taken
    kinds = [type(f).__name__ for f in out]
    assert kinds == ["BotReply", "HangUp", "PlaybackReport", "BotReply", "PlaybackReport", "CallEnded"]
    first, second = of(out, PlaybackReport)
    assert first.interrupted and 0 < first.played_ms < 600
    assert second.interrupted and second.played_ms == 0.0 and second.heard == "" and second.sent_at is None
    assert sink.replies() == {1}
    assert out[-1] == CallEnded(reason="gone")


async def test_a_goodbye_is_played_to_its_end_then_ends_the_call(executor: ModelPool) -> None:
    sink = TapSink()
    bye = BotReply(text="Goodbye.", actions=(Action("hangup", reason="caller said goodbye"),))
    out = await run_stage(speak(sink, executor, paced=False), [bye, BotReply(text="never said")])
    (report,) = of(out, PlaybackReport)
    assert not report.interrupted and report.heard == "Goodbye." and report.played_ms == len(sink.frames) * 20
    assert of(out, CallEnded) == [CallEnded(reason="caller said goodbye", actions=bye.actions)]
    assert sink.frames[-1].last and sink.replies() == {1}


async def test_an_empty_reply_is_reported_downstream_only(executor: ModelPool) -> None:
    up: list[Frame] = []
    out = await run_stage(speak(TapSink(), executor, paced=False), [BotReply(text="")], upstream=up)
    assert up == [] and of(out, PlaybackReport)[0].played_ms == 0.0


# --- the turn record ----------------------------------------------------------------------------------


def report(reply_id: int, text: str, interrupted: bool = False, heard: str | None = None) -> PlaybackReport:
    return PlaybackReport(
        reply_id=reply_id,
        text=text,
        played_ms=500.0,
        interrupted=interrupted,
        heard=text if heard is None else heard,
        started_at=100.0,
        synthesized_at=100.05,
        sent_at=100.06,
    )


def spoken_turn() -> BotReply:
    context = ListeningContext(expected="slot", slot="order_id", slot_type="digits", min_length=6)
    times = SpeechTimes(speech_start=98.0, speech_end=99.0, turn_decision=99.5, final=99.7, decode_ms=150.0)
    final = FinalTranscript(
        text="four five seven two one nine",
        t=3.0,
        details={"avg_logprob": -0.2},
        times=times,
        confidence=0.82,
        nbest=("four five seven two one nine", "for five seven two one nine"),
        context=context,
    )
    understanding = Understanding(
        intent="track_order", confidence=0.97, entities={"order_id": "457219"}, slots={"order_id": "457219"},
        flow="track_order", expecting=None, act="action", action="order_status", action_result="ok",
    )  # fmt: skip
    brain = BrainTimes(started=99.71, nlu_done=99.72, action_started=99.73, action_done=99.78, decided=99.8)
    return BotReply(
        text="It shipped.", understanding=understanding, times=brain, transcript=final, cause="speech"
    )


async def test_the_turn_stage_builds_one_typed_record_per_reply() -> None:
    greeting = BotReply(text="Hello.", cause="greeting", understanding=Understanding(act="greeting"))
    frames = [greeting, report(1, "Hello.", True, "Hel"), spoken_turn(), report(2, "It shipped.")]
    out = await run_stage(TurnStage(), frames)
    records = [f.record for f in out if isinstance(f, TurnDone)]
    assert [r.reply_id for r in records] == [1, 2]
    first, second = records
    assert first.cause == "greeting" and first.interrupted and first.heard == "Hel"
    assert second.previous_heard == "Hel" and second.previous_interrupted is True  # the one source
    assert second.transcript == "four five seven two one nine" and second.asr_confidence == 0.82
    assert [type(f).__name__ for f in out].count("PlaybackReport") == 2  # observers see the reports too


def test_the_record_json_keeps_every_old_field_and_adds_the_new_ones() -> None:
    record = TurnRecord.build(spoken_turn(), 2, report(2, "It shipped."), report(1, "Hello."))
    data = record.as_json()
    old = {"transcript", "asr", "intent", "confidence", "entities", "sentiment", "frustration", "answer_id",
           "flow", "expecting", "slots", "act", "action", "action_result", "previous_heard",
           "previous_interrupted", "reply", "actions", "timings_ms", "interrupted", "played_ms"}  # fmt: skip
    new = {"heard", "reply_id", "cause", "previous_cause", "asr_confidence", "nbest", "listening", "at_ms"}
    assert old | new == set(data)
    assert data["intent"] == "track_order" and data["confidence"] == 0.97 and data["reply"] == "It shipped."
    assert data["listening"]["slot"] == "order_id" and data["listening"]["min_length"] == 6
    assert data["nbest"][1] == "for five seven two one nine"
    timings = data["timings_ms"]
    assert timings["endpoint"] == 500.0 and timings["asr"] == 200.0 and timings["asr_decode"] == 150.0
    assert timings["nlu"] == pytest.approx(10.0) and timings["action"] == pytest.approx(50.0)
    assert timings["dialogue"] == pytest.approx(90.0) and timings["dialogue_step"] == pytest.approx(30.0)
    assert timings["tts_first_audio"] == pytest.approx(50.0)
    at = data["at_ms"]
    assert list(at) == ["speech_start", "speech_end", "turn_decision", "final_transcript", "nlu_done",
                        "action_done", "first_tts_audio", "first_audio_sent"]  # fmt: skip
    assert (
        at["speech_end"] == 0.0
        and at["speech_start"] == -1000.0
        and at["first_audio_sent"] == pytest.approx(1060)
    )


def test_keypad_and_greeting_records_have_no_nlu_fields() -> None:
    keypad = BotReply(text="You pressed 5.", understanding=Understanding(dtmf=True), cause="dtmf")
    data = TurnRecord.build(keypad, 3, report(3, "You pressed 5."), None).as_json()
    assert data["dtmf"] is True and "intent" not in data and "transcript" not in data
    assert data["previous_heard"] is None and data["cause"] == "dtmf"


def test_a_record_of_a_reply_never_played() -> None:
    record = TurnRecord.build(BotReply(text="Sorry?"), 4, None, None)
    assert record.heard == "" and record.played_ms == 0.0 and record.as_json()["at_ms"] == {}


async def test_a_report_upstream_is_not_taken_for_a_turn() -> None:
    """Only reports coming down from the speak stage close a turn."""
    out = await run_stage(TurnStage(), [BotReply(text="Hi."), (report(1, "Hi."), Direction.UPSTREAM)])
    assert not any(isinstance(f, TurnDone) for f in out)
