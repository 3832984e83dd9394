"""One call = one `CallPipeline`: caller audio in → VAD → ASR → brain → TTS → caller audio out.

Models are loaded once into `Services` and shared by every call; each call gets its own stage instances
(endpointer state, ASR buffers, brain) wired by asyncio queues. Transports (Twilio, AudioSocket, browser,
audio files) only push caller audio/DTMF/hang-up in and implement `AudioSink` for the bot's audio out.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from voicebot.asr import ASRBackend, make_asr
from voicebot.audio import live_resampler
from voicebot.brain import Brain
from voicebot.config import VoicebotConfig
from voicebot.frames import PCM, AudioIn, Barrier, DTMFDigit, FinalTranscript, Frame, HangUp, NoInput
from voicebot.stages.base import ModelPool
from voicebot.stages.listen import ASRStage, VADStage
from voicebot.stages.respond import AudioSink, BrainStage, SpeakStage
from voicebot.tts import CachedTTS, make_tts
from voicebot.vad import RATE, Endpointer, SileroVAD


@dataclass
class Services:
    """Everything heavy, loaded once per process and shared by all calls."""

    config: VoicebotConfig
    vad: SileroVAD
    asr: ASRBackend
    tts: CachedTTS
    executor: ModelPool

    @classmethod
    def load(cls, config: VoicebotConfig) -> Services:
        workers = config.pipeline.workers or (os.cpu_count() or 1)
        return cls(
            config=config,
            vad=SileroVAD(),
            asr=make_asr(config.asr, config.cache_dir),
            tts=make_tts(config.tts),
            executor=ModelPool(max_workers=workers, thread_name_prefix="model"),
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class CallPipeline:
    """A live call. Feed it with `send_audio`/`send_dtmf`/`hangup`; observe it through `events`."""

    def __init__(
        self,
        services: Services,
        brain: Brain,
        sink: AudioSink,
        channel_rate: int | None = None,
        paced: bool = True,
        partials: bool = True,
    ) -> None:
        """`paced`: audio comes and goes in real time (a live call); `partials`: someone watches partial
        transcripts (the browser page), worth a decode every `asr.partial_interval_ms` while idle."""
        cfg = services.config
        self.services = services
        self.brain = brain
        self.channel_rate = channel_rate or cfg.pipeline.channel_rate
        self.events: asyncio.Queue[Frame] = asyncio.Queue()
        low_delay = cfg.pipeline.low_delay_upsampling
        self._resampler = (
            live_resampler(self.channel_rate, RATE, low_delay) if self.channel_rate != RATE else None
        )
        self._audio_t = 0.0
        self.vad = VADStage(Endpointer(services.vad, cfg.vad))
        self.asr = ASRStage(services.asr, cfg.asr, services.executor, cfg.vad, live=paced, partials=partials)
        self.asr.prompt = getattr(brain, "asr_prompt", None)  # the domain's vocabulary, if it has one
        self.brain_stage = BrainStage(brain, live=paced)
        self.speak = SpeakStage(
            services.tts,
            sink,
            services.executor,
            rate=self.channel_rate,
            frame_ms=cfg.pipeline.frame_ms,
            paced=paced,
            barge_in=cfg.pipeline.barge_in,
            publish=self.events.put,
            feedback=self.brain_stage.put,
            send_ahead_ms=cfg.pipeline.send_ahead_ms,
        )
        self.stages = (self.vad, self.asr, self.brain_stage, self.speak)
        for upstream, downstream in zip(self.stages, self.stages[1:], strict=False):
            upstream.link(downstream.put)
        self._started = False

    async def start(self) -> None:
        for stage in self.stages:
            stage.start()
        self._started = True
        greeting = self.brain.greeting() if self.services.config.pipeline.greeting else None
        if greeting is not None:
            await self.speak.put(greeting)

    async def send_audio(self, pcm: PCM) -> None:
        """Caller audio at the channel rate, any chunk size (transports send 20 ms frames)."""
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        self._audio_t += pcm.size / RATE
        await self.vad.put(AudioIn(pcm=pcm, t=self._audio_t))

    async def send_dtmf(self, digit: str) -> None:
        await self.vad.put(DTMFDigit(digit=digit))

    async def send_text(self, text: str) -> None:
        """A caller turn as text (typed chat, conversation tests): skips VAD and ASR, keeps the order."""
        await self.vad.put(FinalTranscript(text=text, t=self._audio_t, details={"source": "text"}))

    async def send_no_input(self, after_s: float = 0.0) -> None:
        """Report caller silence now (offline runs; live calls time it themselves)."""
        await self.vad.put(NoInput(after_s=after_s))

    async def hangup(self, reason: str = "caller hung up") -> None:
        await self.vad.put(HangUp(reason=reason))

    async def barrier(self, tag: str = "") -> None:
        """Ask for a `Barrier(tag)` on `events` once everything fed so far has been answered."""
        await self.vad.put(Barrier(tag=tag))

    @property
    def ended(self) -> bool:
        return self.speak.ended

    async def close(self) -> None:
        for stage in reversed(self.stages):
            await stage.stop()
