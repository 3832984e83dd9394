"""Deciding and speaking: the brain stage, and the speak stage that streams TTS to the transport.

The brain stage hands each caller event to the brain, sends the reply on, and before each caller turn sends
the brain's `ListeningContext` back upstream to the endpointer and the ASR. On live calls it also times
caller silence into `NoInput` events.

The speak stage synthesises sentence by sentence (the next sentence is made while the current one plays),
plays 20 ms frames to the transport's `AudioSink` paced in real time, `send_ahead_ms` ahead of the caller's
playback (or as fast as possible offline), and stops when the caller starts talking over an interruptible
reply; the transport's `clear` drops what was sent ahead. The lead is a jitter buffer on the caller's side
(Twilio's, Asterisk's queue, the browser page's): a next sentence that is a little late, or an event loop
busy for a moment, no longer puts a gap in the bot's voice. When a reply stops, its `PlaybackReport` (how
far it got, what the caller heard: `voicebot.playback`) goes upstream to the brain and downstream to the
turn record.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from voicebot.audio import split_frames
from voicebot.brain import Brain, is_brain_input
from voicebot.frames import (
    PCM,
    BotAudio,
    BotReply,
    BotSpeaking,
    CallEnded,
    Category,
    Cause,
    Direction,
    EndOfStream,
    FinalTranscript,
    Frame,
    HangUp,
    NoInput,
    PlaybackReport,
)
from voicebot.playback import AudioSink, Playout
from voicebot.stages.base import Stage, in_pool
from voicebot.tts import CachedTTS, split_sentences


class BrainStage(Stage):
    """Hands caller events to the brain; sends its replies on and its listening context back."""

    name = "brain"

    def __init__(self, brain: Brain, live: bool = False) -> None:
        super().__init__()
        self.brain = brain
        self.live = live
        self._silence: asyncio.Task[None] | None = None

    def _wait_for_caller(self) -> None:
        """Start the no-input clock (after the bot stopped talking, or after a turn that got no answer)."""
        self._stop_waiting()
        after = self.brain.no_input_s
        if self.live and after:

            async def expire() -> None:
                await asyncio.sleep(after)
                self._silence = None
                await self.put(NoInput(after_s=after))

            self._silence = asyncio.create_task(expire())

    def _stop_waiting(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None

    async def stop(self) -> None:
        self._stop_waiting()
        await super().stop()

    def greet(self, greeting: bool) -> None:
        """The call is up: the greeting (if wanted), then what the bot listens for first."""

        async def job() -> None:
            started = time.perf_counter()
            reply = self.brain.greeting() if greeting else None
            if reply is not None:
                times = replace(reply.times, started=started, decided=time.perf_counter())
                await self.push(replace(reply, cause="greeting", times=times))
            await self._listen()

        self.work.submit(job, keep=True)

    async def _listen(self) -> None:
        context = self.brain.listening_context()
        if context is not None:
            await self.push(context, Direction.UPSTREAM)

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if frame.from_caller:
            self._stop_waiting()
        if isinstance(frame, PlaybackReport):
            if frame.interrupted:
                self._stop_waiting()
            else:
                self._wait_for_caller()
            self.after(frame, lambda: self._hear(frame))
        elif is_brain_input(frame):
            self.after(frame, lambda: self._answer(frame))
            if frame.category is Category.SYSTEM:
                await self.push(frame)  # a hang-up or key press goes on at once
        else:
            await self.pass_on(frame, direction)

    async def _hear(self, report: PlaybackReport) -> None:
        reply = await self.brain.handle(report)
        if reply is not None:
            await self.push(replace(reply, times=replace(reply.times, started=time.perf_counter())))

    async def _answer(self, frame: Frame) -> None:
        started = time.perf_counter()
        reply = await self.brain.handle(frame)  # type: ignore[arg-type]
        decided = time.perf_counter()
        if frame.category is not Category.SYSTEM:
            await self.push(frame)  # observers (transcript displays) see the caller's turn before the reply
        if isinstance(frame, FinalTranscript):
            reply = reply or BotReply(text="")
            if not reply.text and not reply.actions:
                self._wait_for_caller()  # a cough or noise: the caller still owes us an answer
        if reply is not None:
            cause = _cause(frame)
            transcript = frame if isinstance(frame, FinalTranscript) else None
            times = replace(reply.times, started=started, decided=decided)
            await self.push(replace(reply, transcript=transcript, cause=cause, times=times))
        if not isinstance(frame, HangUp):
            await self._listen()  # before the caller's next turn


def _cause(frame: Frame) -> Cause:
    """What a reply answers, as the turn record names it."""
    if isinstance(frame, FinalTranscript):
        return "speech" if frame.times is not None else "text"
    if isinstance(frame, NoInput):
        return "no_input"
    return "dtmf" if frame.from_caller and not isinstance(frame, HangUp) else "event"


class SpeakStage(Stage):
    name = "speak"

    def __init__(
        self,
        tts: CachedTTS,
        sink: AudioSink,
        executor: Executor,
        rate: int,
        frame_ms: int,
        paced: bool,
        barge_in: bool,
        send_ahead_ms: float = 0.0,
    ) -> None:
        super().__init__()
        self.tts, self.sink, self.executor = tts, sink, executor
        self.rate, self.frame_ms, self.paced, self.barge_in = rate, frame_ms, paced, barge_in
        self.send_ahead_ms = send_ahead_ms
        self._reply_id = 0
        self._playing: asyncio.Task[None] | None = None
        self._current: BotReply | None = None
        self._line_gone = False  # the caller hung up: replies still coming are recorded, not played
        self.ended = False

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, BotReply):
            self.after(frame, lambda: self._play(frame))
        elif isinstance(frame, HangUp):
            self._line_gone = True
            await self.pass_on(frame, direction)
            await self._stop_playing()
        elif isinstance(frame, EndOfStream):
            self.after(frame, lambda: self._end(frame.reason, ()))
        else:
            await self.pass_on(frame, direction)

    def interruptible(self) -> bool:
        current = self._current
        return self.barge_in and current is not None and current.interruptible

    async def interrupt(self) -> None:
        await super().interrupt()  # replies queued behind the interrupted one are stale now
        await self._stop_playing()

    async def _stop_playing(self) -> None:
        task = self._playing
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _play(self, reply: BotReply) -> None:
        if self.ended:
            return
        self._reply_id += 1
        playout = Playout(self._reply_id, reply.text)
        await self.push(reply)  # observers and the turn record: this reply is starting
        interrupted = self._line_gone and bool(reply.text)
        speaking = bool(reply.text) and not self._line_gone
        if speaking:  # the listener judges caller speech over it (`voicebot.asr.bargein`)
            await self.push(BotSpeaking(True, playout.reply_id, reply.interruptible), Direction.UPSTREAM)
            self._current = reply
            self._playing = asyncio.create_task(self._stream(reply, playout))
            try:
                await asyncio.shield(self._playing)
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if not self._playing.cancelled() or (me is not None and me.cancelling()):
                    raise  # this job itself is cancelled (the call is torn down), not just its playback
                interrupted = True
            finally:
                self._current = None
        report = playout.report(self.sink, interrupted, self.paced)  # before the clear: marks still count
        if interrupted and playout.sent_ms:
            await self.sink.clear()
        if speaking:
            await self.push(BotSpeaking(False, playout.reply_id), Direction.UPSTREAM)
        if reply.text:
            await self.push(report, Direction.UPSTREAM)
        await self.push(report)
        final = [a for a in reply.actions if a.kind in ("hangup", "transfer")]
        if final and not interrupted:
            await self._end(final[0].reason or final[0].kind, tuple(final))

    async def _stream(self, reply: BotReply, playout: Playout) -> None:
        sentences = split_sentences(reply.text, quick_start=True)
        if not sentences:
            return
        ahead_s, frame_s = self.send_ahead_ms / 1000.0, self.frame_ms / 1000.0
        sent = 0
        upcoming: asyncio.Future[PCM] = in_pool(
            self.executor, self.tts.synthesize_at, sentences[0], self.rate
        )
        for index, sentence in enumerate(sentences):
            pcm = await upcoming
            if index + 1 < len(sentences):  # make the next sentence while this one plays
                upcoming = in_pool(self.executor, self.tts.synthesize_at, sentences[index + 1], self.rate)
            frames = split_frames(pcm, self.rate, self.frame_ms)
            playout.sentences.append((sentence, sent * self.frame_ms, len(frames) * self.frame_ms))
            for n, chunk in enumerate(frames):
                if sent == 0:
                    playout.synthesized_at = time.perf_counter()
                last = index + 1 == len(sentences) and n + 1 == len(frames)
                await self.sink.play(
                    BotAudio(pcm=chunk, sentence=sentence, reply_id=playout.reply_id, last=last)
                )
                if sent == 0:
                    playout.sent_at = time.perf_counter()
                sent += 1
                playout.sent_ms = sent * self.frame_ms
                if self.paced and playout.synthesized_at is not None:
                    # frame `sent` is due once the caller has heard all but `ahead_s` of what went before
                    delay = playout.synthesized_at + sent * frame_s - ahead_s - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)

    async def _end(self, reason: str, actions: tuple[Any, ...]) -> None:
        if not self.ended:
            self.ended = True
            await self.push(CallEnded(reason=reason, actions=actions))
