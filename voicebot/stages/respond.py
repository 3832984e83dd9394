"""Deciding and speaking: the brain stage, and the speak stage that streams TTS to the transport.

The speak stage synthesises sentence by sentence (the next sentence is made while the current one plays),
sends 20 ms frames to the transport's `AudioSink` paced in real time, `send_ahead_ms` ahead of the caller's
playback (or as fast as possible offline), and stops when the caller starts talking over an interruptible
reply; the transport's `clear` drops what was sent ahead. The lead is a jitter buffer on the caller's side
(Twilio's, Asterisk's queue, the browser page's): a next sentence that is a little late, or an event loop
busy for a moment, no longer puts a gap in the bot's voice. How much of the reply was actually played (the
time since its first frame, not the audio sent) goes back to the brain as a `BotStopped`, so the dialogue
history holds what the caller heard.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicebot.audio import split_frames
from voicebot.brain import Brain, is_brain_input
from voicebot.frames import (
    PCM,
    BargeIn,
    Barrier,
    BotAudio,
    BotReply,
    BotStopped,
    CallEnded,
    DTMFDigit,
    FinalTranscript,
    Frame,
    HangUp,
    NoInput,
    SpeechStarted,
    TurnDone,
)
from voicebot.stages.base import Stage, in_pool
from voicebot.tts import CachedTTS, split_sentences


class AudioSink(Protocol):
    """What a transport (Twilio, AudioSocket, browser, file) implements to play the bot's voice."""

    async def send_audio(self, frame: BotAudio) -> None: ...

    async def clear(self) -> None:
        """Barge-in: drop whatever audio is buffered on the way to the caller."""
        ...


@dataclass
class _Playout:
    """One reply as the caller hears it: from its first frame on, in real time, never past what was sent."""

    started: float | None = None  # monotonic time of the first frame
    sent_ms: float = 0.0
    sentences: list[tuple[str, float, float]] = field(default_factory=list)  # (text, start ms, length ms)

    def played_ms(self, now: float | None) -> float:
        """`now=None`: offline, where everything sent counts as played."""
        if self.started is None:
            return 0.0
        return self.sent_ms if now is None else min(self.sent_ms, (now - self.started) * 1000.0)

    def heard(self, played_ms: float) -> str:
        """Sentences fully played, then the words of the cut one in proportion to its audio played."""
        done: list[str] = []
        for text, start, length in self.sentences:
            if played_ms < start + length:
                words = text.split()
                share = max(0.0, (played_ms - start) / length) if length else 0.0
                return " ".join([*done, *words[: int(len(words) * share)]]).strip()
            done.append(text)
        return " ".join(done).strip()


class BrainStage(Stage):
    """Hands caller turns to the brain; on live calls also times caller silence into `NoInput` events."""

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

    async def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, BotStopped):
            if frame.interrupted:
                self._stop_waiting()
            else:
                self._wait_for_caller()
        elif isinstance(frame, SpeechStarted | FinalTranscript | DTMFDigit | HangUp):
            self._stop_waiting()
        if not is_brain_input(frame):
            if isinstance(frame, Barrier):
                self.after_work(frame)
            else:
                await self.emit(frame)
            return

        async def job() -> None:
            started = time.perf_counter()
            reply = await self.brain.handle(frame)  # type: ignore[arg-type]
            dialogue_ms = round((time.perf_counter() - started) * 1000.0, 2)
            if isinstance(frame, FinalTranscript):
                await self.emit(frame)  # observers (transcript displays, records) see it too
                turn = {"transcript": frame.text, "asr": frame.details}
                timings = frame.timings_ms | {"dialogue": dialogue_ms}
                reply = reply or BotReply(text="")
                if not reply.text and not reply.actions:
                    self._wait_for_caller()  # a cough or noise: the caller still owes us an answer
                await self.emit(
                    BotReply(
                        text=reply.text,
                        actions=reply.actions,
                        turn=turn | reply.turn,
                        timings_ms=timings | reply.timings_ms,
                        interruptible=reply.interruptible,
                    )
                )
            elif reply is not None:
                await self.emit(reply)
            if isinstance(frame, HangUp):
                await self.emit(frame)

        self.work.submit(job)


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
        publish: Callable[[Frame], Awaitable[None]],
        feedback: Callable[[Frame], Awaitable[None]],
        send_ahead_ms: float = 0.0,
    ) -> None:
        super().__init__()
        self.tts, self.sink, self.executor = tts, sink, executor
        self.rate, self.frame_ms, self.paced, self.barge_in = rate, frame_ms, paced, barge_in
        self.send_ahead_ms = send_ahead_ms
        self.publish, self.feedback = publish, feedback
        self._reply_id = 0
        self._playing: asyncio.Task[None] | None = None
        self._current: BotReply | None = None
        self.ended = False

    async def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, BotReply):
            self.work.submit(lambda: self._play(frame))
        elif isinstance(frame, SpeechStarted | BargeIn):
            if isinstance(frame, BargeIn) or frame.barge_in:
                await self._barge_in()
            await self.publish(frame)
        elif isinstance(frame, HangUp):
            await self._interrupt()
            self.work.submit(lambda: self._end(frame.reason, ()), keep=True)
        elif isinstance(frame, Barrier):
            self.after_work(frame)
        else:
            await self.publish(frame)

    async def emit(self, frame: Frame) -> None:  # the last stage emits to observers
        await self.publish(frame)

    async def _barge_in(self) -> None:
        current = self._current
        if not self.barge_in or current is None or not current.interruptible:
            return
        self.work.clear()  # replies queued behind the interrupted one are stale now
        await self._interrupt()

    async def _interrupt(self) -> None:
        task = self._playing
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _play(self, reply: BotReply) -> None:
        if self.ended:
            return
        self._reply_id += 1
        self._current, playout = reply, _Playout()
        self._playing = asyncio.create_task(self._stream(reply, self._reply_id, playout))
        interrupted = False
        played_ms = 0.0
        try:
            await asyncio.shield(self._playing)
            played_ms = playout.sent_ms  # played to its end (the transport's buffer still plays the lead)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not self._playing.cancelled() or (me is not None and me.cancelling()):
                raise  # this job itself is cancelled (the call is torn down), not just its playback
            interrupted = True
            played_ms = round(playout.played_ms(time.monotonic() if self.paced else None), 1)
            await self.sink.clear()
        finally:
            self._current = None
        stopped = BotStopped(
            reply_id=self._reply_id,
            interrupted=interrupted,
            played_ms=played_ms,
            heard=playout.heard(played_ms) if interrupted else reply.text,
            text=reply.text,
        )
        if reply.text:
            await self.feedback(stopped)
        record = dict(reply.turn) | {
            "reply": reply.text or None,
            "actions": [{"kind": a.kind, "target": a.target, "reason": a.reason} for a in reply.actions],
            "timings_ms": reply.timings_ms,
            "interrupted": interrupted,
            "played_ms": played_ms,
        }
        await self.publish(TurnDone(record=record))
        final = [a for a in reply.actions if a.kind in ("hangup", "transfer")]
        if final and not interrupted:
            await self._end(final[0].reason or final[0].kind, tuple(final))

    async def _stream(self, reply: BotReply, reply_id: int, playout: _Playout) -> None:
        sentences = split_sentences(reply.text, quick_start=True)
        if not sentences:
            return
        await self.publish(reply)
        started = time.perf_counter()
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
                    reply.timings_ms["tts_first_audio"] = round((time.perf_counter() - started) * 1000.0, 1)
                    playout.started = time.monotonic()
                last = index + 1 == len(sentences) and n + 1 == len(frames)
                await self.sink.send_audio(
                    BotAudio(pcm=chunk, sentence=sentence, reply_id=reply_id, last=last)
                )
                sent += 1
                playout.sent_ms = sent * self.frame_ms
                if self.paced and playout.started is not None:
                    # frame `sent` is due once the caller has heard all but `ahead_s` of what went before
                    delay = playout.started + sent * frame_s - ahead_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)

    async def _end(self, reason: str, actions: tuple[Any, ...]) -> None:
        if not self.ended:
            self.ended = True
            await self.publish(CallEnded(reason=reason, actions=actions))
