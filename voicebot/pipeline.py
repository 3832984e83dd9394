"""One call = one `CallPipeline`: caller audio in → VAD → ASR → brain → TTS → caller audio out.

    caller ──▶ VADStage ──▶ ASRStage ──▶ BrainStage ──▶ SpeakStage ──▶ TurnStage ──▶ events (observers)
                  ▲             ▲            │  ▲             │  (AudioSink: the transport)
                  └─────────────┴────────────┘  └─────────────┘
                     ListeningContext               PlaybackReport      (the one way back, upstream)

Models are loaded once into `Services` and shared by every call; each call gets its own stage instances
(endpointer state, ASR buffers, brain) wired by asyncio queues in both directions. Transports (Twilio,
AudioSocket, browser, audio files) only feed caller audio/DTMF/hang-up in (`caller_audio`, `send_dtmf`,
`hangup`) and implement `AudioSink` (`voicebot.playback`) to play the bot's audio out. Where to change what:
a new stage goes in `stages` below (see `voicebot.stages.base`), a new frame in `voicebot.frames` (its
category decides its scheduling), a new protocol in `telephony/` (a `Transport`, see `telephony.session`).
docs/architecture.md has the picture and a paragraph per stage.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from itertools import pairwise

from voicebot.asr import ASRBackend, make_asr
from voicebot.asr.smart_turn import SmartTurn
from voicebot.assets import smart_turn_path
from voicebot.audio import live_resampler
from voicebot.brain import Brain
from voicebot.config import VoicebotConfig
from voicebot.frames import (
    PCM,
    AudioIn,
    Barrier,
    Direction,
    DTMFDigit,
    EndOfStream,
    FinalTranscript,
    Frame,
    HangUp,
    NoInput,
)
from voicebot.playback import AudioSink
from voicebot.stages.base import ModelPool, Stage, in_pool
from voicebot.stages.listen import ASRStage, VADStage
from voicebot.stages.record import TurnStage
from voicebot.stages.respond import BrainStage, SpeakStage
from voicebot.tts import CachedTTS, make_tts
from voicebot.vad import RATE, Endpointer, SileroVAD, VADModel


@dataclass
class Services:
    """Everything heavy, loaded once per process and shared by all calls."""

    config: VoicebotConfig
    vad: VADModel
    asr: ASRBackend
    tts: CachedTTS
    executor: ModelPool
    smart_turn: SmartTurn | None = None  # the audio end-of-turn model, when `turn.audio_model` names it

    @classmethod
    def load(cls, config: VoicebotConfig) -> Services:
        workers = config.pipeline.workers or (os.cpu_count() or 1)
        return cls(
            config=config,
            vad=SileroVAD(),
            asr=make_asr(config.asr, config.cache_dir),
            tts=make_tts(config.tts),
            executor=ModelPool(max_workers=workers, thread_name_prefix="model"),
            smart_turn=(
                SmartTurn(smart_turn_path(config.cache_dir))
                if config.turn.decide and config.turn.audio_model == "smart-turn"
                else None
            ),
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class CallPipeline:
    """A live call. Feed it with `caller_audio`/`send_dtmf`/`hangup`; observe it through `events`."""

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
        deciding = paced and cfg.turn.decide  # the ASR stage ends turns; the endpointer only past hold_ms
        self.vad = VADStage(Endpointer(services.vad, cfg.vad, cfg.turn.hold_ms if deciding else None))
        self.asr = ASRStage(
            services.asr,
            cfg.asr,
            services.executor,
            cfg.vad,
            live=paced,
            partials=partials,
            turn=cfg.turn,
            smart_turn=services.smart_turn,
            bargein=cfg.bargein,
            barge_in=cfg.pipeline.barge_in,
        )
        self.brain_stage = BrainStage(brain, live=paced, hold=cfg.hold)
        self.speak = SpeakStage(
            services.tts,
            sink,
            services.executor,
            rate=self.channel_rate,
            frame_ms=cfg.pipeline.frame_ms,
            paced=paced,
            barge_in=cfg.pipeline.barge_in,
            send_ahead_ms=cfg.pipeline.send_ahead_ms,
            hold=cfg.hold,
        )
        self.turns = TurnStage()
        self.stages: tuple[Stage, ...] = (self.vad, self.asr, self.brain_stage, self.speak, self.turns)
        link(self.stages, self.events.put)

    async def start(self) -> None:
        for stage in self.stages:
            stage.start()
        self.brain_stage.greet(self.services.config.pipeline.greeting)
        if self.brain_stage.hold is not None:  # the filler is a fixed prompt: made now, free when needed
            filler, tts = self.brain_stage.filler, self.services.tts
            self.filler_made = in_pool(self.services.executor, tts.synthesize_at, filler, self.channel_rate)

    async def caller_audio(self, pcm: PCM) -> None:
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
        """The bot stops talking at once; what the caller said before is still answered and recorded,
        then the call ends."""
        await self.vad.put(HangUp(reason=reason))
        await self.vad.put(EndOfStream(reason=reason))

    async def barrier(self, tag: str = "") -> None:
        """Ask for a `Barrier(tag)` on `events` once everything fed so far has been answered."""
        await self.vad.put(Barrier(tag=tag))

    @property
    def ended(self) -> bool:
        return self.speak.ended

    async def close(self) -> None:
        for stage in reversed(self.stages):
            await stage.stop()


def link(stages: tuple[Stage, ...], events: Callable[[Frame], Awaitable[None]]) -> None:
    """Each stage's downstream is the next stage and its upstream the previous one; the last stage's
    downstream is the call's events, and what the first sends upstream goes there too (observers see it)."""
    for before, after in pairwise(stages):
        before.link(downstream=after.put)
        after.link(upstream=partial(before.put, direction=Direction.UPSTREAM))
    stages[-1].link(downstream=events)
    stages[0].link(upstream=events)
