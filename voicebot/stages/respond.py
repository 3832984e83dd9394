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

A turn the brain is slow on (an action, the back end) is not waited out in silence: past `hold.after_ms` the
brain stage sends `HoldOn`, and the speak stage plays the filler and hold audio (`voicebot.stages.hold`)
until the answer's first audio is ready, a barge-in cuts it, or `HoldOff` says no answer comes. A caller who
talked over the hold and still waits is put back on hold once their words are in (their turn is answered
after the one the brain is working on).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from voicebot.audio import split_frames
from voicebot.brain import Brain, HasFiller, is_brain_input
from voicebot.config import HoldConfig
from voicebot.frames import (
    PCM,
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
    HoldEnd,
    HoldOff,
    HoldOn,
    NoInput,
    PlaybackReport,
)
from voicebot.playback import AudioSink, Pace, Playout
from voicebot.stages.base import Stage, in_pool
from voicebot.stages.hold import HoldLine
from voicebot.tts import CachedTTS, split_sentences


class BrainStage(Stage):
    """Hands caller events to the brain; sends its replies on and its listening context back."""

    name = "brain"

    def __init__(self, brain: Brain, live: bool = False, hold: HoldConfig | None = None) -> None:
        """`hold`: keep a caller company through a slow turn (live calls only: offline nobody waits)."""
        super().__init__()
        self.brain = brain
        self.live = live
        self.hold = hold if live and hold is not None and hold.enabled else None
        self._held: HoldOn | None = None  # sent for the turn the brain is still working on
        self._silence: asyncio.Task[None] | None = None

    @property
    def filler(self) -> str:
        """What the bot says when a turn is slow: the domain's own words, else `hold.filler`."""
        own = self.brain.filler() if isinstance(self.brain, HasFiller) else None
        return own or (self.hold or HoldConfig()).filler

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
            if isinstance(frame, FinalTranscript) and self._held is not None:
                await self.push(self._held)  # the caller talked over the hold and still waits: back on it
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
        reply = await self._think(frame, started)
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

    async def _think(self, frame: Frame, started: float) -> BotReply | None:
        """The brain's reply to `frame`. Slower than `hold.after_ms`, the caller is kept company meanwhile:
        `HoldOn` now; the reply stops the hold, or `HoldOff` when there is none (or the brain failed)."""
        work = asyncio.ensure_future(self.brain.handle(frame))  # type: ignore[arg-type]
        if self.hold is None or isinstance(frame, HangUp):
            return await work
        try:
            done, _ = await asyncio.wait({work}, timeout=self.hold.after_ms / 1000.0)
        except asyncio.CancelledError:
            work.cancel()
            raise
        if done:
            return work.result()
        self._held = HoldOn(text=self.filler, since=started)
        await self.push(self._held)
        reply: BotReply | None = None
        try:
            reply = await work
        finally:
            self._held = None
            if reply is None:
                await self.push(HoldOff())
        return reply


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
        hold: HoldConfig | None = None,
    ) -> None:
        super().__init__()
        self.tts, self.sink, self.executor = tts, sink, executor
        self.rate, self.frame_ms, self.barge_in = rate, frame_ms, barge_in
        self.send_ahead_ms = send_ahead_ms
        self.pace = Pace(frame_ms, send_ahead_ms, paced)
        self.hold_config = hold or HoldConfig()
        self._hold: HoldLine | None = None  # the caller is on hold now
        self._reply_id = 0
        self._playing: asyncio.Task[None] | None = None
        self._current: BotReply | None = None
        self._line_gone = False  # the caller hung up: replies still coming are recorded, not played
        self.ended = False

    @property
    def paced(self) -> bool:
        return self.pace.paced

    @paced.setter
    def paced(self, value: bool) -> None:
        """The conversation runner paces only the replies a caller barges in on, switching between turns:
        the sending follows the switch (a `Pace` made once would keep sending a cut reply unpaced)."""
        self.pace = Pace(self.frame_ms, self.send_ahead_ms, value)

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, BotReply):
            self.after(frame, lambda: self._play(frame))
        elif isinstance(frame, HoldOn):
            self.after(frame, lambda: self._hold_on(frame))
        elif isinstance(frame, HoldOff):
            self.after(frame, lambda: self._hold_off("no_answer"))
        elif isinstance(frame, HangUp):
            self._line_gone = True
            await self.pass_on(frame, direction)
            await self._stop_playing()
            await self._hold_off("hang_up")
        elif isinstance(frame, EndOfStream):
            self.after(frame, lambda: self._end(frame.reason, ()))
        else:
            await self.pass_on(frame, direction)

    def interruptible(self) -> bool:
        current = self._current
        if current is None:  # on hold, or nothing playing
            return self.barge_in and self._hold is not None
        return self.barge_in and current.interruptible

    async def interrupt(self) -> None:
        await super().interrupt()  # replies queued behind the interrupted one are stale now
        await self._stop_playing()
        await self._hold_off("barge_in")

    async def _hold_on(self, frame: HoldOn) -> None:
        """Put the caller on hold, unless the line is not silent: the answer (or anything else to play)
        already waits behind this job, or the call is over. Offline nobody waits: no hold."""
        if self.ended or self._line_gone or not self.paced or self._hold is not None or self.work.queued:
            return
        self._reply_id += 1
        voice = in_pool(self.executor, self.tts.synthesize_at, frame.text, self.rate)
        self._hold = HoldLine(frame, self._reply_id, self.sink, self.pace, self.rate, voice, self.hold_config)
        # the listener judges caller speech over the hold as over a reply: "okay" lets it play on
        await self.push(BotSpeaking(True, self._reply_id), Direction.UPSTREAM)

    async def _hold_off(self, ended: HoldEnd) -> None:
        """Take the caller off hold (if on it) and report what they heard of it."""
        hold, self._hold = self._hold, None
        if hold is not None:
            report = await hold.stop(ended)
            if ended != "answer":  # else the answer speaks now (its own `BotSpeaking` went up already)
                await self.push(BotSpeaking(False, report.reply_id), Direction.UPSTREAM)
            await self.push(report)

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
        if not speaking:
            await self._hold_off("no_answer")  # nothing to say after all (a stream stops it at its audio)
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
        upcoming: asyncio.Future[PCM] = in_pool(
            self.executor, self.tts.synthesize_at, sentences[0], self.rate
        )
        for index, sentence in enumerate(sentences):
            pcm = await upcoming
            if index == 0:
                await self._hold_off("answer")  # the answer is ready: off hold, straight into it
            if index + 1 < len(sentences):  # make the next sentence while this one plays
                upcoming = in_pool(self.executor, self.tts.synthesize_at, sentences[index + 1], self.rate)
            frames = split_frames(pcm, self.rate, self.frame_ms)
            playout.sentences.append((sentence, playout.sent_ms, len(frames) * self.frame_ms))
            for n, chunk in enumerate(frames):
                last = index + 1 == len(sentences) and n + 1 == len(frames)
                await playout.send(self.sink, chunk, sentence, self.pace, last)

    async def _end(self, reason: str, actions: tuple[Any, ...]) -> None:
        await self._hold_off("call_ended")
        if not self.ended:
            self.ended = True
            await self.push(CallEnded(reason=reason, actions=actions))
