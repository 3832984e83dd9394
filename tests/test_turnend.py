"""The turn-end signal: a turn that sounds finished ends after `turn_end_silence_ms`, not `end_silence_ms`.

Real VAD and Whisper on TTS speech. Live audio arrives in real time, so a speculative decode normally
finishes within a few VAD windows; here each decode is awaited as soon as it starts, which is that timing
made deterministic.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from voicebot.asr.turnend import sounds_complete
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM, Direction, FinalTranscript, Frame, SpeechStarted
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


async def listen(services: Services, audio: PCM, live: bool = True) -> list[Frame]:
    """Run `audio` through a fresh endpointer and ASR stage; every frame the ASR stage emits."""
    config = TURN_END
    out: list[Frame] = []

    async def collect(frame: Frame) -> None:
        out.append(frame)

    stage = ASRStage(services.asr, config.asr, services.executor, config.vad, live=live)
    stage.link(downstream=collect)
    stage.work.start()
    endpointer = Endpointer(services.vad, config.vad)
    try:
        for start in range(0, audio.size - WINDOW + 1, WINDOW):
            for frame in endpointer.process(audio[start : start + WINDOW]):
                await stage.on_frame(frame, Direction.DOWNSTREAM)
                if stage._speculative is not None:  # real time: the decode is done a window or two later
                    await stage._speculative.task
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


TURN_END = VoicebotConfig(vad={"turn_end_silence_ms": 250})  # the signal is opt-in


@pytest.fixture(scope="module")
def said(services: Services) -> dict[str, PCM]:
    texts = {
        "cancel": "I would like to cancel my order.",
        "invoice": "And please email me the invoice.",
        "trailing": "My order number is",
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
    pause = silence(0.35)  # past the turn-end silence, short of the endpointer's 500 ms
    audio = np.concatenate([silence(0.3), said["cancel"], pause, said["invoice"], silence(1.0)])
    frames = await listen(services, audio)
    first, second = finals(frames)
    assert "cancel my order" in first.text.lower() and first.details["turn_end"] == "early"
    assert "invoice" in second.text.lower() and "cancel" not in second.text.lower()
    starts = [i for i, f in enumerate(frames) if isinstance(f, SpeechStarted)]
    assert len(starts) == 2 and frames.index(first) < starts[1] < frames.index(second)  # barges in
    offline = finals(await listen(services, audio, live=False))  # fed faster than real time: one turn
    assert len(offline) == 1 and "invoice" in offline[0].text.lower()
