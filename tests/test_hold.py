"""Hold and thinking audio, without models: whole calls on the shop's real dialogue engine over a back end
that answers late (`voicebot.testing.faults`), with fake speech, measured on the outbound audio stream."""

from __future__ import annotations

import asyncio
import base64
import math
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from telephony.session import WireStats
from voicebot.audio import ulaw_decode
from voicebot.config import HoldConfig, VoicebotConfig
from voicebot.dialogue.brain import DialogueFactory
from voicebot.domain.loader import load_domain
from voicebot.domain.yamlfile import DomainError
from voicebot.frames import PCM, HoldOn, HoldReport, TurnDone
from voicebot.pipeline import CallPipeline
from voicebot.playback import Pace
from voicebot.records import CallStore
from voicebot.stages.hold import HoldLine, hold_audio
from voicebot.stages.respond import BrainStage
from voicebot.testing.fakes import ScriptedNLU, TapSink, ToneTTS, ToneVoice, fake_services, tone
from voicebot.testing.faults.callers import TwilioCaller, until
from voicebot.testing.faults.domain import FaultFactory, FaultGate
from voicebot.testing.faults.env import call_of
from voicebot.testing.gateway import Recorder, http_get, running_gateway
from voicebot.testing.shop import SHOP
from voicebot.testing.stages import events_until
from voicebot.testing.twilio import TwilioStream, duration
from voicebot.turns import TurnRecord

ORDER = "457219"
SCRIPT = {
    "where is my order": ("track_order", {}),
    "four five seven two one nine": ("inform", {"order_id": ORDER}),
}
FILLER = "One moment while I look that up."
QUIET_DBFS = -50.0  # a 20 ms frame under this is silence on the line
MAX_SILENCE_S = 1.5  # the bound on silence while the caller waits


def config() -> VoicebotConfig:
    cfg = VoicebotConfig()
    cfg.pipeline.greeting = False
    cfg.pipeline.workers = 2
    cfg.turn.decide = False
    cfg.hold.after_ms = 300  # shorter than the 700 ms default: the same behaviour in less test time
    cfg.hold.music_gap_ms = 200
    return cfg


def shop_nlu() -> ScriptedNLU:
    flows = load_domain(SHOP).flows
    intents = {i for name, flow in flows.items() for i in flow.intents or [name]}
    return ScriptedNLU(SCRIPT, intents | {"affirm", "deny", "inform", "goodbye"})


@dataclass
class Call:
    pipe: CallPipeline
    sink: TapSink
    gate: FaultGate
    voice: ToneVoice


@pytest.fixture
async def call(tmp_path: Path) -> AsyncIterator[Call]:
    """A live (paced) call to the shop, whose order 457219 the back end answers only after `gate.slow_s`."""
    voice = ToneVoice(["hello are you there"])
    cfg = config()
    services = fake_services(cfg, voice=voice, tts=ToneTTS(ms_per_char=6.0))
    nlu = shop_nlu()
    gate = FaultGate()
    gate.modes[ORDER] = "slow"
    factory = FaultFactory(tmp_path, nlu, tmp_path, gate, action_timeout_s=10.0)
    # the order number is asked for, so a caller's next words would get the digit pause (1.5 s) to end in;
    # the words said over the hold are none: the usual pause keeps the test short
    factory.domain.settings.timeouts.digits_end_silence_ms = cfg.vad.end_silence_ms
    brain = factory()
    sink = TapSink()
    pipe = CallPipeline(services, brain, sink, channel_rate=16_000, paced=True, partials=False)
    await pipe.start()
    try:
        yield Call(pipe, sink, gate, voice)
    finally:
        await pipe.close()
        services.close()


async def turn(call: Call, text: str) -> TurnRecord:
    await call.pipe.send_text(text)
    done = (await events_until(call.pipe, TurnDone, timeout_s=15.0))[-1]
    assert isinstance(done, TurnDone)
    return done.record


async def ask_for_the_order(call: Call, slow_s: float) -> tuple[TurnRecord, float]:
    """The order number asked for, then given; the answer's record and when the number was given."""
    call.gate.slow_s = slow_s
    await turn(call, "where is my order")
    asked = time.monotonic()
    return await turn(call, "four five seven two one nine"), asked


def rms_dbfs(pcm: PCM) -> float:
    level = float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)))
    return 20.0 * math.log10(max(level, 1e-9))


def longest_silence(sink: TapSink, since: float, until: float) -> float:
    """The longest silence the caller's side heard between two moments: its jitter buffer plays the frames
    in order as they arrive (a frame that comes late leaves a gap), and a quiet frame is silence too."""
    longest, quiet_from, playing_until = 0.0, since, since
    for frame, arrived in zip(sink.frames, sink.times, strict=True):
        if arrived < since:
            continue
        start = max(arrived, playing_until)
        playing_until = start + frame.pcm.size / 16_000
        if rms_dbfs(frame.pcm) >= QUIET_DBFS:
            longest = max(longest, start - quiet_from)
            quiet_from = playing_until
    return max(longest, until - quiet_from)


def hold_frames(sink: TapSink, hold: HoldReport) -> list[int]:
    return [n for n, f in enumerate(sink.frames) if f.reply_id == hold.reply_id]


async def test_a_quick_back_end_plays_no_filler(call: Call) -> None:
    record, _ = await ask_for_the_order(call, slow_s=0.0)
    assert record.hold is None and "hold" not in record.as_json()
    assert record.reply is not None and "4 5 7, 2 1 9" in record.reply
    assert all(f.sentence != FILLER for f in call.sink.frames)
    assert call.sink.clears == 0


async def test_a_slow_back_end_gets_the_filler_then_the_answer_with_no_long_silence(call: Call) -> None:
    call.pipe.services.config.hold.music_gap_ms = 1000  # the answer comes in the quiet after the filler
    record, asked = await ask_for_the_order(call, slow_s=0.6)
    hold = record.hold
    assert hold is not None and hold.ended == "answer" and hold.filler == FILLER
    assert hold.started_ms is not None and 300 <= hold.started_ms <= 900  # hold.after_ms, then the filler
    assert hold.filler_ms > 0 and FILLER.startswith(hold.filler_heard) and hold.filler_heard
    assert record.timings_ms["action"] >= 600 and hold.hold_audio_ms == 0  # the record says why it waited
    assert record.heard == record.reply and not record.interrupted  # the answer, all of it, after
    frames = hold_frames(call.sink, hold)
    answer = [n for n, f in enumerate(call.sink.frames) if f.reply_id == record.reply_id]
    assert frames and max(frames) < min(answer)
    assert call.sink.clears == 1  # the filler sent ahead was dropped for the answer
    ended = call.sink.times[-1] + call.sink.frames[-1].pcm.size / 16_000
    assert longest_silence(call.sink, asked, ended) < MAX_SILENCE_S
    as_json = record.as_json()["hold"]
    assert as_json["filler"] == FILLER and as_json["ended"] == "answer"


class TwilioEar(TwilioStream):
    """Twilio's side of the stream, keeping what the caller's ear gets: when each media message plays (after
    those before it, as Twilio's buffer plays them), how long, and how loud; a clear drops what had not
    played yet."""

    def __init__(self) -> None:
        super().__init__()
        self.played: list[tuple[float, float, float]] = []  # (loop time it starts, seconds, dBFS)

    def on_media(self, now: float, media_payload: str, at: float) -> None:
        pcm = ulaw_decode(base64.b64decode(media_payload))
        self.played.append((at, duration(media_payload), rms_dbfs(pcm)))

    def on_clear(self, now: float) -> None:
        kept = [(at, min(seconds, now - at), level) for at, seconds, level in self.played if at < now]
        self.played = kept

    def longest_silence(self, since: float, until: float) -> float:
        longest, quiet_from = 0.0, since
        for at, seconds, level in self.played:
            if at + seconds > since and level >= QUIET_DBFS:
                longest = max(longest, at - quiet_from)
                quiet_from = max(quiet_from, at + seconds)
        return max(longest, until - quiet_from)


async def test_on_a_twilio_line_a_very_slow_back_end_gets_hold_audio_until_the_answer(tmp_path: Path) -> None:
    """The filler, then hold audio, measured on the wire: never a silence of 1.5 s while the caller waits,
    and the hold stops the moment the answer's first audio is ready."""
    cfg = config()
    voice = ToneVoice(["where is my order"])
    services = fake_services(cfg, voice=voice, tts=ToneTTS(ms_per_char=6.0))
    gate = FaultGate(slow_s=1.6)
    gate.modes[ORDER] = "slow"
    recorder = Recorder()
    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite'}", spool=tmp_path / "spool.jsonl")
    loop = asyncio.get_running_loop()
    try:
        factory = FaultFactory(tmp_path, shop_nlu(), tmp_path, gate, action_timeout_s=10.0)
        async with running_gateway(cfg, services, factory, [recorder, store]) as gw:
            caller = TwilioCaller()
            caller.stream = ear = TwilioEar()
            await caller.connect(gw)
            call_id = await call_of(caller, gw)
            caller.say(voice.say("where is my order", 8_000))
            assert await until(lambda: len(recorder.of(call_id, TurnDone)) == 1, 10)
            await caller.press(ORDER, gap_s=0.05)  # the order number on the keypad: six digits end it
            keyed = loop.time()
            assert await until(lambda: len(recorder.of(call_id, TurnDone)) == 2, 10)
            assert await until(lambda: ear.play_end < loop.time(), 10)  # the answer has played
            await caller.close()
            _, metrics = await http_get(gw.http, "/metrics")
        await store.flush()
        stored = await asyncio.to_thread(store.get_call, call_id)
    finally:
        store.close()
        services.close()
    record = recorder.of(call_id, TurnDone)[-1].record
    assert record.reply is not None and "4 5 7, 2 1 9" in record.reply and not record.interrupted
    hold = record.hold
    assert hold is not None and hold.ended == "answer" and hold.filler_heard == FILLER
    assert stored is not None and stored.turns[-1].extra["hold"] == hold.as_json()  # in the call records
    assert 'voicebot_holds_total{ended="answer"} 1.0' in metrics  # and on /metrics
    assert hold.hold_audio_ms >= 500  # from ~0.7 s (after_ms, the filler, the quiet) to the answer at ~1.6 s
    assert 1550 <= hold.waited_ms <= 2300 and record.timings_ms["action"] >= 1600
    # off hold the moment the answer's first audio is ready, not a moment of silence later
    decided, sent = record.times.brain.decided, record.times.first_audio_sent
    assert decided is not None and sent is not None and sent - decided < 0.5
    assert ear.longest_silence(keyed, ear.play_end) < 0.8  # < 1.5 s: the hold audio is never quiet long
    stats = recorder.of(call_id, WireStats)[0].stats
    assert stats["clears"] >= 1  # the hold audio sent ahead was dropped for the answer


async def test_a_caller_who_talks_over_the_hold_audio_stops_it_and_is_put_back_on_hold(call: Call) -> None:
    call.gate.slow_s = 3.2
    await turn(call, "where is my order")
    await call.pipe.send_text("four five seven two one nine")
    sink = call.sink
    async with asyncio.timeout(5):  # wait for the hold audio
        while not any(f.sentence == "" and rms_dbfs(f.pcm) > QUIET_DBFS for f in sink.frames):
            await asyncio.sleep(0.02)
    speech = call.voice.say("hello are you there")
    talked = time.monotonic()
    for n, chunk in enumerate(np.array_split(speech, speech.size // 320)):
        await call.pipe.caller_audio(chunk)
        await asyncio.sleep(max(0.0, talked + (n + 1) * 0.02 - time.monotonic()))
    said = time.monotonic()
    events = await events_until(call.pipe, HoldReport, timeout_s=5.0)
    (cut,) = [e for e in events if isinstance(e, HoldReport)]
    assert cut.ended == "barge_in" and cut.hold_audio_ms > 0 and sink.clears >= 1
    held = [t for f, t in zip(sink.frames, sink.times, strict=True) if f.reply_id == cut.reply_id]
    assert max(held) - talked < 0.8  # cut once the speech is judged (~0.3 s), not left to play on
    for _ in range(35):  # the caller goes quiet: 0.7 s of a silent line, their turn ends
        await call.pipe.caller_audio(np.zeros(320, np.int16))
        await asyncio.sleep(0.02)
    answered = (await events_until(call.pipe, TurnDone, timeout_s=10.0))[-1]
    assert isinstance(answered, TurnDone) and "4 5 7, 2 1 9" in (answered.record.reply or "")
    again = answered.record.hold  # once their words were in, back on hold until the answer
    assert again is not None and again.ended == "answer" and again.reply_id > cut.reply_id
    reply_id = answered.record.reply_id
    answer = [t for f, t in zip(sink.frames, sink.times, strict=True) if f.reply_id == reply_id]
    assert longest_silence(sink, said, max(answer)) < MAX_SILENCE_S


WORD = tone(300.0, 0.3, 16_000)  # a filler of two "words" with a 60 ms pause between them
TWO_WORDS = np.concatenate([WORD, np.zeros(960, np.int16), WORD])


@pytest.mark.parametrize(
    ("voice", "word_end_ms", "played_ms", "cleared"),
    [
        (TWO_WORDS, 300, (300, 340), False),  # on to the pause, which is played too: nothing to clear
        (TWO_WORDS, 0, (60, 160), True),  # hold.word_end_ms 0: cut at once
        (np.concatenate([WORD, WORD]), 200, (260, 360), True),  # no pause in time: cut at the limit
    ],
)
async def test_an_answer_ready_mid_filler_waits_for_the_pause_between_its_words(
    voice: PCM, word_end_ms: int, played_ms: tuple[float, float], cleared: bool
) -> None:
    sink = TapSink()
    said: asyncio.Future[PCM] = asyncio.get_running_loop().create_future()
    said.set_result(voice)
    config = HoldConfig(word_end_ms=word_end_ms)
    hold = HoldLine(
        HoldOn("One moment.", time.perf_counter()), 1, sink, Pace(20, 100, True), 16_000, said, config
    )
    await asyncio.sleep(0.1)  # the answer is ready 100 ms into the first word
    report = await hold.stop("answer")
    assert report.ended == "answer" and report.hold_audio_ms == 0
    assert played_ms[0] <= report.filler_ms <= played_ms[1]
    assert (sink.clears == 1) is cleared


def test_hold_audio_is_soft_in_band_and_never_quiet() -> None:
    for rate in (8_000, 16_000):
        loop = hold_audio(rate, -30.0)
        assert loop.size == 4 * rate and not loop.flags.writeable
        assert abs(rms_dbfs(loop) - -30.0) < 0.1 and np.abs(loop).max() < 32767 * 10 ** (-12 / 20)
        frames = loop[: loop.size // (rate // 50) * (rate // 50)].reshape(-1, rate // 50)
        assert min(rms_dbfs(f) for f in frames) > QUIET_DBFS + 5  # no 20 ms of it is silence
        power = np.abs(np.fft.rfft(loop.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(loop.size, 1.0 / rate)
        assert power[(freqs >= 300) & (freqs <= 3400)].sum() > 0.999 * power.sum()  # the telephone band
        seam = abs(int(loop[0]) - int(loop[-1]))
        assert seam < np.abs(np.diff(loop.astype(np.int32))).max()  # loops like any two samples follow


def test_a_domain_words_its_own_filler_without_placeholders(tmp_path: Path) -> None:
    domain = tmp_path / "shop"
    shutil.copytree(SHOP, domain, ignore=shutil.ignore_patterns("__pycache__"))
    hold = HoldConfig()
    assert BrainStage(DialogueFactory(domain, shop_nlu(), tmp_path)(), True, hold).filler == hold.filler
    responses = domain / "responses.yaml"
    original = responses.read_text()
    responses.write_text(original + "  one_moment:\n    - Let me check that for you.\n")
    brain = DialogueFactory(domain, shop_nlu(), tmp_path)()
    assert BrainStage(brain, live=True, hold=hold).filler == "Let me check that for you."
    responses.write_text(original + "  one_moment:\n    - Checking order {order_id}.\n")
    with pytest.raises(DomainError, match=r"one_moment.*no placeholders"):
        load_domain(domain)
