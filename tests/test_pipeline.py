"""The streaming pipeline end to end with real models: turns, barge-in, DTMF, hang-up, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voicebot.audio import resample
from voicebot.brain import BrainInput, EchoBrain
from voicebot.filecall import FileCall, feed_audio
from voicebot.frames import (
    PCM,
    BotReply,
    CallEnded,
    FinalTranscript,
    PartialTranscript,
    PlaybackReport,
    StageError,
    TurnDone,
)
from voicebot.pipeline import CallPipeline, Services
from voicebot.testing.fakes import TapSink
from voicebot.testing.speech import RATE, silence
from voicebot.testing.stages import events_until

TURN_KEYS = {
    "file",
    "transcript",
    "intent",
    "confidence",
    "entities",
    "sentiment",
    "reply",
    "actions",
    "timings_ms",
}


async def test_file_call_turns_and_json_shape(services: Services, speech_files: dict[str, Path]) -> None:
    call = FileCall(services, EchoBrain(), fast=True)
    result = await call.run([speech_files["agent"], speech_files["bye"]])
    assert result.greeting and "automated assistant" in result.greeting
    assert len(result.turns) == 2 and not result.errors
    first, second = result.turns
    assert set(first) >= TURN_KEYS
    assert first["intent"] is None and first["entities"] is None
    assert "human agent" in first["transcript"].lower()
    assert first["reply"].startswith("You said:")
    assert {"asr", "dialogue", "tts_first_audio", "endpoint"} <= set(first["timings_ms"])
    assert second["actions"] == [{"kind": "hangup", "target": None, "reason": "caller said goodbye"}]
    assert result.ended == "caller said goodbye"


async def test_file_call_with_only_silence_gives_an_empty_turn(services: Services, tmp_path: Path) -> None:
    from voicebot.audio import write_wav

    path = tmp_path / "quiet.wav"
    write_wav(path, silence(1.0), RATE)
    result = await FileCall(services, EchoBrain(), fast=True).run([path])
    assert result.turns[0]["transcript"] == "" and result.turns[0]["reply"] is None


async def test_out_dir_writes_reply_and_stereo_call(
    services: Services, speech_files: dict[str, Path], tmp_path: Path
) -> None:
    import wave

    call = FileCall(services, EchoBrain(), fast=True, rate=8000)
    result = await call.run([speech_files["agent"]])
    call.write_outputs(tmp_path, result)
    assert (tmp_path / "turn01_reply.wav").is_file()
    with wave.open(str(tmp_path / "call.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        data = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    assert np.abs(data[:, 0]).max() > 1000 and np.abs(data[:, 1]).max() > 1000  # caller left, bot right


async def test_barge_in_stops_the_bot_and_records_what_was_heard(
    services: Services, speech: dict[str, PCM]
) -> None:
    brain = EchoBrain()
    sink = TapSink()
    pipe = CallPipeline(services, brain, sink, channel_rate=RATE, paced=True)
    await pipe.start()  # the greeting takes ~5 s to play in real time
    await events_until(pipe, BotReply)
    await feed_audio(pipe, silence(0.5), realtime=True)
    await feed_audio(pipe, np.concatenate([speech["agent"], silence(1.0)]), realtime=True)
    frames = await events_until(pipe, TurnDone)  # the interrupted greeting's turn record
    greeting = next(f for f in frames if isinstance(f, TurnDone)).record
    greeting_frames = [f for f in sink.frames if f.reply_id == 1]
    assert sink.clears == 1 and greeting.interrupted is True
    assert not any(f.last for f in greeting_frames)  # it never reached its end
    assert 500 <= greeting.played_ms < 4000
    sent_ms = len(greeting_frames) * 20  # sent 100 ms (pipeline.send_ahead_ms) ahead of what was heard
    assert sent_ms - 130 <= greeting.played_ms <= sent_ms - 40
    said = (greeting.reply or "").split()
    assert 0 < len(greeting.heard.split()) < len(said)  # some of its words, not all
    assert said[: len(greeting.heard.split())] == greeting.heard.split()
    assert sink.times[5] - sink.times[0] < 0.06  # the first 100 ms at once, not over 100 ms
    assert 0.1 < sink.times[20] - sink.times[0] < 0.6  # then in real time (20 frames: 300 ms after the lead)
    frames = await events_until(pipe, TurnDone)  # the caller's turn is still answered
    done = [f for f in frames if isinstance(f, TurnDone)][-1]
    assert "human agent" in (done.record.transcript or "").lower()
    report = brain.heard[0]  # the brain knows what the caller heard: the same report as the record
    assert (report.reply_id, report.interrupted, report.played_ms) == (1, True, greeting.played_ms)
    assert report.heard == greeting.heard == done.record.previous_heard
    await pipe.close()


async def test_a_short_word_then_a_sentence_still_cuts_the_bot(services: Services) -> None:
    """A caller whose first word is short ("Sorry, can I…") cuts the greeting once the rest is heard."""
    config = services.config.model_copy(deep=True)
    config.vad.min_speech_ms = 700  # longer than "Sorry" (~450 ms): its short-word start happens every run
    sink = TapSink()
    pipe = CallPipeline(replace(services, config=config), EchoBrain(), sink, channel_rate=RATE, paced=True)
    await pipe.start()
    await events_until(pipe, BotReply)
    sorry = services.tts.synthesize_at("Sorry, can I talk to a person?", RATE)
    await feed_audio(pipe, np.concatenate([silence(0.5), sorry, silence(1.0)]), realtime=True)
    frames = await events_until(pipe, TurnDone)
    greeting = next(f for f in frames if isinstance(f, TurnDone)).record
    assert sink.clears == 1 and greeting.interrupted is True
    assert greeting.played_ms < 3000  # cut while "can I talk…" was said, not after the greeting
    await pipe.close()


async def test_dtmf_and_hang_up_mid_sentence(services: Services, speech: dict[str, PCM]) -> None:
    sink = TapSink()
    pipe = CallPipeline(services, EchoBrain(), sink, channel_rate=8000, paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)  # greeting
    await pipe.send_dtmf("5")
    frames = await events_until(pipe, TurnDone)
    assert any(isinstance(f, BotReply) and f.text == "You pressed 5." for f in frames)
    assert all(f.pcm.size == 160 for f in sink.frames)  # 20 ms at 8 kHz
    phone = resample(speech["track"], RATE, 8000)
    await feed_audio(pipe, phone[: 8000 * 2], realtime=False)  # hang up two seconds into the sentence
    await pipe.hangup("caller hung up")
    frames = await events_until(pipe, CallEnded)
    finals = [f for f in frames if isinstance(f, FinalTranscript)]
    assert finals and "my order" in finals[0].text.lower()  # the words before the hang-up are kept
    assert isinstance(frames[-1], CallEnded) and frames[-1].reason == "caller hung up"
    await pipe.close()


class ExplodingBrain(EchoBrain):
    async def handle(self, event: BrainInput) -> BotReply | None:
        if isinstance(event, FinalTranscript) and "agent" in event.text.lower():
            raise RuntimeError("back end down")
        return await super().handle(event)


class LegalBrain(EchoBrain):
    def greeting(self) -> BotReply | None:
        return BotReply(text="This call may be recorded. " * 3, interruptible=False)


async def test_brain_failure_is_reported_and_the_call_goes_on(
    services: Services, speech: dict[str, PCM]
) -> None:
    pipe = CallPipeline(services, ExplodingBrain(), TapSink(), paced=False)
    await pipe.start()
    await events_until(pipe, TurnDone)
    await feed_audio(pipe, np.concatenate([speech["agent"], silence(1.0)]), realtime=False)
    frames = await events_until(pipe, StageError)
    assert "back end down" in frames[-1].message  # type: ignore[attr-defined]
    await feed_audio(pipe, np.concatenate([speech["bye"], silence(1.0)]), realtime=False)
    frames = await events_until(pipe, CallEnded)
    await pipe.close()


async def test_protected_prompt_is_not_interrupted(services: Services, speech: dict[str, PCM]) -> None:
    brain = LegalBrain()
    pipe = CallPipeline(services, brain, TapSink(), paced=True)
    await pipe.start()
    await events_until(pipe, BotReply)
    await feed_audio(pipe, speech["agent"], realtime=True)
    frames = await events_until(pipe, TurnDone, timeout_s=30)
    assert next(f for f in frames if isinstance(f, TurnDone)).record.interrupted is False
    await pipe.close()


def test_playback_report_is_a_brain_input() -> None:
    from voicebot.brain import is_brain_input

    assert is_brain_input(PlaybackReport(reply_id=1, text="Hi.", played_ms=40.0, interrupted=True, heard=""))


@pytest.mark.parametrize("partials", [True, False])
async def test_partials_only_where_someone_watches(
    services: Services, speech: dict[str, PCM], partials: bool
) -> None:
    """The browser page shows partial transcripts; a phone line has no screen, so its calls spend no
    decodes on them (nor does any call while the model pool is busy with others' finals)."""
    pipe = CallPipeline(services, EchoBrain(), TapSink(), channel_rate=RATE, paced=True, partials=partials)
    await pipe.start()
    await events_until(pipe, TurnDone)  # the greeting
    await feed_audio(pipe, np.concatenate([speech["track"], silence(1.0)]), realtime=True)  # ~5 s of speech
    frames = await events_until(pipe, FinalTranscript)
    assert any(isinstance(f, PartialTranscript) for f in frames) is partials
    await pipe.close()
