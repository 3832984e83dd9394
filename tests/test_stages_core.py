"""The pipeline core without models: frame categories, scheduling, both directions, each stage on its own.

Everything here runs on the fakes of `voicebot.testing.fakes` (the fast tier: `pytest -m "not models"`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from voicebot import frames as F
from voicebot.asr.base import QUICK, Audio, DecodeHints, Transcription, judge
from voicebot.brain import BrainInput, EchoBrain
from voicebot.config import ASRConfig, VADConfig
from voicebot.frames import (
    AudioIn,
    Barrier,
    BotAudio,
    BotReply,
    Category,
    Direction,
    DTMFDigit,
    EndOfStream,
    FinalTranscript,
    Frame,
    HangUp,
    ListeningContext,
    NoInput,
    PartialTranscript,
    PlaybackReport,
    SpeechEnded,
    SpeechStarted,
)
from voicebot.stages.base import ModelPool, Stage
from voicebot.stages.listen import ASRStage, VADStage
from voicebot.stages.respond import BrainStage
from voicebot.testing.fakes import EnergyVAD, FakeASR, ToneVoice
from voicebot.testing.stages import run_stage
from voicebot.vad import RATE, Endpointer

SYSTEM = {"AudioIn", "SpeechStarted", "BargeIn", "SpeechAudio", "SpeechEnded", "DTMFDigit", "HangUp",
          "StageError", "ListeningContext", "PlaybackReport"}  # fmt: skip
SYSTEM |= {"Interruption", "BotSpeaking"}  # caller speech over the bot (voicebot.asr.bargein)
DATA = {"PartialTranscript", "BotReply", "BotAudio"}
CONTROL = {"FinalTranscript", "NoInput", "TurnDone", "Barrier", "EndOfStream", "CallEnded"}
SYSTEM, DATA, CONTROL = SYSTEM | {"HoldReport"}, DATA | {"HoldOn"}, CONTROL | {"HoldOff"}  # on hold
BASES = {"Frame", "SystemFrame", "DataFrame", "ControlFrame"}


def frame_classes() -> dict[str, type[Frame]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(F, inspect.isclass)
        if issubclass(cls, Frame) and cls.__module__.startswith(F.__name__) and name not in BASES
    }


def test_every_frame_class_declares_the_category_the_core_relies_on() -> None:
    classes = frame_classes()
    assert set(classes) == SYSTEM | DATA | CONTROL, "a new frame: add it to one of the three sets"
    for names, category in ((SYSTEM, Category.SYSTEM), (DATA, Category.DATA), (CONTROL, Category.CONTROL)):
        for name in names:
            assert classes[name].category is category, name


def test_only_caller_speech_and_barge_in_interrupt() -> None:
    pcm = np.zeros(16, np.int16)
    assert SpeechStarted(t=0.0, audio=pcm).interrupts
    assert not SpeechStarted(t=0.0, audio=pcm, barge_in=False).interrupts  # a short word, maybe a cough
    assert F.BargeIn(t=0.0).interrupts
    assert not HangUp().interrupts and not DTMFDigit(digit="1").interrupts
    assert Barrier().ends_input and EndOfStream().ends_input and not HangUp().ends_input


# --- scheduling by category ---------------------------------------------------------------------------


class SlowStage(Stage):
    """Slow work (100 ms) for every `NoInput`; everything else is passed on by the base class."""

    name = "slow"

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, NoInput):

            async def job() -> None:
                await asyncio.sleep(0.1)
                await self.push(PartialTranscript(text="work done", t=0.0))

            self.after(frame, job)
        else:
            await self.pass_on(frame, direction)


def names(frames: list[Frame]) -> list[str]:
    out = []
    for f in frames:
        label = getattr(f, "text", None) or getattr(f, "tag", None) or getattr(f, "digit", None)
        out.append(f"{type(f).__name__}:{label}" if label else type(f).__name__)
    return out


async def test_system_frames_overtake_queued_work_control_and_data_wait_for_it() -> None:
    out = await run_stage(
        SlowStage(), [NoInput(after_s=1), BotReply(text="late"), Barrier(tag="b"), DTMFDigit(digit="5")]
    )
    assert names(out) == ["DTMFDigit:5", "PartialTranscript:work done", "BotReply:late", "Barrier:b"]


async def test_an_interruption_drops_queued_data_but_never_control() -> None:
    speech = SpeechStarted(t=0.0, audio=np.zeros(16, np.int16))
    out = await run_stage(SlowStage(), [NoInput(after_s=1), BotReply(text="stale"), Barrier(tag="b"), speech])
    assert names(out) == ["SpeechStarted", "PartialTranscript:work done", "Barrier:b"]


async def test_frames_pass_on_at_once_when_no_work_is_queued() -> None:
    """With nothing queued, control frames are not held back: their order with system frames is kept."""
    ended = SpeechEnded(t=1.0, speech_end_t=0.5, audio=np.zeros(16, np.int16), speech_ms=300)
    started = SpeechStarted(t=1.1, audio=np.zeros(16, np.int16))
    out = await run_stage(Stage(), [ended, Barrier(tag="x"), started])
    assert names(out) == ["SpeechEnded", "Barrier:x", "SpeechStarted"]


async def test_frames_go_upstream_and_downstream() -> None:
    up: list[Frame] = []
    context = ListeningContext(expected="yes_no")
    report = PlaybackReport(reply_id=1, text="Hi.", played_ms=300.0, interrupted=False, heard="Hi.")
    out = await run_stage(Stage(), [(context, Direction.UPSTREAM), report], upstream=up)
    assert up == [context] and out == [report]


async def test_a_failing_frame_is_reported_and_the_stage_goes_on() -> None:
    class Fragile(Stage):
        name = "fragile"

        async def on_frame(self, frame: Frame, direction: Direction) -> None:
            if isinstance(frame, DTMFDigit):
                raise ValueError("bad key")
            await self.pass_on(frame, direction)

    out = await run_stage(Fragile(), [DTMFDigit(digit="9"), NoInput(after_s=0)])
    assert isinstance(out[0], F.StageError) and out[0].stage == "fragile" and "bad key" in out[0].message
    assert isinstance(out[1], NoInput)


# --- the listening stages -----------------------------------------------------------------------------

VOICE = ToneVoice(["track my order", "yes", "four five seven"])


def audio_in(pcm: np.ndarray, t0: float = 0.0) -> list[Frame]:
    step = RATE // 50
    return [AudioIn(pcm=pcm[i : i + step], t=t0 + (i + step) / RATE) for i in range(0, pcm.size, step)]


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def vad_stage() -> VADStage:
    return VADStage(Endpointer(EnergyVAD(), VADConfig()))


async def test_the_vad_stage_turns_a_tone_into_one_utterance() -> None:
    pcm = np.concatenate([quiet(0.5), VOICE.say("track my order"), quiet(1.0)])
    out = await run_stage(vad_stage(), audio_in(pcm))
    kinds = [type(f).__name__ for f in out]
    assert (
        kinds[0] == "SpeechStarted" and kinds.count("SpeechStarted") == 1 and kinds.count("SpeechEnded") == 1
    )
    ended = next(f for f in out if isinstance(f, SpeechEnded))
    assert 0.7 <= ended.speech_end_t <= 1.35 and 0.45 <= ended.t - ended.speech_end_t <= 0.6


async def test_a_barrier_closes_the_utterance_under_way() -> None:
    """End of input (a file's end, a hang-up) flushes what the caller was saying: nothing is lost."""
    pcm = np.concatenate([quiet(0.3), VOICE.say("track my order")])  # no trailing silence
    out = await run_stage(vad_stage(), audio_in(pcm))
    ended = [f for f in out if isinstance(f, SpeechEnded)]
    assert len(ended) == 1 and ended[0].forced


def count_utterances(frames: list[Frame]) -> int:
    return sum(isinstance(f, SpeechEnded) for f in frames)


async def test_a_listening_context_lengthens_the_pause_for_the_next_utterance_only() -> None:
    """Expecting a long number, a 1 s pause inside it does not end the turn; the next turn is back to
    the endpointer's 500 ms."""
    with_pause = np.concatenate([VOICE.say("four five seven"), quiet(1.0), VOICE.say("four five seven")])
    pcm = np.concatenate([quiet(0.3), with_pause, quiet(2.0), with_pause, quiet(1.0)])
    context = ListeningContext(expected="slot", slot="order_id", slot_type="digits", end_silence_ms=1500)
    up: list[Frame] = []
    out = await run_stage(vad_stage(), [(context, Direction.UPSTREAM), *audio_in(pcm)], upstream=up)
    assert count_utterances(out) == 3  # the first turn whole, the second cut in two
    assert up == [context]  # passed on towards the transport side (the call's observers)
    plain = await run_stage(vad_stage(), audio_in(pcm))
    assert count_utterances(plain) == 4


def asr_stage(asr: FakeASR, executor: ModelPool) -> ASRStage:
    return ASRStage(asr, ASRConfig(), executor, VADConfig(), live=False, partials=False)


async def caller_frames(*lines: str) -> list[Frame]:
    """What the VAD stage makes of the lines said one after another (with pauses)."""
    parts = [quiet(0.3)]
    for line in lines:
        parts += [VOICE.say(line), quiet(1.0)]
    return await run_stage(vad_stage(), audio_in(np.concatenate(parts)))


@pytest.fixture
def executor() -> Iterator[ModelPool]:
    pool = ModelPool(max_workers=2, thread_name_prefix="test")
    yield pool
    pool.shutdown(wait=False)


async def test_the_asr_stage_applies_a_listening_context_to_the_next_utterance_only(
    executor: ModelPool,
) -> None:
    asr = FakeASR(VOICE)
    context = ListeningContext(expected="slot", slot="order_id", prompt="Order numbers", hotwords=("refund",))
    up: list[Frame] = []
    vad_out = await caller_frames("four five seven", "yes")
    out = await run_stage(asr_stage(asr, executor), [(context, Direction.UPSTREAM), *vad_out], upstream=up)
    finals = [f for f in out if isinstance(f, FinalTranscript)]
    assert [f.text for f in finals] == ["four five seven", "yes"]
    assert finals[0].context == context and finals[1].context is None
    assert asr.prompts[0] == "Order numbers refund" and asr.prompts[-1] is None
    assert up == [context]
    times = finals[0].times
    assert times is not None and times.speech_start < times.speech_end < times.turn_decision <= times.final
    assert finals[0].confidence is not None and 0 < finals[0].confidence <= 1
    assert set(finals[0].timings_ms) == {"endpoint", "asr", "asr_decode"}


async def test_the_other_hypotheses_of_a_slot_answer_travel_with_the_transcript(
    executor: ModelPool,
) -> None:
    """A slot answer is decoded with the slot type's grammar and the recogniser's n-best reaches the
    dialogue in the final transcript; a free turn after it gets a plain decode."""
    asr = FakeASR(VOICE)
    context = ListeningContext(
        expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6
    )
    vad_out = await caller_frames("four five seven || four five eleven", "yes")
    out = await run_stage(asr_stage(asr, executor), [(context, Direction.UPSTREAM), *vad_out])
    finals = [f for f in out if isinstance(f, FinalTranscript)]
    assert [(f.text, f.nbest) for f in finals] == [("four five seven", ("four five eleven",)), ("yes", ())]
    assert finals[0].details["alternatives"] == ["four five eleven"]
    # each turn's speculative reading is greedy; "yes", a free turn, stops there, and three digits of six
    # get the slot's full decode after it
    assert asr.hints.count(QUICK) == 2 and len(asr.hints) == 3
    (full,) = [h for h in asr.hints if h != QUICK]
    assert full is not None and full.hypotheses > 1 and full.fits is not None


async def test_a_hang_up_overtakes_the_decode_and_the_end_of_stream_waits_for_it(executor: ModelPool) -> None:
    asr = FakeASR(VOICE, delay_s=0.2)
    vad_out = await caller_frames("track my order")
    out = await run_stage(asr_stage(asr, executor), [*vad_out, HangUp(), EndOfStream()])
    kinds = [type(f).__name__ for f in out]
    assert kinds == ["SpeechStarted", "HangUp", "FinalTranscript", "EndOfStream"]
    assert out[2].text == "track my order"  # type: ignore[attr-defined]


# --- the brain stage ----------------------------------------------------------------------------------


@dataclass
class SlowEcho(EchoBrain):
    """EchoBrain that takes 100 ms per caller event and expects a yes/no after each reply."""

    handled: list[Frame] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    async def handle(self, event: BrainInput) -> BotReply | None:
        self.handled.append(event)
        if not isinstance(event, PlaybackReport):
            await asyncio.sleep(0.1)
        return await super().handle(event)

    def listening_context(self) -> ListeningContext | None:
        return ListeningContext(expected="yes_no", prompt=f"turn {len(self.handled)}")


async def test_the_brain_stage_answers_in_order_and_sends_the_listening_context_back() -> None:
    brain = SlowEcho()
    up: list[Frame] = []
    final = FinalTranscript(text="hello", t=1.0)
    out = await run_stage(BrainStage(brain), [final, DTMFDigit(digit="5")], upstream=up)
    assert names(out) == ["DTMFDigit:5", "FinalTranscript:hello", "BotReply:You said: hello",
                          "BotReply:You pressed 5."]  # fmt: skip
    said, pressed = out[2], out[3]
    assert isinstance(said, BotReply) and said.transcript == final and said.cause == "text"
    assert isinstance(pressed, BotReply) and pressed.cause == "dtmf" and pressed.transcript is None
    assert said.times.started is not None and said.times.decided is not None
    assert said.times.decided - said.times.started >= 0.09
    assert [c.prompt for c in up if isinstance(c, ListeningContext)] == ["turn 1", "turn 2"]


async def test_playback_reports_reach_the_brain_and_go_no_further() -> None:
    brain = SlowEcho()
    report = PlaybackReport(reply_id=3, text="Hello.", played_ms=250.0, interrupted=True, heard="")
    up: list[Frame] = []
    out = await run_stage(BrainStage(brain), [(report, Direction.UPSTREAM)], upstream=up)
    assert brain.heard == [report] and out == [] and up == []


async def test_greeting_goes_out_with_the_first_listening_context() -> None:
    brain = SlowEcho()
    stage = BrainStage(brain)
    out: list[Frame] = []
    up: list[Frame] = []

    async def down(frame: Frame) -> None:
        out.append(frame)

    async def back(frame: Frame) -> None:
        up.append(frame)

    stage.link(downstream=down, upstream=back)
    stage.start()
    stage.greet(True)
    await asyncio.sleep(0.05)
    await stage.stop()
    assert isinstance(out[0], BotReply) and out[0].cause == "greeting" and "automated" in out[0].text
    assert isinstance(up[0], ListeningContext)


def test_bot_audio_is_data() -> None:
    assert BotAudio(pcm=np.zeros(4, np.int16), sentence="", reply_id=1).category is Category.DATA


async def test_speech_the_guards_reject_is_a_noisy_line_but_a_cough_is_nothing(executor: ModelPool) -> None:
    """A second of VAD speech that the recogniser cannot make out reaches the dialogue as rejected "noise"
    (so it asks again); the guard's own verdict stays in the record; a short burst stays a plain rejection."""

    class Mumble(FakeASR):
        def transcribe(
            self, audio: Audio, prompt: str | None = None, hints: DecodeHints | None = None
        ) -> Transcription:
            heard = super().transcribe(audio, prompt, hints)
            return judge(replace(heard, avg_logprob=-3.0), ASRConfig())

    out = await run_stage(asr_stage(Mumble(VOICE), executor), await caller_frames("track my order"))
    final = next(f for f in out if isinstance(f, FinalTranscript))
    assert final.text == "" and final.details["rejected"] == "noise"
    assert final.details["guard"] == "low confidence"
    short = ASRConfig(unclear_speech_ms=60_000)
    stage = ASRStage(Mumble(VOICE), short, executor, VADConfig(), live=False, partials=False)
    out = await run_stage(stage, await caller_frames("track my order"))
    final = next(f for f in out if isinstance(f, FinalTranscript))
    assert final.details["rejected"] == "low confidence" and final.details["guard"] is None
