"""What the caller heard: the transport's sink interface, the playout of one reply, and its report.

The speak stage sends a reply's audio to the transport's `AudioSink` a little ahead of the caller's playback
(the jitter buffer on their side). How much of it the caller actually heard when it stopped is the
transport's to say: Twilio echoes a mark after each sentence, AudioSocket paces its own frames onto the line,
the browser page and a file know only the clock. `Playout` keeps the reply's sentences and clock, asks the
sink, and makes the one `PlaybackReport` the brain, the barge-in handling and the call record all use.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from voicebot.frames import PCM, BotAudio, PlaybackReport


class AudioSink(Protocol):
    """What a transport (Twilio, AudioSocket, browser, file) implements to play the bot's voice."""

    async def play(self, frame: BotAudio) -> None:
        """Bot audio out to the caller (one transport frame)."""
        ...

    async def clear(self) -> None:
        """Barge-in: drop whatever audio is buffered on the way to the caller."""
        ...

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        """How much of reply `reply_id` the caller's side has played. `clock_ms` is the speak stage's
        estimate (time since the reply's first frame, never more than was sent); a transport that knows
        better (marks echoed, frames paced onto the line) says so, else returns it."""
        ...


@dataclass(frozen=True)
class Pace:
    """How the speak stage sends frames: `frame_ms` each; on `paced` (live) calls each one once the
    caller has heard all but `ahead_ms` of what went before (the jitter buffer on their side), offline as
    fast as the sink takes them."""

    frame_ms: int
    ahead_ms: float
    paced: bool


@dataclass
class Playout:
    """One reply on its way to the caller: its sentences and clock, from its first frame on."""

    reply_id: int
    text: str
    started_at: float = field(default_factory=time.perf_counter)  # the speak stage took it up
    synthesized_at: float | None = None  # its first audio was ready: the caller's clock starts here
    sent_at: float | None = None  # its first frame went out to the line
    sent_ms: float = 0.0
    sentences: list[tuple[str, float, float]] = field(default_factory=list)  # (text, start ms, length ms)

    def clock_ms(self, now: float | None) -> float:
        """Time since the first frame (`time.perf_counter()` `now`), never more than was sent; `now=None`:
        offline, where everything sent counts as played."""
        if self.synthesized_at is None:
            return 0.0
        return self.sent_ms if now is None else min(self.sent_ms, (now - self.synthesized_at) * 1000.0)

    async def send(self, sink: AudioSink, pcm: PCM, sentence: str, pace: Pace, last: bool = False) -> None:
        """One frame out to the caller, then, live, wait until the next one is due. The first frame starts
        the caller's clock (`synthesized_at`) and stamps `sent_at`."""
        if self.synthesized_at is None:
            self.synthesized_at = time.perf_counter()
        await sink.play(BotAudio(pcm=pcm, sentence=sentence, reply_id=self.reply_id, last=last))
        if self.sent_at is None:
            self.sent_at = time.perf_counter()
        self.sent_ms += pace.frame_ms
        if pace.paced:
            delay = self.synthesized_at + (self.sent_ms - pace.ahead_ms) / 1000.0 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

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

    def report(self, sink: AudioSink, interrupted: bool, paced: bool) -> PlaybackReport:
        """The reply stopped: finished (everything sent counts, the transport's buffer plays the rest) or
        cut (as far as the transport says the caller got)."""
        if interrupted:
            clock = self.clock_ms(time.perf_counter() if paced else None)
            played = round(min(max(sink.played_ms(self.reply_id, clock), 0.0), self.sent_ms), 1)
            heard = self.heard(played)
        else:
            played, heard = self.sent_ms, self.text
        return PlaybackReport(
            reply_id=self.reply_id,
            text=self.text,
            played_ms=played,
            interrupted=interrupted,
            heard=heard,
            started_at=self.started_at,
            synthesized_at=self.synthesized_at,
            sent_at=self.sent_at,
        )
