"""Hold and thinking audio: what a caller hears while the brain works on a slow turn.

The brain stage sends `HoldOn` once a caller turn has taken the brain `hold.after_ms` (a slow action, a back
end that keeps it waiting). The speak stage then starts a `HoldLine`, which plays, as one playout of its own
on the transport (its own reply id, so marks and the playback clock work as for any reply): the filler
("One moment while I look that up.", a fixed prompt the TTS cache already holds), `hold.music_gap_ms` of
quiet, then `hold_audio` looped. The answer stops it the moment its first audio is synthesised, so the
caller goes from the hold straight into the answer (the transport's `clear` drops the hold audio sent
ahead); a barge-in, a hang-up or `HoldOff` (the brain had nothing to say) stop it too. Only an answer that
comes while the filler is being said lets it go on to the next pause between its words (a 20 ms frame under
`WORD_GAP_DBFS`), at most `hold.word_end_ms`: "One moment while I—" is a person stopping to answer, "One
mo—" is a line breaking up. What it played comes out as a `HoldReport` (how much of the filler the caller's
side played and which words, how much hold audio, how long the wait), which the turn record of the next
reply carries.

The hold audio is made here, no media file: a slow four-note chime (C5 E5 G5 E5, each note a soft bell
with two quiet overtones, ringing into the next) over a quiet G4 + C5 pad that swells once a loop, all
inside the telephone band (300-3400 Hz, ITU-T G.712), 4 s that loop without a seam, at `hold.level_dbfs`
RMS. The pad keeps every 20 ms of it audible: no stretch of it reads as a dead line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from functools import lru_cache

import numpy as np

from voicebot.audio import split_frames
from voicebot.config import HoldConfig
from voicebot.frames import PCM, HoldEnd, HoldOn, HoldReport
from voicebot.playback import AudioSink, Pace, Playout

log = logging.getLogger(__name__)
LOOP_S = 4  # whole seconds and whole-hertz tones: every tone ends a loop on a whole cycle, no seam
NOTES_HZ = (523, 659, 784, 659)  # C5 E5 G5 E5, one a second
OVERTONES = ((2, 0.25), (3, 0.08))  # a bell's: multiple of the note, level (3 x 784 Hz is still in band)
PAD_HZ = (392, 523)  # G4 + C5
PAD_LEVEL = 0.2  # each pad tone against a note's fundamental
ATTACK_S, DECAY_S = 0.012, 0.55  # soft onset, then the note fades into the next one
WORD_GAP_DBFS = -40.0  # a filler frame this quiet is a pause between words (speech runs ~-20 dBFS)


@lru_cache(maxsize=8)
def hold_audio(rate: int, level_dbfs: float) -> PCM:
    """One loop of hold audio at `rate`, `level_dbfs` RMS (read-only: it is shared by every call)."""
    n = LOOP_S * rate
    t = np.arange(2 * n) / rate  # two loops long: what rings past the loop's end folds back to its start
    wave = np.zeros(2 * n)
    for i, freq in enumerate(NOTES_HZ):
        start = i * n // len(NOTES_HZ)
        since = t[: 2 * n - start]
        envelope = (1.0 - np.exp(-since / ATTACK_S)) * np.exp(-since / DECAY_S)
        bell = np.sin(2 * np.pi * freq * since)
        for multiple, level in OVERTONES:
            bell += level * np.sin(2 * np.pi * freq * multiple * since)
        wave[start:] += envelope * bell
    loop = wave[:n] + wave[n:]  # the steady state: each loop starts while the last one's notes still ring
    swell = 1.0 + 0.3 * np.sin(2 * np.pi * t[:n] / LOOP_S)
    loop += PAD_LEVEL * swell * sum(np.sin(2 * np.pi * freq * t[:n]) for freq in PAD_HZ)
    loop *= 10.0 ** (level_dbfs / 20.0) / float(np.sqrt(np.mean(loop**2)))
    pcm = np.round(loop * 32767.0).astype(np.int16)
    pcm.setflags(write=False)
    return pcm


def _quiet(pcm: PCM) -> bool:
    level = float(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)))
    return bool(level < 10.0 ** (WORD_GAP_DBFS / 20.0))


class HoldLine:
    """One wait on the line, playing from creation until `stop`: the filler, a short quiet, hold audio."""

    def __init__(
        self,
        frame: HoldOn,
        reply_id: int,
        sink: AudioSink,
        pace: Pace,
        rate: int,
        voice: Awaitable[PCM],
        config: HoldConfig,
    ) -> None:
        """`voice`: the filler's audio at `rate` (a cache hit, normally)."""
        self.frame, self.sink, self.pace, self.rate, self.config = frame, sink, pace, rate, config
        self.playout = Playout(reply_id, frame.text)
        self.filler_ms = 0.0  # known once the filler's audio is
        self._in_filler = False  # its frames are being sent now
        self._answered: float | None = None  # when the answer was ready, if during the filler
        self._paused = False  # the filler stopped at a pause between its words
        self._task = asyncio.create_task(self._play(voice), name="hold")

    async def _play(self, voice: Awaitable[PCM]) -> None:
        text, frame_ms = self.frame.text, self.pace.frame_ms
        try:
            filler = split_frames(await voice, self.rate, frame_ms)
        except Exception:  # a voice that cannot say the filler still leaves the hold audio
            log.exception("the hold filler %r could not be synthesised", text)
            filler = []
        self.filler_ms = float(len(filler) * frame_ms)
        self.playout.sentences.append((text, 0.0, self.filler_ms))
        self._in_filler = True
        for chunk in filler:
            await self.playout.send(self.sink, chunk, text, self.pace)
            if self._answered is not None:  # the answer is ready: the filler ends at a pause, or now
                self._paused = _quiet(chunk)
                if self._paused or self._late():
                    return
        self._in_filler = False
        if self._answered is not None:  # it came during the last word: the filler is said, all of it
            self._paused = True
            return
        quiet = np.zeros(len(filler[0]) if filler else self.rate * frame_ms // 1000, np.int16)
        for _ in range(self.config.music_gap_ms // frame_ms):  # sent, not left out: the clock stays true
            await self.playout.send(self.sink, quiet, "", self.pace)
        loop = split_frames(hold_audio(self.rate, self.config.level_dbfs), self.rate, frame_ms)
        while True:
            for chunk in loop:
                await self.playout.send(self.sink, chunk, "", self.pace)

    def _late(self) -> bool:
        answered = self._answered
        return answered is not None and time.perf_counter() - answered >= self.config.word_end_ms / 1000.0

    async def stop(self, ended: HoldEnd) -> HoldReport:
        """Stop, at once or (the answer is ready mid-filler) at the filler's next pause, and say what the
        caller's side played (the transport's word, as for a cut reply); audio sent ahead is dropped."""
        try:
            if ended == "answer" and self._in_filler and self.config.word_end_ms and not self._task.done():
                self._answered = time.perf_counter()
                await asyncio.wait({self._task}, timeout=self.config.word_end_ms / 1000.0 + 0.1)
                if self._paused and self.pace.paced:  # what was sent plays out before the answer
                    clock = self.playout.clock_ms(time.perf_counter())
                    await asyncio.sleep(max(0.0, self.playout.sent_ms - clock) / 1000.0)
        finally:  # a barge-in meanwhile cancels the answer, and this wait with it: the hold stops anyway
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        now = time.perf_counter()
        played = self.playout.report(self.sink, interrupted=True, paced=self.pace.paced)
        if played.played_ms < self.playout.sent_ms:
            await self.sink.clear()
        sent_at, since = self.playout.sent_at, self.frame.since
        return HoldReport(
            reply_id=self.playout.reply_id,
            filler=self.frame.text,
            filler_heard=played.heard,
            filler_ms=min(played.played_ms, self.filler_ms),
            hold_audio_ms=round(max(0.0, played.played_ms - self.filler_ms - self.config.music_gap_ms), 1),
            started_ms=round((sent_at - since) * 1000.0, 1) if sent_at is not None else None,
            waited_ms=round((now - since) * 1000.0, 1),
            ended=ended,
        )
