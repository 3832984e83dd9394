"""Call audio for the records: both sides on one timeline, as the caller experienced the call.

Caller audio arrives continuously, so its track is just the frames in order. Bot audio is placed at the
moment it was sent (the speak stage paces it in real time), back to back, which keeps pauses and barge-ins
where they happened; what was sent ahead and dropped by a barge-in's clear is taken off again, as the caller
never heard it. Only kept when `server.recordings_dir` is set: recordings hold the caller's unmasked voice.
`TappedSink` and the call's `taps` let a listener (the console's listen-in) hear both sides as they pass.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from voicebot.frames import PCM, BotAudio
from voicebot.playback import AudioSink


class CallRecorder:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._caller: list[PCM] = []
        self._bot: list[tuple[int, PCM]] = []  # (start sample, frame)

    def caller(self, pcm: PCM) -> None:
        self._caller.append(pcm.copy())

    def bot(self, pcm: PCM) -> None:
        at = int((time.monotonic() - self._start) * self.rate)
        if self._bot:  # frames sent back to back stay back to back, never overlap
            last_at, last = self._bot[-1]
            at = max(at, last_at + last.size)
        self._bot.append((at, pcm.copy()))

    def cleared(self) -> None:
        """Barge-in: frames that were still to play (sent ahead) were dropped on the way; so here too."""
        now = int((time.monotonic() - self._start) * self.rate)
        while self._bot and self._bot[-1][0] >= now:
            self._bot.pop()
        if self._bot and (at := self._bot[-1][0]) + self._bot[-1][1].size > now:
            self._bot[-1] = (at, self._bot[-1][1][: now - at])

    def tracks(self) -> tuple[PCM, PCM]:
        caller = np.concatenate(self._caller) if self._caller else np.zeros(0, np.int16)
        end = max([caller.size] + [at + pcm.size for at, pcm in self._bot])
        bot = np.zeros(end, np.int16)
        for at, pcm in self._bot:
            bot[at : at + pcm.size] = pcm
        return np.pad(caller, (0, end - caller.size)), bot


class RecordingSink:
    """Wraps a transport's sink: the bot's frames go on the recording, then on to the caller."""

    def __init__(self, sink: AudioSink, recorder: CallRecorder) -> None:
        self.sink, self.recorder = sink, recorder

    async def play(self, frame: BotAudio) -> None:
        self.recorder.bot(frame.pcm)
        await self.sink.play(frame)

    async def clear(self) -> None:
        self.recorder.cleared()
        await self.sink.clear()

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        return self.sink.played_ms(reply_id, clock_ms)


class AudioTap(Protocol):
    """Something that hears a live call's audio as it passes (the console's listen-in): both methods are
    called on the call's audio path, so they must return at once (queue, never wait)."""

    def caller(self, pcm: PCM) -> None: ...

    def bot(self, pcm: PCM) -> None: ...


class TappedSink:
    """Wraps a call's sink: the bot's frames go to the call's taps (none, mostly), then on to the caller."""

    def __init__(self, sink: AudioSink, taps: list[AudioTap]) -> None:
        self.sink, self.taps = sink, taps

    async def play(self, frame: BotAudio) -> None:
        for tap in self.taps:
            tap.bot(frame.pcm)
        await self.sink.play(frame)

    async def clear(self) -> None:
        await self.sink.clear()

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        return self.sink.played_ms(reply_id, clock_ms)
