"""Fakes for every model, so the stages, the dialogue and whole calls over each protocol run without one.

In the spirit of LiveKit Agents' fake STT/TTS: small, deterministic stand-ins with the real interfaces, so
the real endpointer, stages, dialogue engine and transports run around them. The caller's "speech" is a
tone: `ToneVoice` gives each line of text a pitch of its own (and a length that follows the text), and
`FakeASR` hears a tone back as that line, after a set delay, the way a recogniser returns text after a
decode. The pitch survives what a phone line does to audio (8 kHz, μ-law, resampling), so a fake caller
on Twilio or AudioSocket is understood as well as one fed straight into the pipeline.

- `EnergyVAD`: speech probability from a window's loudness (or a script of probabilities);
- `FakeASR`: the line whose pitch the utterance has, after `delay_s`; records every prompt it was given;
- `ToneTTS`: a low tone whose length follows the text (`ms_per_char`), optionally after a delay;
- `ScriptedNLU`: parses looked up by text (intent and entity values), for the real dialogue engine;
- `TapSink`: a transport's sink that keeps what it was sent and when, and can confirm playback like marks;
- `fake_services()`: `Services` made of these, for `CallPipeline`, `FileCall`, the gateway and the shell.

Tests that need none of the real models use these and run in the fast tier (`pytest -m "not models"`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from voicebot.asr.base import Audio, DecodeHints, Transcription
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM, BotAudio
from voicebot.nlu.model import OOS, Labels
from voicebot.nlu.parser import Entity, Parse
from voicebot.pipeline import Services
from voicebot.stages.base import ModelPool
from voicebot.tts import CachedTTS
from voicebot.vad import RATE, VADState

LOWEST_PITCH, PITCH_STEP, HIGHEST_PITCH = 300.0, 80.0, 3_300.0  # a phone line passes 300-3400 Hz
BOT_PITCH = 200.0  # the bot's tone sits below every caller line: it can never be heard as one


def tone(freq: float, seconds: float, rate: int, level: float = 0.3) -> PCM:
    """A sine with 10 ms fades (no clicks for the VAD to hear as onsets)."""
    n = int(seconds * rate)
    wave = np.sin(2 * np.pi * freq * np.arange(n) / rate) * level
    fade = min(n // 2, int(0.01 * rate))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return (wave * 32767).astype(np.int16)


class ToneVoice:
    """The fake caller's voice and the fake recogniser's ear: each line of text is a tone of its own pitch,
    0.3 s plus `s_per_char` per character long."""

    def __init__(self, lines: Iterable[str] = (), s_per_char: float = 0.03) -> None:
        self.lines: list[str] = []
        self.s_per_char = s_per_char
        self._lock = threading.Lock()
        for line in lines:
            self.pitch(line)

    def pitch(self, text: str) -> float:
        with self._lock:
            if text not in self.lines:
                if LOWEST_PITCH + PITCH_STEP * len(self.lines) > HIGHEST_PITCH:
                    raise ValueError(f"ToneVoice holds at most {len(self.lines)} lines")
                self.lines.append(text)
            return LOWEST_PITCH + PITCH_STEP * self.lines.index(text)

    def say(self, text: str, rate: int = RATE) -> PCM:
        return tone(self.pitch(text), 0.3 + self.s_per_char * len(text), rate)

    def hear(self, audio: Audio, rate: int = RATE) -> str:
        """The line whose pitch is loudest in `audio` (16 kHz float), or "" for silence and other sounds."""
        if audio.size < rate // 20 or float(np.sqrt(np.mean(audio**2))) < 0.01:
            return ""
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
        peak = float(np.fft.rfftfreq(audio.size, 1.0 / rate)[int(np.argmax(spectrum))])
        index = round((peak - LOWEST_PITCH) / PITCH_STEP)
        with self._lock:
            near = abs(peak - (LOWEST_PITCH + PITCH_STEP * index)) < PITCH_STEP / 3
            return self.lines[index] if near and 0 <= index < len(self.lines) else ""


class EnergyVAD:
    """Speech probability from loudness: RMS over `full_rms` (of full scale) is certain speech. With a
    `script`, the probabilities are read from it in order instead (then 0.0 when it runs out)."""

    def __init__(self, full_rms: float = 0.05, script: Iterable[float] | None = None) -> None:
        self.full_rms = full_rms
        self.script = list(script) if script is not None else None

    def probability(self, window: PCM, state: VADState) -> float:
        if self.script is not None:
            return self.script.pop(0) if self.script else 0.0
        rms = float(np.sqrt(np.mean((window.astype(np.float32) / 32768.0) ** 2)))
        return min(1.0, rms / self.full_rms)

    def settled_state(self) -> VADState:
        return VADState()


@dataclass
class FakeASR:
    """Hears `voice`'s lines back after `delay_s` (a decode's time); keeps every prompt and decode hint it
    was given. A line written "a || b" is heard as "a" with "b" as the second hypothesis."""

    voice: ToneVoice
    delay_s: float = 0.02
    name: str = "fake"
    prompts: list[str | None] = field(default_factory=list)
    hints: list[DecodeHints | None] = field(default_factory=list)

    def transcribe(
        self, audio: Audio, prompt: str | None = None, hints: DecodeHints | None = None
    ) -> Transcription:
        started = time.perf_counter()
        self.prompts.append(prompt)
        self.hints.append(hints)
        time.sleep(self.delay_s)
        text, *others = [t.strip() for t in self.voice.hear(audio).split("||")]
        decode_ms = (time.perf_counter() - started) * 1000.0
        return Transcription(
            text=text,
            alternatives=others if text else [],
            raw_text=text,
            avg_logprob=-0.1 if text else -2.0,
            no_speech_prob=0.01 if text else 0.9,
            rejected=None if text else "empty",
            decode_ms=decode_ms,
            window_s=audio.size / RATE,
        )


@dataclass
class ToneTTS:
    """A `TTSBackend` whose speech is a low tone `ms_per_char` long per character (after `delay_s`)."""

    ms_per_char: float = 20.0
    delay_s: float = 0.0
    sample_rate: int = 16_000
    name: str = "tone"

    def synthesize(self, text: str) -> PCM:
        text = " ".join(text.split())
        if not text:
            return np.zeros(0, np.int16)
        time.sleep(self.delay_s)
        return tone(BOT_PITCH, max(0.1, self.ms_per_char * len(text) / 1000.0), self.sample_rate, level=0.2)


@dataclass
class TapSink:
    """A transport's `AudioSink` that keeps the frames it was sent and when (`time.monotonic()`), counts
    clears, and reports as played the speak stage's clock, or more where `confirmed` says so (reply id →
    ms the caller's side confirmed, as Twilio's mark echoes do)."""

    frames: list[BotAudio] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    clears: int = 0
    confirmed: dict[int, float] = field(default_factory=dict)

    async def play(self, frame: BotAudio) -> None:
        self.frames.append(frame)
        self.times.append(time.monotonic())

    async def clear(self) -> None:
        self.clears += 1

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        return max(clock_ms, self.confirmed.get(reply_id, 0.0))

    def replies(self) -> set[int]:
        return {f.reply_id for f in self.frames}


class ScriptedNLU:
    """The NLU's interface with parses looked up by text (case and spacing ignored): each line maps to an
    intent and its entity values; anything else is out of scope."""

    def __init__(
        self, script: Mapping[str, tuple[str, Mapping[str, str]]], intents: Iterable[str] = ()
    ) -> None:
        self.script = {" ".join(k.lower().split()): v for k, v in script.items()}
        known = {intent for intent, _ in script.values()} | set(intents) | {OOS}
        self.labels = Labels(intents=sorted(known))

    def parse(self, text: str, today: date | None = None) -> Parse:
        found = self.script.get(" ".join(text.lower().split()))
        if found is None:
            return Parse(text=text, intent=OOS, confidence=0.3)
        intent, values = found
        entities = [Entity(type=k, raw=v, value=v, start=0, end=0) for k, v in values.items()]
        return Parse(text=text, intent=intent, confidence=0.99, ranking=[(intent, 0.99)], entities=entities)


def fake_services(
    config: VoicebotConfig | None = None,
    voice: ToneVoice | None = None,
    asr_delay_s: float = 0.02,
    tts: ToneTTS | None = None,
    vad: EnergyVAD | None = None,
) -> Services:
    """`Services` with every model faked; `voice` is the callers' (share it with the test's callers)."""
    config = config or VoicebotConfig()
    return Services(
        config=config,
        vad=vad or EnergyVAD(),
        asr=FakeASR(voice or ToneVoice(), delay_s=asr_delay_s),
        tts=CachedTTS(tts or ToneTTS()),
        executor=ModelPool(max_workers=config.pipeline.workers or 2, thread_name_prefix="fake-model"),
    )
