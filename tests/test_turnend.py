"""Deciding the end of a turn: a transcript, a listening context and the audio model give the pause.

Real VAD and Whisper on TTS speech. Live audio arrives in real time, so a speculative decode normally
finishes within a few VAD windows; here each decode is awaited as soon as it starts, which is that timing
made deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from voicebot.asr.smart_turn import SmartTurn
from voicebot.asr.turnend import decide, sounds_complete
from voicebot.assets import smart_turn_path
from voicebot.audio import to_float
from voicebot.config import TurnConfig, VoicebotConfig
from voicebot.frames import PCM, Direction, FinalTranscript, Frame, ListeningContext, SpeechStarted
from voicebot.nlu.grammar import digits_fit
from voicebot.pipeline import Services
from voicebot.stages.listen import ASRStage
from voicebot.testing.speech import RATE, silence
from voicebot.vad import WINDOW, Endpointer


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("I would like to cancel my order.", True),
        ("Can I speak to an agent?", True),
        ("Yes.", True),
        ("No thanks, goodbye!", True),
        ("My order number is.", False),  # Whisper puts a period on a trailing-off phrase too
        ("I want to track my order and", False),
        ("It's 457219.", False),  # digits come in groups, with pauses between
        ("four five seven.", False),
        ("double eight.", False),
        ("Um...", False),
        ("Well, um.", False),
        ("I'd like to", False),
        ("", False),
        ("   ", False),
        ("...", False),
        ("Send it to my address,", False),
        ("Cancel it -", False),
        ("!!!", False),
    ],
)
def test_sounds_complete(text: str, complete: bool) -> None:
    assert sounds_complete(text) is complete


TURN = TurnConfig()
ORDER = ListeningContext(
    expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6, end_silence_ms=1500
)
YES_NO = ListeningContext(expected="yes_no")


@pytest.mark.parametrize(
    ("text", "context", "audio_p", "pause", "reason"),
    [
        ("Yes.", YES_NO, None, TURN.complete_ms, "yes/no answer"),
        ("No, that's wrong.", YES_NO, None, TURN.complete_ms, "yes/no answer"),
        ("Yes,", YES_NO, None, TURN.hold_ms, "trails off"),  # "Yes, that's right." with a comma pause
        ("Yes, but I moved house.", YES_NO, None, TURN.text_complete_ms, "sentence complete"),
        ("4 5 7 2 1 9.", ORDER, None, TURN.complete_ms, "number complete"),
        ("457.", ORDER, None, TURN.hold_ms, "number incomplete"),  # the caller reads it in groups
        ("It's double 5 1, 6 oh 4.", ORDER, None, TURN.complete_ms, "number complete"),
        ("I'd like to cancel my order.", None, None, TURN.text_complete_ms, "sentence complete"),
        ("I'd like to cancel my order.", None, 0.9, TURN.complete_ms, "sentence and voice complete"),
        ("I'd like to cancel my order.", None, 0.3, 500, "voice unsure"),
        ("I want to track my order.", None, 0.02, TURN.hold_ms, "voice goes on"),  # "…order and" cut
        ("My order number is", None, None, TURN.hold_ms, "trails off"),
        ("I want to track my order in.", None, None, TURN.hold_ms, "trails off"),  # a preposition last
        ("What is it about?", None, None, TURN.text_complete_ms, "sentence complete"),  # ... not a question
        ("Hi.", None, None, TURN.hold_ms, "greeting"),  # "Hi, … I'd like a refund."
        ("Hello there.", None, 0.9, TURN.hold_ms, "greeting"),
        ("I'd like to, um,", None, None, TURN.hold_ms, "trails off"),
        ("I want to return the shoes because", None, 0.9, TURN.hold_ms, "trails off"),
        ("", None, None, TURN.hold_ms, "no words"),  # an "um" Whisper wrote nothing for
        ("Thank you.", None, None, TURN.text_complete_ms, "sentence complete"),
        ("My order is 457219.", None, None, 500, "unsure"),  # digits unasked for: maybe more to come
        ("Yes, please.", ORDER, None, TURN.text_complete_ms, "sentence complete"),  # no number at all
        ("It's.", ORDER, None, TURN.hold_ms, "number incomplete"),  # "It's… 4 5 7": the digits to come
    ],
)
def test_decide(
    text: str, context: ListeningContext | None, audio_p: float | None, pause: float, reason: str
) -> None:
    verdict = decide(text, context, TURN, 500, audio_p=audio_p)
    assert (verdict.pause_ms, verdict.reason) == (pause, reason)


def test_decide_reads_every_hypothesis_and_the_partial_number() -> None:
    assert decide("For 5 7.", ORDER, TURN, 500, ["4 5 7 2 1 9"]).reason == "number complete"
    partial = dataclasses.replace(ORDER, partial="457")  # said before a pause that ended the last turn
    assert decide("2 1 9.", partial, TURN, 500).reason == "number complete"
    assert decide("2.", partial, TURN, 500).reason == "number incomplete"


@pytest.mark.parametrize(
    ("partial", "text", "reason"),
    [
        ("457", "2 1 9.", "number complete"),  # the rest after a pause
        ("457", "4 5 7 2 1 9.", "number complete"),  # the whole number said again: no 1.5 s hold
        ("457", "four five seven, two one nine.", "number complete"),
        (None, "4 5 7 2 1 9.", "number complete"),  # a whole number directly
        ("457", "4 5 7 2.", "number may go on"),  # longer than the rest, shorter than the whole
        ("457", "2.", "number incomplete"),
    ],
)
def test_a_number_after_a_partial_ends_the_turn_as_the_grammar_accepts_it(
    partial: str | None, text: str, reason: str
) -> None:
    """The turn-end decision and the recogniser's grammar read the same expected lengths (`expected_lengths`):
    a caller who repeats the whole number after a partial one is answered at once, not after the hold."""
    context = dataclasses.replace(ORDER, partial=partial)
    verdict = decide(text, context, TURN, 500)
    assert verdict.reason == reason
    if reason == "number complete":
        fits = digits_fit(context)
        assert verdict.pause_ms == TURN.complete_ms and fits(text)


async def listen(
    services: Services, audio: PCM, live: bool = True, context: ListeningContext | None = None
) -> list[Frame]:
    """Run `audio` through a fresh endpointer and ASR stage (expecting `context`); every frame the ASR
    stage emits."""
    config = TURN_END
    out: list[Frame] = []

    async def collect(frame: Frame) -> None:
        out.append(frame)

    stage = ASRStage(
        services.asr,
        config.asr,
        services.executor,
        config.vad,
        live=live,
        turn=config.turn,
        smart_turn=services.smart_turn,
    )
    stage.link(downstream=collect)
    stage.work.start()
    endpointer = Endpointer(services.vad, config.vad, config.turn.hold_ms if live else None)
    if context is not None:
        endpointer.listen(context)
        await stage.on_frame(context, Direction.UPSTREAM)
    try:
        for start in range(0, audio.size - WINDOW + 1, WINDOW):
            for frame in endpointer.process(audio[start : start + WINDOW]):
                await stage.on_frame(frame, Direction.DOWNSTREAM)
                if stage._speculative is not None:  # real time: the decode is done a window or two later
                    await stage._speculative.task
                    if stage._speculative is not None and stage._speculative.audio_p is not None:
                        await stage._speculative.audio_p
            for _ in range(5):  # and 32 ms pass before the next window: queued finals go out
                await asyncio.sleep(0)
        for frame in endpointer.flush():
            await stage.on_frame(frame, Direction.DOWNSTREAM)
        finished = asyncio.Event()

        async def mark() -> None:  # queued behind every final still decoding
            finished.set()

        stage.work.submit(mark, keep=True)
        await asyncio.wait_for(finished.wait(), 60)
    finally:
        await stage.stop()
    return out


def finals(frames: list[Frame]) -> list[FinalTranscript]:
    return [f for f in frames if isinstance(f, FinalTranscript)]


TURN_END = VoicebotConfig()  # deciding is the default on live calls


@pytest.fixture(scope="module")
def said(services: Services) -> dict[str, PCM]:
    texts = {
        "cancel": "I would like to cancel my order.",
        "invoice": "And please email me the invoice.",
        "trailing": "My order number is",
        "first group": "four five seven",
        "second group": "two one nine.",
        "yes": "Yes.",
    }
    return {key: trim(services.tts.synthesize_at(text, RATE)) for key, text in texts.items()}


def trim(pcm: PCM) -> PCM:
    """The TTS's own leading and trailing silence off, so the pauses below are the pauses heard."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    return pcm[loud[0] : loud[-1] + 1]


async def test_a_finished_sentence_ends_the_turn_early(services: Services, said: dict[str, PCM]) -> None:
    frames = await listen(services, np.concatenate([silence(0.3), said["cancel"], silence(1.0)]))
    (final,) = finals(frames)  # the endpointer's own end, 250 ms later, is dropped
    assert "cancel my order" in final.text.lower()
    assert final.details["turn_end"] == "early"
    assert final.timings_ms["endpoint"] < VoicebotConfig().vad.end_silence_ms


async def test_a_trailing_phrase_waits_for_the_full_silence(services: Services, said: dict[str, PCM]) -> None:
    frames = await listen(services, np.concatenate([silence(0.3), said["trailing"], silence(1.0)]))
    (final,) = finals(frames)
    assert "order number" in final.text.lower()
    assert final.details["turn_end"] == "silence"
    assert final.timings_ms["endpoint"] >= VoicebotConfig().vad.end_silence_ms


async def test_talking_on_after_an_early_end_is_a_new_utterance(
    services: Services, said: dict[str, PCM]
) -> None:
    pause = silence(0.45)  # past turn.text_complete_ms as the VAD hears it (~60 ms late), short of 500 ms
    audio = np.concatenate([silence(0.3), said["cancel"], pause, said["invoice"], silence(1.0)])
    frames = await listen(services, audio)
    first, second = finals(frames)
    assert "cancel my order" in first.text.lower() and first.details["turn_end"] == "early"
    assert "invoice" in second.text.lower() and "cancel" not in second.text.lower()
    starts = [i for i, f in enumerate(frames) if isinstance(f, SpeechStarted)]
    assert len(starts) == 2 and frames.index(first) < starts[1] < frames.index(second)  # barges in
    offline = finals(await listen(services, audio, live=False))  # fed faster than real time: one turn
    assert len(offline) == 1 and "invoice" in offline[0].text.lower()


async def test_a_number_read_in_groups_is_one_turn(services: Services, said: dict[str, PCM]) -> None:
    """Expecting six digits and three heard, the 0.8 s pause is inside the turn; with all six, it is over."""
    audio = np.concatenate(
        [silence(0.3), said["first group"], silence(0.8), said["second group"], silence(2.0)]
    )
    (final,) = finals(await listen(services, audio, context=ORDER))
    assert "".join(c for c in final.text if c.isdigit()) == "457219"
    assert final.details["turn_end"] == "early" and final.details["turn_reason"] == "number complete"
    timer = finals(await listen(services, audio, live=False))  # the fixed 500 ms cuts it in two
    assert len(timer) == 2


async def test_a_yes_is_answered_sooner_than_the_timer(services: Services, said: dict[str, PCM]) -> None:
    (final,) = finals(
        await listen(services, np.concatenate([silence(0.3), said["yes"], silence(1.0)]), context=YES_NO)
    )
    assert "yes" in final.text.lower()
    assert final.details["turn_reason"] == "yes/no answer"
    assert final.details["turn_pause_ms"] == TURN.complete_ms
    assert final.timings_ms["endpoint"] < VoicebotConfig().vad.end_silence_ms


def test_smart_turn_hears_a_trailing_hesitation_as_unfinished(
    services: Services, said: dict[str, PCM]
) -> None:
    """The audio model, extracted from the pipecat-ai wheel by `voicebot models`, runs on its own: a
    finished request scores far above a caller trailing off on "um" (0.46 against 0.01 with Piper joe)."""
    model = SmartTurn(smart_turn_path(VoicebotConfig().cache_dir))
    done = model.probability(to_float(np.concatenate([said["cancel"], silence(0.1)])))
    um = services.tts.synthesize_at("I'd like to, um", RATE)
    going_on = model.probability(to_float(np.concatenate([trim(um), silence(0.1)])))
    assert 0.0 <= going_on < 0.1 < done <= 1.0
