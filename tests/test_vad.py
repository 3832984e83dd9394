"""Silero VAD endpointing on real synthetic speech."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.audio import Upsampler, resample, ulaw_decode, ulaw_encode
from voicebot.config import VADConfig
from voicebot.frames import PCM, BargeIn, Frame, SpeechAudio, SpeechEnded, SpeechStarted
from voicebot.pipeline import Services
from voicebot.testing.speech import RATE, silence
from voicebot.vad import WINDOW, Endpointer, SileroVAD, VADState


def run(services: Services, pcm: PCM, config: VADConfig | None = None, chunk: int = 320) -> list[Frame]:
    ep = Endpointer(services.vad, config or VADConfig())
    frames: list[Frame] = []
    for start in range(0, pcm.size, chunk):  # 20 ms transport frames
        frames += ep.process(pcm[start : start + chunk])
    return frames + ep.flush()


def events(frames: list[Frame]) -> list[type]:
    return [type(f) for f in frames if not isinstance(f, SpeechAudio)]


def test_one_utterance_start_and_end_times(services: Services, speech: dict[str, PCM]) -> None:
    pcm = np.concatenate([speech["agent"], silence(1.0)])
    frames = run(services, pcm)
    assert events(frames) == [SpeechStarted, SpeechEnded]
    started = next(f for f in frames if isinstance(f, SpeechStarted))
    ended = next(f for f in frames if isinstance(f, SpeechEnded))
    speech_len = (speech["agent"].size / RATE) - 0.6  # 0.3 s padding each side
    assert 0.2 <= started.t <= 0.55
    assert abs(ended.speech_end_t - (0.3 + speech_len)) < 0.3
    assert ended.t - ended.speech_end_t >= VADConfig().end_silence_ms / 1000 - 0.05
    assert not ended.forced
    assert ended.speech_ms > 800
    # pre-roll: the utterance audio starts before the detected onset
    assert ended.audio.size / RATE > ended.speech_end_t - started.t


def test_two_utterances_split_by_silence(services: Services, speech: dict[str, PCM]) -> None:
    pcm = np.concatenate([speech["agent"], silence(1.0), speech["bye"], silence(1.0)])
    assert events(run(services, pcm)) == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded]


def test_short_pause_does_not_end_the_utterance(services: Services, speech: dict[str, PCM]) -> None:
    pcm = np.concatenate([speech["agent"][:-4800], silence(0.1), speech["bye"][4800:], silence(1.0)])
    assert events(run(services, pcm)) == [SpeechStarted, SpeechEnded]


@pytest.mark.parametrize("kind", ["silence", "noise", "tone"])
def test_non_speech_yields_no_events(services: Services, kind: str) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(3 * RATE) / RATE
    pcm = {
        "silence": silence(3.0),
        "noise": rng.normal(0, 300, 3 * RATE).astype(np.int16),
        "tone": (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16),
    }[kind]
    assert events(run(services, pcm)) == []


def test_max_utterance_forces_an_end(services: Services, speech: dict[str, PCM]) -> None:
    frames = run(services, speech["track"], VADConfig(max_utterance_ms=1000))
    ended = [f for f in frames if isinstance(f, SpeechEnded)]
    assert ended and ended[0].forced
    assert ended[0].audio.size <= 1.4 * RATE


def test_hang_up_mid_sentence_keeps_the_words(services: Services, speech: dict[str, PCM]) -> None:
    frames = run(services, speech["track"][: RATE * 2])  # cut while speaking; flush() closes it
    ended = [f for f in frames if isinstance(f, SpeechEnded)]
    assert len(ended) == 1 and ended[0].forced and ended[0].audio.size > RATE


def test_eight_khz_speech_after_upsampling(services: Services, speech: dict[str, PCM]) -> None:
    phone = resample(resample(speech["agent"], RATE, 8000), 8000, RATE)
    assert events(run(services, np.concatenate([phone, silence(1.0)]))) == [SpeechStarted, SpeechEnded]


def test_odd_chunk_sizes_give_the_same_events(services: Services, speech: dict[str, PCM]) -> None:
    pcm = np.concatenate([speech["agent"], silence(1.0)])
    a = [f.t for f in run(services, pcm, chunk=320) if isinstance(f, SpeechStarted | SpeechEnded)]
    b = [f.t for f in run(services, pcm, chunk=777) if isinstance(f, SpeechStarted | SpeechEnded)]
    assert a == b


def phone(services: Services, text: str) -> PCM:
    """8 kHz μ-law, as a phone line delivers it, cut to the speech."""
    pcm = ulaw_decode(ulaw_encode(services.tts.synthesize_at(text, 8000)))
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    return pcm[loud[0] : loud[-1] + 1]


def test_a_short_answer_after_a_long_silence_is_heard(services: Services) -> None:
    """A caller's "Yes." after the bot's question: seconds of digital silence since the caller's last
    utterance. Silero's recurrent state drifts over such silence, and a short word then stayed under
    `min_speech_ms` in about half of the frame alignments (callers' confirmations went unheard)."""
    first = phone(services, "I want a refund for order nine three two zero one seven.")
    yes = phone(services, "Yes.")
    missed = []
    for gap_ms in range(5400, 6000, 20):  # 30 alignments of the answer against the 32 ms VAD windows
        line = np.concatenate(
            [silence(1.0, 8000), first, silence(gap_ms / 1000, 8000), yes, silence(1.0, 8000)]
        )
        ends = [f for f in run(services, Upsampler(8000, RATE).process(line)) if isinstance(f, SpeechEnded)]
        if len(ends) < 2:
            missed.append(gap_ms)
    # Before the state reset 23 of these 30 were missed; Piper's sampling noise changes the audio from run
    # to run, and a few alignments can still fall short (0-3 of 30 seen), hence a bound, not zero.
    assert len(missed) <= 6, missed


@pytest.mark.parametrize("start_threshold", [0.5, 0.9])
def test_words_before_a_late_onset_are_kept(services: Services, start_threshold: float) -> None:
    """On phone audio Silero can hover between the thresholds through "I'd like" (0.37-0.45 in one of 8
    frame alignments, with one dip under) and cross `start_threshold` only at "to cancel"; a fixed 300 ms
    pre-roll then cut the first words off, Whisper guessed ("Dr. Tych to Cancel Order…") and the caller's
    request was lost (10 of 240 soak calls). The utterance must reach back to the silence before the
    speech. At 0.9 the onset comes late more often (1.4 s into the line in 1 of 8 alignments in one run;
    Piper's audio varies from run to run). soxr upsampling, as on a live call by default."""
    line = phone(services, "I'd like to cancel order four five seven two one nine.")
    config = VADConfig(start_threshold=start_threshold)
    for lead_ms in range(1000, 1160, 20):  # 8 alignments of 20 ms frames against 32 ms windows
        pcm = resample(np.concatenate([silence(lead_ms / 1000, 8000), line, silence(1.0, 8000)]), 8000, RATE)
        ended = [f for f in run(services, pcm, config) if isinstance(f, SpeechEnded)]
        assert len(ended) == 1, lead_ms
        audio_start = ended[0].speech_end_t + 0.25 - ended[0].audio.size / RATE  # it keeps a 250 ms tail
        assert audio_start <= lead_ms / 1000 + 0.04, (
            f"{lead_ms} ms of silence: audio from {audio_start:.3f} s"
        )


def test_a_short_word_then_more_words_barges_in(services: Services) -> None:
    """ "Sorry, can I talk to a person?": the comma can make "Sorry" a short word that is over before
    `min_speech_ms` (an utterance that does not cut the bot off). The words after it must still barge in;
    in a soak, 24 of 117 such callers talked over the whole 17 s answer unheard. A `min_speech_ms` longer
    than "Sorry" makes the short-word start happen on every run, whatever Piper's timing."""
    config = VADConfig(min_speech_ms=700)
    sorry = services.tts.synthesize_at("Sorry, can I talk to a person?", RATE)
    frames = [f for f in run(services, np.concatenate([silence(1.0), sorry, silence(1.0)]), config)
              if not isinstance(f, SpeechAudio)]  # fmt: skip
    assert [type(f) for f in frames] == [SpeechStarted, BargeIn, SpeechEnded]
    started, barge = frames[0], frames[1]
    assert isinstance(started, SpeechStarted) and isinstance(barge, BargeIn) and not started.barge_in
    assert 0.3 <= barge.t - started.t <= 1.5  # once "can I…" adds up to min_speech_ms, not at the end

    yes = services.tts.synthesize_at("Yes.", RATE)  # a short word alone stays a no-barge-in utterance
    alone = run(services, np.concatenate([silence(1.0), yes, silence(1.0)]), VADConfig(min_speech_ms=1500))
    assert events(alone) == [SpeechStarted, SpeechEnded]
    assert not any(isinstance(f, SpeechStarted) and f.barge_in for f in alone)


def test_short_answers_down_a_phone_line_are_heard(services: Services) -> None:
    """One-word answers after the bot's question, through μ-law and the live low-delay upsampler, at 8
    frame alignments each. faster-whisper's Silero export scored them 0.2-0.5 on phone audio and missed 30-45
    % ("Correct." in 8 of 8 alignments); the silero-vad package's v6.2 model scores them 0.9-1.0. Every
    utterance must start at or before the word (a cut "Yes," turned "Yes, please." into "please.")."""
    first = phone(services, "I want a refund for order nine three two zero one seven.")
    heard, tried = 0, 0
    for text in ["Yes.", "No.", "Yeah.", "Yes, please.", "Sure.", "Nope.", "Correct.", "That is right."]:
        answer = phone(services, text)
        for gap_ms in range(11000, 11160, 20):
            line = np.concatenate(
                [silence(1.0, 8000), first, silence(gap_ms / 1000, 8000), answer, silence(1.0, 8000)]
            )
            ends = [
                f for f in run(services, Upsampler(8000, RATE).process(line)) if isinstance(f, SpeechEnded)
            ]
            onset = 1.0 + (first.size + gap_ms * 8) / 8000
            tried += 1
            if len(ends) == 2:
                tail = min(0.25, ends[1].t - ends[1].speech_end_t)
                heard += ends[1].speech_end_t + tail - ends[1].audio.size / RATE <= onset + 0.04
    assert heard >= tried - 2, f"{heard} of {tried} answers heard from their start"


class ScriptedVAD(SileroVAD):
    """Speech probabilities from a script: the endpointer's decisions on exact sequences Silero produced
    on phone audio (the model itself cannot be steered to them)."""

    def __init__(self, probabilities: list[float]) -> None:
        self.script = iter(probabilities)

    def probability(self, window: PCM, state: VADState) -> float:
        return next(self.script, 0.0)

    def settled_state(self) -> VADState:
        return VADState()


@pytest.mark.parametrize(
    ("script", "started"),
    [
        ([0.58, 0.49, 0.37, 0.39, 0.39, 0.49, 0.39], True),  # 224 ms voiced, one window over 0.5: "Yes."
        ([0.45, 0.56, 0.31, 0.52, 0.43, 0.51, 0.39], True),  # one dip under 0.35 inside the word
        ([0.58, 0.48, 0.39, 0.25, 0.32, 0.42, 0.51], False),  # two windows under: two bits, neither a word
        ([0.45, 0.45, 0.48, 0.44, 0.47, 0.41, 0.46], False),  # never over start_threshold: maybe speech
        ([0.9, 0.9, 0.9, 0.9], True),  # 128 ms over start_threshold: a short word as before
        ([0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.9], False),  # clicks
    ],
)
def test_short_word_rules(script: list[float], started: bool) -> None:
    silent = [0.01] * 20
    vad = ScriptedVAD([*silent, *script, *silent])
    frames = Endpointer(vad, VADConfig()).process(np.zeros(WINDOW * (len(script) + 40), np.int16))
    starts = [f for f in frames if isinstance(f, SpeechStarted)]
    assert bool(starts) is started
    assert not any(f.barge_in for f in starts)  # a short word never cuts the bot off by itself
