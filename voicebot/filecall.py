"""Offline calls from audio files: each file is one caller turn, through the live call's `CallPipeline`.

After a file's audio (and enough trailing silence for the endpointer) we send a `Barrier`; when it comes out
of the pipeline, everything the file caused has been answered, so a file with no speech gives a turn with an
empty transcript instead of a hang. `--fast` feeds audio and plays the bot as fast as the CPU allows;
otherwise both sides run in real time, as on a phone line.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio import frame_samples, read_audio, split_frames, write_stereo_wav, write_wav
from voicebot.brain import Brain
from voicebot.config import VADConfig
from voicebot.frames import PCM, Barrier, BotAudio, CallEnded, FinalTranscript, Frame, StageError, TurnDone
from voicebot.line import LineConfig, through_line
from voicebot.pipeline import CallPipeline, Services

TURN_FIELDS = ("intent", "confidence", "entities", "sentiment")  # filled by the NLU/dialogue stages


def with_endpoint_silence(pcm: PCM, rate: int, vad: VADConfig) -> PCM:
    """A caller turn plus enough trailing silence for the endpointer to close it (and 300 ms to spare)."""
    return np.concatenate([pcm, np.zeros(int(rate * (vad.end_silence_ms + 300) / 1000), np.int16)])


async def feed_audio(pipeline: CallPipeline, pcm: PCM, realtime: bool) -> None:
    """Caller audio into a call in transport frames: 20 ms per 20 ms like a phone line, or in bursts."""
    rate, frame_ms = pipeline.channel_rate, pipeline.services.config.pipeline.frame_ms
    step = frame_samples(rate, frame_ms)
    clock = time.monotonic()
    for n, chunk in enumerate(split_frames(pcm, rate, frame_ms)):
        await pipeline.caller_audio(chunk)
        if realtime:
            await asyncio.sleep(max(0.0, clock + (n + 1) * step / rate - time.monotonic()))
        elif n % 25 == 0:
            await asyncio.sleep(0)  # let the stages run between bursts


@dataclass
class ReplyCollector:
    """The sink of an offline call: collects the bot's audio per reply, for `--out-dir` and the stereo
    call recording. Nothing is buffered, so what was sent was played."""

    replies: dict[int, list[PCM]] = field(default_factory=dict)

    async def play(self, frame: BotAudio) -> None:
        self.replies.setdefault(frame.reply_id, []).append(frame.pcm)

    async def clear(self) -> None:
        """Nothing is buffered beyond what was already 'played' into the recording."""

    def played_ms(self, reply_id: int, clock_ms: float) -> float:
        return clock_ms

    def reply_audio(self, reply_id: int) -> PCM:
        chunks = self.replies.get(reply_id, [])
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


@dataclass
class FileCallResult:
    turns: list[dict[str, Any]]
    greeting: str | None
    ended: str | None
    errors: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"greeting": self.greeting, "turns": self.turns, "ended": self.ended, "errors": self.errors}


class FileCall:
    def __init__(
        self,
        services: Services,
        brain: Brain,
        fast: bool = True,
        rate: int = 16_000,
        line: LineConfig | None = None,
    ) -> None:
        self.services = services
        self.rate = rate
        self.line = line  # the caller's audio over this simulated line (file N: the line's seed + N)
        self.fast = fast
        self.sink = ReplyCollector()
        self.pipeline = CallPipeline(services, brain, self.sink, channel_rate=rate, paced=not fast)
        self.timeline: list[tuple[PCM, PCM]] = []  # (caller, bot) blocks, in conversation order
        self.errors: list[str] = []
        self.ended: str | None = None
        self._reply_ids = 0

    async def _until_barrier(self, tag: str) -> list[Frame]:
        seen: list[Frame] = []
        while True:
            frame = await self.pipeline.events.get()
            if isinstance(frame, Barrier) and frame.tag == tag:
                return seen
            if isinstance(frame, StageError):
                self.errors.append(f"{frame.stage}: {frame.message}")
            if isinstance(frame, CallEnded):
                self.ended = frame.reason
            seen.append(frame)

    async def _feed(self, pcm: PCM) -> None:
        await feed_audio(self.pipeline, pcm, realtime=not self.fast)

    def _bot_block(self, frames: list[Frame]) -> PCM:
        done = [f for f in frames if isinstance(f, TurnDone)]
        ids = range(self._reply_ids + 1, self._reply_ids + 1 + len(done))
        audio = [self.sink.reply_audio(rid) for rid in ids]
        self._reply_ids += len(done)
        return np.concatenate(audio) if audio else np.zeros(0, np.int16)

    async def run(
        self, files: list[Path], on_turn: Any = None, decoded: list[PCM] | None = None
    ) -> FileCallResult:
        """`decoded`: the files already read at the call's rate (the CLI reads them before models load)."""
        vad = self.services.config.vad  # audio made before the call starts, or a clear error
        pcms = decoded if decoded is not None else [read_audio(f, self.rate) for f in files]
        audio = [with_endpoint_silence(pcm, self.rate, vad) for pcm in pcms]
        if self.line is not None:  # the line's noise goes on through the silence after the words
            audio = [through_line(pcm, self.rate, self.line, seed_offset=n) for n, pcm in enumerate(audio)]
        await self.pipeline.start()
        await self.pipeline.barrier("greeting")
        frames = await self._until_barrier("greeting")
        greet = self._bot_block(frames)
        self.timeline.append((np.zeros(greet.size, np.int16), greet))
        greeting = next((f.record.reply for f in frames if isinstance(f, TurnDone)), None)
        turns: list[dict[str, Any]] = []
        for index, (path, caller) in enumerate(zip(files, audio, strict=True)):
            if self.pipeline.ended:
                break
            started = time.perf_counter()
            await self._feed(caller)
            await self.pipeline.barrier(f"turn{index}")
            frames = await self._until_barrier(f"turn{index}")
            turns.append(self._turn_record(path, frames, (time.perf_counter() - started) * 1000.0))
            bot = self._bot_block(frames)
            self.timeline.append((caller, np.zeros(0, np.int16)))
            self.timeline.append((np.zeros(bot.size, np.int16), bot))
            if on_turn is not None:
                on_turn(turns[-1])
        await self.pipeline.close()
        return FileCallResult(turns=turns, greeting=greeting, ended=self.ended, errors=self.errors)

    @staticmethod
    def _turn_record(path: Path, frames: list[Frame], wall_ms: float) -> dict[str, Any]:
        done = [f.record.as_json() for f in frames if isinstance(f, TurnDone)]
        finals = [f for f in frames if isinstance(f, FinalTranscript)]
        record: dict[str, Any] = {"file": str(path), "transcript": None, "reply": None, "actions": []}
        record.update(dict.fromkeys(TURN_FIELDS))
        record["timings_ms"] = {}
        if done:
            first = done[0]
            record.update({k: v for k, v in first.items() if k not in ("file",)})
            texts = [d["reply"] for d in done if d.get("reply")]
            record["reply"] = " ".join(texts) if texts else None
            record["actions"] = [a for d in done for a in d.get("actions", [])]
        elif finals:
            record["transcript"] = finals[0].text
            record["asr"] = finals[0].details
            record["timings_ms"] = finals[0].timings_ms
        else:
            record["transcript"] = ""  # no speech detected in this file
        if len(finals) > 1:
            record["transcript"] = " ".join(f.text for f in finals if f.text)
        record["timings_ms"] = dict(record.get("timings_ms") or {}) | {"turn_wall": round(wall_ms, 1)}
        return record

    def write_outputs(self, out_dir: Path, result: FileCallResult) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        bot_blocks = [bot for _, bot in self.timeline[2::2]]
        for index, bot in enumerate(bot_blocks, start=1):
            if bot.size:
                write_wav(out_dir / f"turn{index:02d}_reply.wav", bot, self.rate)
        left: list[PCM] = []
        right: list[PCM] = []
        for caller, bot in self.timeline:  # each block padded so both sides stay in step
            n = max(caller.size, bot.size)
            left.append(np.pad(caller, (0, n - caller.size)))
            right.append(np.pad(bot, (0, n - bot.size)))
        write_stereo_wav(out_dir / "call.wav", np.concatenate(left), np.concatenate(right), self.rate)
