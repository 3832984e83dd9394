"""The speculative decode at a pause: a quick greedy reading decides the turn, and a slot answer's beam and
constrained reading follow only when that reading does not fit the slot (`voicebot.asr.base.settles`).

On fake models (a tone per line, `voicebot.testing.fakes`) through a live ASR stage; the encoder kept for
the second decode is checked once on the real Whisper backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from voicebot.asr.base import QUICK, DecodeHints, Transcription, settles
from voicebot.audio import to_float
from voicebot.frames import Direction, FinalTranscript, Frame, ListeningContext, SpeechAudio, SpeechStarted
from voicebot.nlu.grammar import digits_fit
from voicebot.pipeline import Services
from voicebot.stages.listen import ASRStage
from voicebot.testing.fakes import FakeASR, ToneVoice, fake_services
from voicebot.testing.stages import run_stage

ORDER = ListeningContext(expected="slot", slot="order_id", slot_type="digits", min_length=6, max_length=6)
DIGITS = DecodeHints(hypotheses=3, vocabulary=("one",), fits=digits_fit(ORDER))


@pytest.mark.parametrize(
    ("heard", "hints", "stands"),
    [
        (Transcription("I'd like to cancel my order."), DecodeHints(), True),  # a free turn: greedy anyway
        (Transcription("Yes.", provisional=True), DecodeHints(), False),  # would have fallen back
        (Transcription("It's 8 3 0 1 1 2."), DIGITS, True),  # the six digits asked for: no beam can help
        (Transcription("It's 8 3 0."), DIGITS, False),  # three of six: the beam and constrained reading
        (Transcription(""), DIGITS, False),
        (Transcription("John Smith."), DecodeHints(hypotheses=3), False),  # a name's n-best for the dialogue
    ],
)
def test_when_a_quick_reading_is_the_transcript(
    heard: Transcription, hints: DecodeHints, stands: bool
) -> None:
    assert settles(heard, hints) is stands


@pytest.fixture
def voice() -> ToneVoice:
    return ToneVoice()


@pytest.fixture
def svc(voice: ToneVoice) -> Iterator[Services]:
    services = fake_services(voice=voice, asr_delay_s=0.005)
    yield services
    services.close()


async def said(
    svc: Services, voice: ToneVoice, text: str, context: ListeningContext, silence_windows: int = 12
) -> tuple[list[Frame], FakeASR]:
    """`text` said under `context` to a live, deciding ASR stage, then `silence_windows` of pause in real
    time (32 ms each); its output and its recogniser."""
    asr = FakeASR(voice, delay_s=0.005)
    config = svc.config
    stage = ASRStage(asr, config.asr, svc.executor, config.vad, live=True, turn=config.turn, partials=False)
    pcm = voice.say(text)
    windows = [pcm[i : i + 512] for i in range(0, pcm.size - 511, 512)]
    quiet = np.zeros(512, np.int16)
    feed: list[Frame | tuple[Frame, Direction] | float] = [(context, Direction.UPSTREAM)]
    feed += [SpeechStarted(t=0.0, audio=windows[0])]
    feed += [SpeechAudio(w, (i + 1) * 0.032, speech=True) for i, w in enumerate(windows[1:])]
    for i in range(silence_windows):
        feed += [SpeechAudio(quiet, (len(windows) + i) * 0.032, speech=False), 0.032]
    return await run_stage(stage, feed), asr


def finals(out: list[Frame]) -> list[FinalTranscript]:
    return [f for f in out if isinstance(f, FinalTranscript)]


async def test_a_number_that_fits_is_decoded_once_and_ends_the_turn(svc: Services, voice: ToneVoice) -> None:
    out, asr = await said(svc, voice, "4 5 7 2 1 9.", ORDER)
    (final,) = finals(out)
    assert final.text == "4 5 7 2 1 9." and final.details["turn_reason"] == "number complete"
    assert final.details["turn_end"] == "early"
    assert asr.hints == [QUICK]  # no beam, no constrained decode after a reading that fits


async def test_a_number_short_of_the_slot_gets_the_full_decode(svc: Services, voice: ToneVoice) -> None:
    out, asr = await said(svc, voice, "4 5 7.", ORDER)
    assert not finals(out)  # three of six digits: the turn is held open
    quick, full = asr.hints
    assert quick == QUICK and full is not None and full.hypotheses == svc.config.asr.slot_hypotheses
    assert full.vocabulary and not full.quick


async def test_a_free_turn_is_one_quick_decode(svc: Services, voice: ToneVoice) -> None:
    out, asr = await said(svc, voice, "I'd like to cancel my order.", ListeningContext())
    (final,) = finals(out)
    assert final.text == "I'd like to cancel my order." and final.details["turn_end"] == "early"
    assert asr.hints == [QUICK]


def test_the_full_decode_after_a_quick_one_reuses_the_encoder(services: Services) -> None:
    """On the real backend: the second decode of the same audio skips the encoder; other audio does not."""
    asr = services.asr
    audio = to_float(services.tts.synthesize_at("It's four five seven.", 16_000))
    runs = asr.encoder_runs  # type: ignore[attr-defined]
    quick = asr.transcribe(audio, None, QUICK)
    full = asr.transcribe(audio, None, DIGITS)
    assert asr.encoder_runs == runs + 1  # type: ignore[attr-defined]
    assert "457" in quick.text.replace(" ", "") and full.alternatives  # the beam's other readings
    asr.transcribe(audio[: audio.size // 2], None, QUICK)
    assert asr.encoder_runs == runs + 2  # type: ignore[attr-defined]
