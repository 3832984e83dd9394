"""Backchannels and barge-in: what caller speech over the bot stops it, and the turn record.

On fake models: whole paced calls through `CallPipeline` (the real endpointer, stages and judge; tones for
voices, see `voicebot.testing.fakes`), and the word rules of `voicebot.asr.bargein.classify` on their own.
With the real models, once: Piper's "Uh huh." and "Okay." over the bot's greeting on a Twilio stream, then
"Wait.".
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import websockets

from voicebot.asr.bargein import classify, words_of
from voicebot.brain import EchoBrain
from voicebot.config import BargeInConfig, ServerConfig, VoicebotConfig
from voicebot.filecall import ReplyCollector, feed_audio
from voicebot.frames import (
    PCM,
    BargeIn,
    BotReply,
    BotSpeaking,
    Direction,
    FinalTranscript,
    Frame,
    Interruption,
    ListeningContext,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    TurnDone,
)
from voicebot.pipeline import CallPipeline, Services
from voicebot.stages.listen import ASRStage
from voicebot.testing.fakes import FakeASR, ToneTTS, ToneVoice, fake_services, tone
from voicebot.testing.gateway import Recorder, running_gateway
from voicebot.testing.stages import events_until, run_stage
from voicebot.testing.twilio import RATE as PHONE_RATE
from voicebot.testing.twilio import TwilioStream
from voicebot.turns import TurnRecord
from voicebot.vad import RATE

LINES = ("Okay.", "Wait.", "Wait, I have a question about my order.")
COUGH_PITCH = 2_900.0  # no line's pitch: the fake recogniser hears nothing in it, as Whisper in a cough


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Mm-hmm.", "backchannel"),
        ("Mhm.", "backchannel"),
        ("MHN.", "backchannel"),  # Piper's "Mhm." as Whisper heard it in bench_turns --part bargein
        ("Uh-huh.", "backchannel"),
        ("Okay.", "backchannel"),
        ("Yeah, right.", "backchannel"),
        ("Mmm-hmmm.", "backchannel"),  # a held sound is the same word
        ("", "noise"),
        ("[coughs]", "noise"),  # Whisper's label for a sound
        ("Wait.", "interruption"),
        ("No.", "interruption"),
        ("Stop, that's wrong.", "interruption"),
        ("Okay, but is it open on Sunday?", "interruption"),
        ("Right?", "interruption"),  # a question, even of backchannel words
        ("I said Tuesday.", "interruption"),  # a correction: words that are no backchannel
    ],
)
def test_what_words_heard_over_the_bot_are(text: str, kind: str) -> None:
    assert classify(text, BargeInConfig())[0] == kind


@pytest.fixture
def voice() -> ToneVoice:
    return ToneVoice(LINES, s_per_char=0.01)  # "Okay." 0.35 s, "Wait." 0.35 s: backchannel-short


def services(voice: ToneVoice, **bargein: object) -> Services:
    """Fake models; the bot speaks 80 ms a character (its greeting ~7 s), so there is time to talk over it."""
    config = VoicebotConfig.model_validate({"bargein": bargein})
    return fake_services(config, voice=voice, tts=ToneTTS(ms_per_char=80.0))


@pytest.fixture
def svc(voice: ToneVoice) -> Iterator[Services]:
    svc = services(voice)
    yield svc
    svc.close()


def quiet(seconds: float) -> PCM:
    return np.zeros(int(seconds * RATE), np.int16)


async def started_call(svc: Services) -> CallPipeline:
    pipe = CallPipeline(svc, EchoBrain(), ReplyCollector(), channel_rate=RATE, paced=True)
    await pipe.start()
    await events_until(pipe, BotReply)  # the greeting is playing
    return pipe


async def record_of(pipe: CallPipeline) -> tuple[TurnRecord, list[Frame]]:
    frames = await events_until(pipe, TurnDone)
    done = frames[-1]
    assert isinstance(done, TurnDone)
    return done.record, frames


async def test_a_backchannel_and_a_cough_leave_the_bot_talking_and_wait_stops_it(
    svc: Services, voice: ToneVoice
) -> None:
    pipe = await started_call(svc)
    cough = tone(COUGH_PITCH, 0.25, RATE)
    # the cough is held open turn.hold_ms (no words: maybe "um"), so "Wait." comes after that
    audio = [quiet(0.3), voice.say("Okay."), quiet(0.8), cough, quiet(1.8), voice.say("Wait."), quiet(1.0)]
    await feed_audio(pipe, np.concatenate(audio), realtime=True)
    greeting, frames = await record_of(pipe)
    assert greeting.cause == "greeting" and greeting.interrupted
    assert greeting.played_ms > 3_500  # talked on through "Okay." and the cough: cut only after "Wait."
    ok, coughed, wait = greeting.interruptions
    assert (ok.decision, ok.kind, ok.text) == ("continue", "backchannel", "Okay.")
    assert (coughed.decision, coughed.kind, coughed.text) == ("continue", "noise", "")
    assert (wait.decision, wait.kind, wait.text) == ("stop", "interruption", "Wait.")
    assert wait.reason.startswith("stop word 'wait'") and 0 < wait.latency_ms < 1_000
    assert greeting.as_json()["interruptions"][2]["decision"] == "stop"
    started = [f for f in frames if isinstance(f, SpeechStarted)]
    assert len(started) == 3 and not any(f.barge_in for f in started)  # tentative: none cut the bot itself
    answer, frames = await record_of(pipe)  # "Wait." is a turn; the backchannel and the cough were not
    heard = [f.text for f in frames if isinstance(f, FinalTranscript)]
    assert heard == ["Wait."] and answer.transcript == "Wait." and answer.previous_interrupted
    await pipe.close()


async def test_a_stop_word_cuts_before_the_clip_ends_and_long_speech_cuts_whatever_it_is(
    svc: Services, voice: ToneVoice
) -> None:
    pipe = await started_call(svc)
    await feed_audio(pipe, np.concatenate([quiet(0.3), voice.say(LINES[2]), quiet(0.8)]), realtime=True)
    greeting, _ = await record_of(pipe)
    (cut,) = greeting.interruptions
    assert cut.decision == "stop" and cut.reason == "stop word 'wait' (probe)"  # heard in the probe decode
    assert 200 <= cut.speech_ms < svc.config.bargein.max_backchannel_ms  # before the length rule
    frames = await events_until(pipe, BotReply)  # "You said: …" is playing: a long "okay" over it
    assert [f.text for f in frames if isinstance(f, FinalTranscript)] == [LINES[2]]
    long_okay = tone(voice.pitch("Okay."), 0.9, RATE)
    await feed_audio(pipe, np.concatenate([quiet(0.3), long_okay, quiet(0.8)]), realtime=True)
    echo, _ = await record_of(pipe)
    (cut,) = echo.interruptions
    assert (cut.decision, cut.kind) == ("stop", "speech") and echo.interrupted
    assert cut.text == "Okay."  # what the probe heard: a backchannel's words, but too long for one
    assert cut.speech_ms >= svc.config.bargein.max_backchannel_ms and cut.reason.endswith("ms of speech")
    await pipe.close()


async def test_the_old_immediate_barge_in_by_config(voice: ToneVoice) -> None:
    svc = services(voice, judge=False)
    pipe = await started_call(svc)
    await feed_audio(pipe, np.concatenate([quiet(0.3), voice.say("Okay."), quiet(0.8)]), realtime=True)
    greeting, _ = await record_of(pipe)
    assert greeting.interrupted and greeting.played_ms < 1_200  # cut at the speech start, "Okay." or not
    (cut,) = greeting.interruptions
    assert (cut.decision, cut.kind) == ("stop", "speech") and "judge off" in cut.reason
    await pipe.close()
    svc.close()


def utterance(voice: ToneVoice, text: str, t: float) -> list[Frame]:
    """The VAD's frames for `text` said at `t`: its start, its audio in windows, 300 ms of pause, its end."""
    pcm = np.concatenate([voice.say(text), quiet(0.3)])
    windows = [pcm[i : i + 512] for i in range(0, pcm.size - 511, 512)]
    voiced = voice.say(text).size // 512
    frames: list[Frame] = [SpeechStarted(t=t, audio=windows[0], barge_in=True)]
    frames += [SpeechAudio(w, t + (i + 1) * 0.032, speech=i < voiced) for i, w in enumerate(windows[1:])]
    end_t = t + len(windows) * 0.032
    return [*frames, SpeechEnded(end_t, t + voiced * 0.032, pcm[: len(windows) * 512], voiced * 32.0)]


async def test_a_backchannel_the_bot_finished_over_is_no_turn_but_one_that_goes_on_is(
    svc: Services, voice: ToneVoice
) -> None:
    """ "Okay." said over the bot is no turn, even when its utterance ends after the bot did (the endpointer
    holds it open), so the answer is heard under the context the dialogue sent for it; an "Okay." still
    voiced after the bot finished is an ordinary turn ("Is that right?" … "Okay."), and says so."""
    stage = ASRStage(FakeASR(voice), svc.config.asr, svc.executor, bargein=svc.config.bargein)
    context, up = ListeningContext(expected="yes_no"), Direction.UPSTREAM
    okay = utterance(voice, "Okay.", 1.0)  # its start, 10 voiced windows, 9 of pause, its end
    feed: list[Frame | tuple[Frame, Direction] | float] = [(context, up), (BotSpeaking(True, 1), up), *okay]
    feed += [0.2, *okay[:11], (BotSpeaking(False, 1), up), *okay[11:], 0.2]  # voice over, bot done, end
    feed += [(BotSpeaking(True, 2), up), *okay[:5], (BotSpeaking(False, 2), up), *okay[5:]]  # goes on
    out = await run_stage(stage, feed, upstream=[])
    finals = [f for f in out if isinstance(f, FinalTranscript)]
    assert [(f.text, f.context) for f in finals] == [("Okay.", context)]
    decisions = [(f.decision, f.kind, f.reason) for f in out if isinstance(f, Interruption)]
    assert decisions == [
        ("continue", "backchannel", "backchannel"),
        ("continue", "backchannel", "backchannel (over the bot's last words)"),
        ("turn", "backchannel", "the bot had finished"),
    ]
    assert not any(isinstance(f, BargeIn) for f in out)  # nothing was long enough, or said, to cut the bot


async def test_speech_while_the_bot_is_silent_goes_on_as_it_came(svc: Services, voice: ToneVoice) -> None:
    """Without `BotSpeaking` the ASR stage sends the speech start on as it came, and decides nothing."""
    stage = ASRStage(FakeASR(voice), svc.config.asr, svc.executor, bargein=svc.config.bargein)
    out = await run_stage(stage, [SpeechStarted(t=0.0, audio=voice.say("Okay."))])
    assert [type(f) for f in out] == [SpeechStarted] and isinstance(out[0], SpeechStarted) and out[0].barge_in
    assert not any(isinstance(f, Interruption) for f in out)


# --- with the real models, over Twilio -------------------------------------------------------------------


class LongGreeting(EchoBrain):
    def greeting(self) -> BotReply | None:
        return BotReply(
            text="Hello, and thank you for calling Acme Shop. I can track an order, change a delivery "
            "address or take a return, and I can put you through to a person at any time. How can I help you "
            "today?"
        )


class Caller(TwilioStream):
    """Twilio's side of the call, noting when the bot's first audio came and when the bot was cut."""

    def __init__(self, ws: object) -> None:
        super().__init__(ws)
        self.first_audio: float | None = None
        self.clears: list[float] = []

    def on_media(self, now: float, media_payload: str, at: float) -> None:
        self.first_audio = self.first_audio or now

    def on_clear(self, now: float) -> None:
        self.clears.append(now)


async def test_over_twilio_a_backchannel_does_not_stop_the_bot_and_wait_does(services: Services) -> None:
    said = {text: services.tts.synthesize_at(text, PHONE_RATE) for text in ("Uh huh.", "Okay.", "Wait.")}
    gap = np.zeros(PHONE_RATE // 10, np.int16)  # 100 ms of a silent line
    recorder = Recorder()
    config = VoicebotConfig(server=ServerConfig(audiosocket_port=None, drain_s=2))
    async with (
        running_gateway(config, services, LongGreeting, [recorder]) as gw,
        websockets.connect(f"ws://{gw.http}/twilio/stream") as ws,
    ):
        caller = Caller(ws)
        listening = asyncio.create_task(caller.listen())
        await caller.start()
        while caller.first_audio is None:  # the greeting (~12 s) is playing
            await caller.play(gap)
        for text in ("Uh huh.", "Okay."):  # each, then time to judge it while the bot talks on
            await caller.play(np.concatenate([gap] * 4 + [said[text]] + [gap] * 12))
        assert not caller.clears  # the bot was not stopped
        loop = asyncio.get_running_loop()
        wait_at = loop.time()
        await caller.play(said["Wait."])
        while not caller.clears and loop.time() - wait_at < 10:
            await caller.play(gap)
        await caller.play(np.concatenate([gap] * 10))
        await caller.stop()
        await recorder.ended()
        listening.cancel()
    assert caller.clears and caller.clears[0] > wait_at  # cut by "Wait.", not before
    (call,) = recorder.ends
    greeting = recorder.of(call, TurnDone)[0].record
    assert greeting.interrupted and greeting.played_ms > 4_000
    decisions = [(i.decision, i.kind) for i in greeting.interruptions]
    assert decisions == [("continue", "backchannel")] * 2 + [("stop", "interruption")], greeting.interruptions
    assert [words_of(i.text) for i in greeting.interruptions[:2]] == [["uh", "huh"], ["okay"]]
    heard = [f.text for f in recorder.of(call, FinalTranscript)]
    assert heard[0] == "Wait."  # the backchannels were no turns
