"""Hearing the caller: endpointing (VAD) and streaming Whisper.

Streaming works in two ways. While the caller speaks, the growing utterance is re-decoded every
`partial_interval_ms` to show partial transcripts — only where someone sees them (the browser page), and only
while the model pool has nothing else to do: on a busy box every core goes to finals and speech. And as soon
as the caller pauses (a few VAD windows of silence), a *speculative final* decode starts; if the pause turns
into the end of the utterance, that result is the final transcript, ready when — or before — the endpointer's
silence timer runs out. If the caller speaks again, the speculation is thrown away. The speculative decode is
a quick greedy pass (`DecodeHints.quick`: its time is the decision's delay); a slot answer's beam and
constrained reading follow on the same encoder output only when the greedy reading does not already fit the
slot (`voicebot.asr.base.settles`), so the final transcript keeps the listening context's accuracy.

The end of a turn is a decision (`turn.decide`, live calls): the speculative transcript, the listening
context and the smart-turn audio model's probability, heard at the first pause, give the pause this turn
needs (`voicebot.asr.turnend.decide`): `turn.complete_ms` after "Yes." or the whole number asked for, up to
`turn.hold_ms` inside an incomplete number or after "and", `vad.end_silence_ms` when unsure. The endpointer
holds the utterance open that long meanwhile, and its own end of an utterance this stage already ended is
dropped here. If the caller goes on talking after all (`vad.min_speech_ms` of speech), what follows is a
new utterance: a `SpeechStarted` goes out (it barges in on the reply already under way) and its words are
decoded on their own.

Caller speech while the bot speaks is judged by a `BargeInJudge` (`voicebot.asr.bargein`): the speech start
goes on as tentative, and the judge cuts the bot with a `BargeIn` on length, a stop word in a quick probe
decode, or the speculative decode reading as more than a backchannel; a backchannel or a cough that ends
while the bot still speaks is dropped here (no final transcript). The speak stage says when the bot speaks
(`BotSpeaking`, upstream).

Listening context: the dialogue sends a `ListeningContext` upstream before each caller turn. The endpointer
takes its pause length and this stage its prompt, hot words and, for a slot answer, a few hypotheses and
a grammar (`voicebot.nlu.grammar`), for the next utterance only; the final
transcript names the context it was decoded under, so the turn record shows what the bot was listening for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.asr import ASRBackend, Transcription
from voicebot.asr.bargein import BargeInJudge
from voicebot.asr.base import QUICK, DecodeHints, judge, settles, unclear
from voicebot.asr.smart_turn import SmartTurn
from voicebot.asr.turnend import Verdict, decide
from voicebot.audio import to_float
from voicebot.config import ASRConfig, BargeInConfig, TurnConfig, VADConfig
from voicebot.frames import (
    PCM,
    AudioIn,
    BargeIn,
    BotSpeaking,
    Direction,
    FinalTranscript,
    Frame,
    ListeningContext,
    PartialTranscript,
    SpeechAudio,
    SpeechEnded,
    SpeechStarted,
    SpeechTimes,
)
from voicebot.nlu.grammar import listening_plan
from voicebot.stages.base import Stage, in_pool
from voicebot.vad import Endpointer

KEEP_TAIL_MS = 250.0  # trailing silence kept for a decode (as the endpointer keeps it)


class VADStage(Stage):
    name = "vad"

    def __init__(self, endpointer: Endpointer) -> None:
        super().__init__()
        self.endpointer = endpointer

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, AudioIn):
            for out in self.endpointer.process(frame.pcm):
                await self.push(out)
            return
        if isinstance(frame, ListeningContext):
            self.endpointer.listen(frame)
        elif frame.ends_input:  # everything the caller said so far is in: close an open utterance first
            for out in self.endpointer.flush():
                await self.push(out)
        await self.pass_on(frame, direction)


@dataclass
class _Decode:
    samples: int  # utterance samples the decode covered
    task: asyncio.Future[Transcription]  # the quick greedy reading
    final: asyncio.Future[Transcription]  # the transcript: that reading, or the slot's full decode after it
    heard: asyncio.Future[Transcription]  # what the turn decision reads: `final` for digits, else `task`
    audio_p: asyncio.Future[float] | None = None  # the audio model's P(turn complete), when it runs
    verdict: Verdict | None = None  # once both are in (decide mode)

    def ready(self) -> bool:
        futures: tuple[asyncio.Future[Any] | None, ...] = (self.heard, self.audio_p)
        return all(f is None or (f.done() and not f.cancelled() and not f.exception()) for f in futures)

    def drop(self) -> None:
        """The caller went on: no full decode is started for this pause (one already running finishes)."""
        self.final.cancel()


class ASRStage(Stage):
    name = "asr"

    def __init__(
        self,
        asr: ASRBackend,
        config: ASRConfig,
        executor: Executor,
        vad: VADConfig | None = None,
        live: bool = False,
        partials: bool = True,
        turn: TurnConfig | None = None,
        smart_turn: SmartTurn | None = None,
        bargein: BargeInConfig | None = None,
        barge_in: bool = True,
    ) -> None:
        """`live`: audio arrives in real time, so deciding the end of a turn can save time (offline runs,
        fed faster than real time, keep the endpointer's verdict and stay deterministic). `smart_turn`: the
        audio model, heard beside the transcript when `turn.audio_model` names it. `bargein`, `barge_in`:
        how caller speech over the bot is judged (`voicebot.asr.bargein`), and whether it cuts at all."""
        super().__init__()
        self.judge = BargeInJudge(bargein or BargeInConfig(), self.push, enabled=barge_in)
        self.asr = asr
        self.config = config
        self.vad = vad or VADConfig()
        self.turn = turn or TurnConfig()
        self.live = live
        self.decide = live and self.turn.decide
        self.smart_turn = smart_turn if self.decide and self.turn.audio_model == "smart-turn" else None
        self.partials = partials
        self.executor = executor
        self.context: ListeningContext | None = None  # from the dialogue, for the next utterance only
        self._chunks: list[PCM] = []
        self._samples = 0
        self._last_speech = 0  # utterance samples up to the end of the last speech window
        self._silence_ms = 0.0
        self._utterance = 0
        self._partial: asyncio.Task[None] | None = None
        self._last_partial_at = 0.0
        self._speculative: _Decode | None = None
        self._speech_ms = 0.0
        self._start_t = 0.0  # caller-audio time the utterance in progress started
        self._ended_early = False  # this endpointer utterance's turn already ended on the turn-end signal
        self._resumed = False  # ... and the caller went on: a new utterance inside the endpointer's one

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, ListeningContext):
            self.context = frame
            await self.pass_on(frame, direction)
        elif isinstance(frame, SpeechStarted):
            self._ended_early = self._resumed = False
            await self._start(frame)
        elif isinstance(frame, SpeechAudio):
            if self._ended_early:
                await self._after_early_end(frame)
            else:
                self._on_audio(frame)
            if await self.judge.audio(self._speech_ms, frame.t, frame.speech):  # a probe is due
                self.judge.watch(self._decode(self._samples, quick=True), probe=True)
        elif isinstance(frame, BotSpeaking):
            self.judge.bot(frame)  # the listener's to know, nobody else's
        elif isinstance(frame, BargeIn):
            if await self.judge.passes(frame):
                await self.pass_on(frame, direction)
        elif isinstance(frame, SpeechEnded):
            if self._ended_early:
                self._ended_early = False
                if not self._resumed:
                    self._chunks = []
                    return  # its turn was taken early: nothing new to say
                frame = self._own_end(frame)
            self._finalise(frame)
        else:
            await self.pass_on(frame, direction)  # control frames wait for the finals still decoding

    async def _start(self, frame: SpeechStarted) -> None:
        self._utterance += 1
        self._chunks, self._samples = [frame.audio], frame.audio.size
        self._last_speech, self._silence_ms = self._samples, 0.0
        self._speech_ms = min(frame.audio.size / 16.0, self.vad.min_speech_ms)
        self._drop_speculative()
        self._start_t = frame.t
        self._last_partial_at = time.perf_counter()
        await self.push(await self.judge.start(frame))  # at once: drives barge-in (or starts judging it)

    async def _after_early_end(self, frame: SpeechAudio) -> None:
        """Audio after a turn ended early: ignored unless the caller really goes on talking."""
        if self._resumed:
            self._on_audio(frame)
            return
        self._chunks.append(frame.pcm)
        self._speech_ms = self._speech_ms + frame.pcm.size / 16.0 if frame.speech else 0.0
        if self._speech_ms >= max(self.vad.min_speech_ms, 1):
            self._resumed = True
            onset = np.concatenate(self._chunks[-(int(self._speech_ms / 32.0) + 4) :])  # + ~100 ms before
            await self._start(SpeechStarted(t=frame.t - onset.size / 16000, audio=onset))
        elif len(self._chunks) > 16:
            self._chunks = self._chunks[-16:]

    def _own_end(self, ended: SpeechEnded) -> SpeechEnded:
        """The endpointer's end, cut to the utterance this stage started after an early turn end."""
        audio = np.concatenate(self._chunks)[: self._last_speech + int(KEEP_TAIL_MS * 16)]
        return SpeechEnded(
            t=ended.t,
            speech_end_t=ended.speech_end_t,
            audio=audio,
            speech_ms=self._speech_ms,
            forced=ended.forced,
        )

    def _turn_over(self) -> bool:
        """Whether the caller's turn is over now, before the endpointer's own (longer) end.

        Deciding (`turn.decide`): once the speculative decode (and the audio model) are in, the turn needs
        the pause `decide` gives; until then, the plain pause (`vad.end_silence_ms`, or the context's).
        With a fixed timer instead, only a number slot ends sooner: while the dialogue waits out a longer
        pause for a number, the turn is over after the usual pause once a hypothesis already reads as a
        whole number of the slot.
        """
        spec = self._speculative
        ready = spec is not None and spec.ready()
        if self.decide:
            context_ms = self.context.end_silence_ms if self.context is not None else None
            fallback = context_ms or self.vad.end_silence_ms
            verdict = self._verdict() if ready else None
            return self._silence_ms >= (verdict.pause_ms if verdict is not None else fallback)
        if not ready or spec is None or self._speech_ms < self.config.min_speech_ms:
            return False
        heard = spec.heard.result()
        fits = self._number_fits()
        return (
            fits is not None
            and self._silence_ms >= self.vad.end_silence_ms
            and any(map(fits, [heard.text, *heard.alternatives]))
        )

    def _verdict(self) -> Verdict:
        """`decide` on the speculative decode in hand (once per decode: it does not change)."""
        spec = self._speculative
        assert spec is not None
        if spec.verdict is None:
            heard = spec.heard.result()
            audio_p = spec.audio_p.result() if spec.audio_p is not None else None
            if self._speech_ms < self.config.min_speech_ms:  # a click or a breath: the ASR rejects it anyway
                spec.verdict = Verdict(self.vad.end_silence_ms, "too short")
            else:
                spec.verdict = decide(
                    heard.text, self.context, self.turn, self.vad.end_silence_ms, heard.alternatives, audio_p
                )
        return spec.verdict

    def _number_fits(self) -> Callable[[str], bool] | None:
        """The slot grammar's test while the context holds the turn open longer than usual, else None."""
        context = self.context
        if context is None or (context.end_silence_ms or 0) <= self.vad.end_silence_ms:
            return None
        return listening_plan(context, 1)[1].fits

    def _speculate(self) -> _Decode:
        """The speculative final decode at a pause, and beside it (deciding) the audio model."""
        audio = to_float(np.concatenate(self._chunks))  # the whole utterance so far: one copy for both
        audio_p = None
        if self.smart_turn is not None and self._speech_ms >= self.config.min_speech_ms:
            audio_p = in_pool(self.executor, self.smart_turn.probability, audio)
        prompt, hints = listening_plan(self.context, self.config.slot_hypotheses)
        quick = in_pool(self.executor, self.asr.transcribe, audio, prompt, QUICK)
        final = asyncio.ensure_future(self._complete(quick, audio, prompt, hints))
        heard = final if hints.vocabulary else quick  # a number's verdict reads every reading of it
        return _Decode(self._samples, quick, final, heard, audio_p)

    async def _complete(
        self,
        quick: asyncio.Future[Transcription],
        audio: npt.NDArray[np.float32],
        prompt: str | None,
        hints: DecodeHints,
    ) -> Transcription:
        """The transcript of a pause: the quick reading, or the full decode under `hints` where it needs one
        (the backend kept the encoder's output: this runs the decoder only)."""
        heard = await asyncio.shield(quick)  # dropping the speculation must not cancel what others watch
        if settles(heard, hints):
            return heard
        return await in_pool(self.executor, self.asr.transcribe, audio, prompt, hints)

    def _drop_speculative(self) -> None:
        if self._speculative is not None:
            self._speculative.drop()
        self._speculative = None

    def _decode(self, samples: int, quick: bool = False) -> asyncio.Future[Transcription]:
        """A decode of the utterance's first `samples`: the full one under the listening context, or (a
        partial transcript, a barge-in probe) `quick`."""
        prompt, hints = listening_plan(self.context, self.config.slot_hypotheses)
        audio = to_float(np.concatenate(self._chunks)[:samples])
        return in_pool(self.executor, self.asr.transcribe, audio, prompt, QUICK if quick else hints)

    def _on_audio(self, frame: SpeechAudio) -> None:
        self._chunks.append(frame.pcm)
        self._samples += frame.pcm.size
        if frame.speech:
            self._last_speech, self._silence_ms = self._samples, 0.0
            self._speech_ms += frame.pcm.size / 16.0
            self._drop_speculative()
        else:
            self._silence_ms += frame.pcm.size / 16.0
        if self.live and self._turn_over():
            self._ended_early, self._resumed = True, False
            speech_end_t = frame.t - self._silence_ms / 1000.0
            ended = SpeechEnded(frame.t, speech_end_t, audio=frame.pcm, speech_ms=self._speech_ms)
            self._finalise(ended, early=True)
            self._chunks, self._speech_ms = [], 0.0
            return
        if self._speculative is None and self._silence_ms >= self.turn.speculate_after_ms:
            self._speculative = self._speculate()
            self.judge.watch(self._speculative.task, probe=False)
            return
        due = (time.perf_counter() - self._last_partial_at) * 1000 >= self.config.partial_interval_ms
        idle = getattr(self.executor, "busy", 0) == 0
        if (
            self.partials
            and frame.speech
            and due
            and idle
            and (self._partial is None or self._partial.done())
        ):
            self._last_partial_at = time.perf_counter()
            self._partial = asyncio.create_task(
                self._emit_partial(self._utterance, self._decode(self._samples, quick=True))
            )

    async def _emit_partial(self, utterance: int, pending: asyncio.Future[Transcription]) -> None:
        result = await pending
        if result.text and utterance == self._utterance and self._speculative is None:
            await self.push(PartialTranscript(text=result.text, t=self._samples / 16000))

    def _finalise(self, ended: SpeechEnded, early: bool = False) -> None:
        spec = self._speculative
        reuse = spec is not None and spec.samples >= self._last_speech and not ended.forced
        kept = spec if reuse else None
        pending = kept.final if kept is not None else None
        if spec is not None and kept is None:
            spec.drop()
        verdict, audio_p = (kept.verdict, kept.audio_p) if kept is not None else (None, None)
        if pending is None and ended.speech_ms >= self.config.min_speech_ms:
            self._chunks = [ended.audio]
            pending = self._decode(ended.audio.size)
        self._speculative, self._chunks = None, []
        context, self.context = self.context, None  # it was for this utterance only
        heard = self.judge.take()  # said over the bot: maybe a backchannel, to be dropped
        speech_end = ended.decided_at - (ended.t - ended.speech_end_t)
        speech_start = ended.decided_at - (ended.t - self._start_t)

        async def job() -> None:
            if pending is None:
                result = judge(Transcription(text=""), self.config, speech_ms=ended.speech_ms)
            else:
                result = unclear(await pending, ended.speech_ms, self.config)
            if await self.judge.settle(heard, result.text):
                self.context = self.context or context  # no turn: the context is for the next one still
                return
            details = result.as_dict() | {"speculative": reuse, "speech_ms": round(ended.speech_ms, 1)}
            details["turn_end"] = "early" if early else "silence"
            if verdict is not None:  # why the turn ended after the pause it did
                details["turn_reason"], details["turn_pause_ms"] = verdict.reason, verdict.pause_ms
            if audio_p is not None and audio_p.done() and not audio_p.exception():
                details["turn_audio_p"] = round(audio_p.result(), 3)
            times = SpeechTimes(
                speech_start=min(speech_start, speech_end),
                speech_end=speech_end,
                turn_decision=ended.decided_at,
                final=time.perf_counter(),
                decode_ms=result.decode_ms,
            )
            confidence = round(math.exp(result.avg_logprob), 4) if result.text else None
            final = FinalTranscript(
                text=result.text,
                t=ended.t,
                details=details,
                times=times,
                confidence=confidence,
                nbest=tuple(result.alternatives),
                context=context,
            )
            await self.push(final)

        self.work.submit(job, keep=True)

    async def stop(self) -> None:
        self.judge.close()
        await super().stop()
