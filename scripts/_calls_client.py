"""The caller side of the capacity benchmark: a Twilio Media Streams peer that plays a conversation.

The wire is `voicebot.testing.twilio.TwilioStream` (written from Twilio's "Media Streams — WebSocket
Messages" reference), so the server sees what a real Twilio stream sends: `connected`, `start`
(audio/x-mulaw 8000 Hz), 20 ms `media` frames paced in real time for the whole call (silence when the
caller is not talking, as Twilio streams the line, not the voice), each `mark` echoed once the audio before
it would have played, `clear` dropping the playout buffer (and echoing the marks still in it), `stop` when
the caller hangs up. No permessage-deflate: Twilio does not use it, and compressing would charge both sides
CPU that a real deployment never spends.

The caller also behaves like a person: it lets the bot finish (its reply's final mark, or 600 ms without
bot audio), waits a human 400–800 ms, then speaks; a barge-in line starts a set time into the bot's reply.
Everything is timestamped on the event loop's clock; `turn_rows` turns a finished `CallLog` into the
per-turn measures afterwards, so the live path does no more work than a real peer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import websockets

from voicebot.audio import split_frames
from voicebot.frames import PCM
from voicebot.testing.twilio import FRAME_S, RATE, SILENCE, TwilioStream, payload

QUIET_S = 0.6  # no bot audio this long after its last frame: the reply is over
MARK_END_S = 0.1  # a mark with no audio after it this long was the reply's final mark
GAP_S = 0.04  # from one frame's playback start to the next's, inside one reply: over it is an underrun
REPLY_WAIT_S = 20.0  # longest wait for the bot to start answering
CLOSE_WAIT_S = 8.0  # after the last reply, how long the bot may take to hang up
PAUSE_S = (0.4, 0.8)  # a person's pause before answering


@dataclass(frozen=True)
class Line:
    """One caller line; `barge_after_s`: spoken this long into the bot's reply instead of after it."""

    text: str
    barge_after_s: float | None = None


@dataclass(frozen=True)
class Script:
    name: str
    lines: tuple[Line, ...]


SCRIPTS: tuple[Script, ...] = (
    Script("track", (Line("Hi, where is my order?"), Line("It's eight three oh one one two."),
                     Line("No, that's all, thanks."))),
    Script("cancel", (Line("I'd like to cancel order four five seven two one nine."), Line("Yes, please."),
                      Line("No thanks, goodbye."))),
    Script("refund", (Line("I want a refund for order nine three two zero one seven."), Line("Yes."),
                      Line("That's all, bye."))),
    Script("faq+agent", (Line("What delivery options do you have?"),
                         Line("Sorry, can I talk to a person?", barge_after_s=1.5))),
)  # fmt: skip


def speech_frames(pcm: PCM) -> list[str]:
    """A caller clip as base64 μ-law 20 ms payloads, cut to its speech (±35 dB of the loudest 10 ms), so
    the first payload holds the speech onset and the last one the final speech sample."""
    step = RATE // 100
    frames = pcm[: pcm.size // step * step].astype(np.float64).reshape(-1, step)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-9)
    loud = np.nonzero(db > db.max() - 35)[0]
    speech = pcm[loud[0] * step : (loud[-1] + 1) * step]
    return [payload(f) for f in split_frames(speech, RATE)]


@dataclass
class Said:
    """One caller line as it went out: loop times of its first and last speech frame."""

    index: int
    text: str
    barge_planned: bool
    onset: float = float("nan")
    end: float = float("nan")
    bot_speaking: bool = False  # bot audio was still playing when the line started


@dataclass
class CallLog:
    """Everything one call saw, on the event loop's clock (`wall0` + loop time = Unix time)."""

    caller: int
    round: int
    script: str
    call_sid: str
    wall0: float = 0.0
    started: float = float("nan")
    media: list[float] = field(default_factory=list)  # arrival time of each bot frame
    play_at: list[float] = field(default_factory=list)  # when each frame starts playing (buffered playback)
    sentence_no: list[int] = field(default_factory=list)  # marks received before each frame
    groups: list[str] = field(default_factory=list)  # reply of each frame ("r3"), from the mark after it
    marks: list[tuple[float, str]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    said: list[Said] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # how late each caller frame went out (s)
    stalls: list[tuple[float, float]] = field(default_factory=list)  # when our own loop fell behind
    bad_media: int = 0
    closed_at: float | None = None
    close: str = ""
    ended_by: str = ""
    error: str | None = None


class Caller(TwilioStream):
    """One Twilio stream playing `script`; `run()` returns its `CallLog`. `close_wait_s`: how long it waits
    after the bot's last reply for the bot to hang up (less for a peer bot that never does)."""

    close_wait_s = CLOSE_WAIT_S

    def __init__(self, url: str, script: Script, clips: dict[str, list[str]], log: CallLog, seed: str):
        super().__init__(None, "MZ" + log.call_sid[2:], log.call_sid)
        self.url, self.script, self.clips, self.log = url, script, clips, log
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.talk: deque[tuple[str, int, int]] = deque()  # (payload, index, count) of the line speaking
        self.spoken = asyncio.Event()
        self.changed = asyncio.Event()  # bot speaking state or the line changed
        self.speaking = False
        self.spell_start = self.spell_end = self.last_media = float("-inf")
        self.unmarked: list[int] = []
        self.quiet_check: asyncio.TimerHandle | None = None

    async def run(self) -> CallLog:
        log = self.log
        log.wall0 = time.time() - self.loop.time()
        try:
            async with websockets.connect(self.url, compression=None, max_size=None) as ws:
                self.ws = ws
                await self.start()
                log.started = self.loop.time()
                reader = asyncio.create_task(self.read())
                pacer = asyncio.create_task(self.pace())
                try:
                    await self.converse()
                finally:
                    self.hush()
                    if self.quiet_check is not None:
                        self.quiet_check.cancel()
                    if log.closed_at is None:
                        pacer.cancel()
                        await self.stop()
                        log.ended_by = log.ended_by or "caller"
                        await ws.close()
                    for task in (reader, pacer, *self.tasks):
                        task.cancel()
                    await asyncio.gather(reader, pacer, *self.tasks, return_exceptions=True)
        except Exception as exc:  # a refused or broken stream is a result of the run, not a crash
            log.error = f"{type(exc).__name__}: {exc}"[:200]
            log.ended_by = "error"
        return log

    async def pace(self) -> None:
        """20 ms frames on an absolute clock, speech when the caller talks and line silence otherwise."""
        t0, n = self.loop.time(), 0
        while self.log.closed_at is None:
            media, index, count = self.talk.popleft() if self.talk else (SILENCE, -1, 0)
            await self.media(media)
            now = self.loop.time()
            if index == 0:
                self.log.said[-1].onset = now
                self.log.said[-1].bot_speaking = self.speaking or self.play_end > now
            if index >= 0 and index == count - 1:
                self.log.said[-1].end = now
                self.spoken.set()
            n += 1
            delay = t0 + n * FRAME_S - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.loop.time()
            self.log.lateness.append(now - (t0 + n * FRAME_S))
            if now - (t0 + n * FRAME_S) > FRAME_S:
                self.log.stalls.append((t0 + n * FRAME_S, now))

    async def read(self) -> None:
        try:
            await self.listen()
        finally:
            self.log.closed_at = self.loop.time()
            if self.ws.close_code is not None:
                self.log.close = f"{self.ws.close_code} {self.ws.close_reason or ''}".strip()
            self.log.ended_by = self.log.ended_by or "bot"
            self.end_spell(self.play_end)
            self.spoken.set()

    # --- what the caller hears (the playout clock and the mark echoes are `TwilioStream`'s) ---------------

    def on_media(self, now: float, media_payload: str, at: float) -> None:
        if len(media_payload) != 216:  # 160 bytes of μ-law in base64
            self.log.bad_media += 1
        self.unmarked.append(len(self.log.media))
        self.log.media.append(now)
        self.log.play_at.append(at)
        self.log.sentence_no.append(len(self.log.marks))
        self.log.groups.append("")
        self.last_media = now
        if not self.speaking:
            self.speaking, self.spell_start = True, now
            self.changed.set()
        if self.quiet_check is None:
            self.quiet_check = self.loop.call_at(now + QUIET_S, self.check_quiet)

    def check_quiet(self) -> None:
        self.quiet_check = None
        due = self.last_media + QUIET_S
        if self.speaking and self.loop.time() >= due - 0.001:
            self.end_spell(self.play_end)
        elif self.speaking:
            self.quiet_check = self.loop.call_at(due, self.check_quiet)

    def on_mark(self, now: float, name: str) -> None:
        self.log.marks.append((now, name))
        self.assign(name.split("-")[0])
        if self.speaking:
            frames = len(self.log.media)
            self.loop.call_at(now + MARK_END_S, self.check_final, frames)

    def check_final(self, frames: int) -> None:
        if self.speaking and len(self.log.media) == frames:  # no audio after the mark: the reply is over
            self.end_spell(self.play_end)

    def on_clear(self, now: float) -> None:
        self.log.clears.append(now)
        self.assign(f"cut{len(self.log.clears)}")
        self.end_spell(now)

    def assign(self, group: str) -> None:
        for i in self.unmarked:
            self.log.groups[i] = group
        self.unmarked.clear()

    def end_spell(self, at: float) -> None:
        if self.speaking:
            self.speaking, self.spell_end = False, at
        self.changed.set()

    # --- the conversation --------------------------------------------------------------------------------

    async def until(self, ready: Callable[[], bool], timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not ready() and self.log.closed_at is None:
                    self.changed.clear()
                    await self.changed.wait()
        return ready()

    async def reply_started(self, after: float) -> float | None:
        ok = await self.until(lambda: self.spell_start > after, REPLY_WAIT_S)
        return self.spell_start if ok else None

    async def reply_over(self, after: float) -> float | None:
        if await self.reply_started(after) is None:
            return None
        ok = await self.until(lambda: not self.speaking, 120.0)
        return self.spell_end if ok else None

    async def sleep_until(self, moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - self.loop.time()))

    async def converse(self) -> None:
        previous = self.log.started  # the greeting answers the call
        for index, line in enumerate(self.script.lines):
            if line.barge_after_s is None:
                ended = await self.reply_over(previous)
                await self.sleep_until((ended or self.loop.time()) + self.rng.uniform(*PAUSE_S))
            else:
                started = await self.reply_started(previous)
                await self.sleep_until((started or self.loop.time()) + line.barge_after_s)
            if self.log.closed_at is not None:
                return
            self.log.said.append(Said(index, line.text, line.barge_after_s is not None))
            frames = self.clips[line.text]
            self.spoken.clear()
            self.talk.extend((payload, i, len(frames)) for i, payload in enumerate(frames))
            await self.spoken.wait()
            previous = self.log.said[-1].end
        await self.reply_over(previous)
        await self.until(lambda: False, self.close_wait_s)  # the bot hangs up after its last words


# --- measures ---------------------------------------------------------------------------------------------


def _gaps(
    plays: list[float], groups: list[str], stalls: list[tuple[float, float]], sentences: list[int]
) -> tuple[list[float], int, int]:
    """Gaps over GAP_S between the playback starts of consecutive frames of one reply (ms): the caller's
    buffer ran dry for over a frame. A frame plays on arrival, or when the one before it has played if the
    server sent it ahead; so for a server sending in real time this is the gap between arrivals. Also how
    many overlap a stall of our own event loop by a frame or more (those may be the client's, not the
    server's), and how many fall between two sentences (a mark came in between: the next one was late)."""
    gaps, ours, between = [], 0, 0
    for a, b, ga, gb, sa, sb in zip(
        plays, plays[1:], groups, groups[1:], sentences, sentences[1:], strict=False
    ):
        if ga == gb and b - a > GAP_S:
            gaps.append(round((b - a) * 1000, 1))
            ours += any(min(b, s1) - max(a + FRAME_S, s0) >= FRAME_S for s0, s1 in stalls)
            between += sa != sb
    return gaps, ours, between


def underruns(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The underruns of `turn_rows` rows, summed: all, in our own stalls, between sentences; the worst gap."""
    return {
        "underruns": sum(r.get("gaps", 0) for r in rows),
        "underruns_client_stalled": sum(r.get("gaps_client_stalled", 0) for r in rows),
        "underruns_between_sentences": sum(r.get("gaps_between_sentences", 0) for r in rows),
        "worst_gap_ms": max((r.get("worst_gap_ms", 0.0) for r in rows), default=0.0),
    }


def turn_rows(log: CallLog, t0: float) -> list[dict[str, Any]]:
    """The greeting and each caller line as a row of measures; times in s from `t0`, latencies in ms."""
    media = np.asarray(log.media)
    end_of_call = log.closed_at if log.closed_at is not None else float("inf")
    base = {"caller": log.caller, "round": log.round, "script": log.script, "call_sid": log.call_sid}
    rows: list[dict[str, Any]] = []
    onsets = [s.onset for s in log.said] + [end_of_call]
    windows = [(log.started, None, onsets[0])] + [(s.end, s, onsets[k + 1]) for k, s in enumerate(log.said)]
    for start, said, until in windows:
        row: dict[str, Any] = base | {"line": -1 if said is None else said.index}
        row["text"] = "(greeting)" if said is None else said.text
        clear = None
        if said is not None:
            row |= {"onset_s": round(said.onset - t0, 3), "speech_end_s": round(said.end - t0, 3)}
            row |= {"barge_planned": said.barge_planned, "bot_speaking": said.bot_speaking}
            if said.bot_speaking:
                clear = next((c for c in log.clears if said.onset <= c < until), None)
        if clear is not None and said is not None:
            before = media[(media <= clear) & (media >= said.onset)]
            stop = float(before.max()) if before.size else said.onset
            row["clear_ms"] = round((clear - said.onset) * 1000, 1)
            row["media_stop_ms"] = round((stop - said.onset) * 1000, 1)
        after = max(start, clear) if clear is not None else start
        reply = np.nonzero((media > after) & (media < until))[0]
        if said is not None and said.bot_speaking and clear is None:
            reply = reply[:0]  # the bot talked on over the caller: no answer to time
        if reply.size:
            first = float(media[reply[0]])
            key = "first_audio_ms" if said is None else "v2v_ms"
            row[key] = round((first - start) * 1000, 1)
            row["reply_ms"] = round((float(media[reply[-1]]) - first + FRAME_S) * 1000, 1)
            pick = [log.play_at[i] for i in reply], [log.groups[i] for i in reply]
            gaps, ours, between = _gaps(*pick, log.stalls, [log.sentence_no[i] for i in reply])
            row |= {"gaps": len(gaps), "worst_gap_ms": max(gaps, default=0.0), "gaps_client_stalled": ours,
                    "gaps_between_sentences": between}  # fmt: skip
        row["wall_end"] = log.wall0 + (start if said is None else said.end)
        rows.append(row)
    return rows
