"""Playing conversation tests through a real `CallPipeline`, step by step, and judging every step.

Each step sends its input and then a `Barrier`; the frames up to that barrier are the step's answer. Text
turns skip VAD and ASR, while audio turns, DTMF, no-input and hang-ups take the same path as on a phone line.

A barge-in step is real: the previous step's reply is played in real time, the caller's audio starts once
that many milliseconds of it reached the line, and the VAD's speech start cuts the bot. The cut also drops
the replies the speak stage had queued behind it (data frames), so the steps of such a run are collected
together at the barge-in step's barrier and split by reply: the speak stage numbers its replies in the order
their `TurnDone`s come out, and the sink shows which reply was playing when the caller cut in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicebot.audio import AudioError, frame_samples, read_audio
from voicebot.brain import Brain
from voicebot.convtest.expect import check_end, check_step, regex_failure, reply_text
from voicebot.convtest.results import ConversationResult, StepResult, SuiteResult
from voicebot.convtest.spec import Conversation, Step, collect_files, load_conversation
from voicebot.domain.yamlfile import DomainError
from voicebot.filecall import ReplyCollector, feed_audio, with_endpoint_silence
from voicebot.frames import PCM, Barrier, CallEnded, Frame, StageError, TurnDone
from voicebot.line import LineConfig, LineError, through_line
from voicebot.pipeline import CallPipeline, Services

log = logging.getLogger(__name__)
STEP_TIMEOUT_S = 60.0


class _Events:
    """The call's event stream, handed out one barrier at a time; read ahead while waiting for a barge-in."""

    def __init__(self, queue: asyncio.Queue[Frame]) -> None:
        self.queue = queue
        self.buffer: list[Frame] = []

    def poll(self) -> None:
        while not self.queue.empty():
            self.buffer.append(self.queue.get_nowait())

    def _index(self, tag: str) -> int | None:
        return next((i for i, f in enumerate(self.buffer) if isinstance(f, Barrier) and f.tag == tag), None)

    def reached(self, tag: str) -> bool:
        return self._index(tag) is not None

    async def until(self, tag: str, timeout_s: float) -> list[Frame]:
        """The frames before `Barrier(tag)`, other barriers left out (a barge-in may have dropped them)."""
        async with asyncio.timeout(timeout_s):
            while (cut := self._index(tag)) is None:
                self.buffer.append(await self.queue.get())
        frames, self.buffer = self.buffer[:cut], self.buffer[cut + 1 :]
        return [f for f in frames if not isinstance(f, Barrier)]


@dataclass
class _Turn:
    """A step whose input was sent. Replies numbered above `mark` (up to the next turn's mark) are its own."""

    number: int  # 1-based step number; 0 for the greeting when the file has no `bot:` step
    step: Step | None
    mark: int
    started: float = field(default_factory=time.perf_counter)
    notes: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"step{self.number}"


class _Call:
    """One conversation test: its pipeline, the caller's prepared audio, and the results so far."""

    def __init__(
        self,
        services: Services,
        brain: Brain,
        spec: Conversation,
        channel_rate: int,
        line: LineConfig | None,
        step_timeout_s: float,
    ) -> None:
        self.services, self.brain, self.spec = services, brain, spec
        self.rate, self.line, self.timeout = channel_rate, line, step_timeout_s
        self.sink = ReplyCollector()
        self.pipeline = CallPipeline(services, brain, self.sink, channel_rate=channel_rate, paced=False)
        self.events = _Events(self.pipeline.events)
        self.result = ConversationResult(name=spec.name, path=spec.source)
        self.ended: CallEnded | None = None
        self.replies = 0  # TurnDones collected so far = number of the last reply played
        self.group: list[_Turn] = []  # sent, not yet collected

    def _prepare(self) -> dict[int, PCM]:
        """Caller audio of audio steps and barge-ins, made before the call so that nothing stalls it; over
        the step's line, else the file's, else the run's (step N's seed is the line's seed + N)."""
        audio: dict[int, PCM] = {}
        for number, step in enumerate(self.spec.steps, start=1):
            if step.audio is not None:
                pcm = read_audio(self.spec.audio_path(step), self.rate)
            elif step.caller is not None and step.barges_in:
                pcm = self.services.tts.synthesize_at(step.caller, self.rate)  # the TTS voice is the caller
            else:
                continue
            pcm = with_endpoint_silence(pcm, self.rate, self.services.config.vad)
            line = step.line or self.spec.line or self.line
            if line is not None:  # the caller at the end of that line, its noise in the pause too
                pcm = through_line(pcm, self.rate, line, seed_offset=number)
            audio[number] = pcm
        return audio

    async def run(self) -> ConversationResult:
        started = time.perf_counter()
        try:
            audio = self._prepare()
        except (AudioError, LineError) as exc:
            self.result.errors.append(str(exc))
            return self.result
        try:
            await self._play(audio)
        except TimeoutError:
            for turn in self.group:
                self._judge(turn, [], [f"no answer within {self.timeout:.0f} s; the call stopped responding"])
        finally:
            await self.pipeline.close()
        done = {s.number for s in self.result.steps}
        for number, step in enumerate(self.spec.steps, start=1):
            if number not in done:
                self.result.steps.append(StepResult(number, step.label, skipped=True))
        self.result.steps.sort(key=lambda s: s.number)
        if self.spec.end is not None:
            self.result.end_failures = check_end(self.spec.end, self.ended)
        self.result.ended = self.ended.reason if self.ended is not None else None
        self.result.seconds = time.perf_counter() - started
        return self.result

    async def _play(self, audio: dict[int, PCM]) -> None:
        steps = self.spec.steps
        turns: list[tuple[int, Step | None]] = list(enumerate(steps, start=1))
        if steps[0].bot is None:
            turns.insert(0, (0, None))  # the greeting is played and checked for errors all the same
        for index, (number, step) in enumerate(turns):
            following = turns[index + 1][1] if index + 1 < len(turns) else None
            pace_next = following is not None and following.barges_in  # it will be talked over: real time
            turn = _Turn(number, step, mark=self.replies)
            barging = await self._barge_in_point(turn)
            if self.ended is not None and not barging:
                self._after_end(turns[index:], turn.notes)
                return
            if not barging:  # a barge-in leaves the reply it cuts paced until the cut
                self.pipeline.speak.paced = pace_next
            await self._send(step, audio.get(number), realtime=barging)
            self.pipeline.speak.paced = pace_next
            await self.pipeline.barrier(turn.tag)
            self.group.append(turn)
            if not pace_next:
                await self._collect()

    async def _barge_in_point(self, turn: _Turn) -> bool:
        """For a barge-in step, wait until it is time to talk; False when the previous reply ended first."""
        after_ms = turn.step.barge_in_after_ms if turn.step is not None and self.group else None
        if after_ms is None:
            return False
        cut = await self._until_played(after_ms)
        if cut is not None:
            turn.mark = cut
            return True
        played = self._played_ms(self.group[-1].mark)
        turn.notes.append(f"barge-in at {after_ms} ms: the previous reply was over after {played:.0f} ms")
        await self._collect()
        turn.mark = self.replies
        return False

    async def _send(self, step: Step | None, pcm: PCM | None, realtime: bool) -> None:
        if step is None or step.bot is not None:
            await self.pipeline.start()
        elif pcm is not None:
            await feed_audio(self.pipeline, pcm, realtime=realtime)
        elif step.caller is not None:
            await self.pipeline.send_text(step.caller)
        elif step.dtmf is not None:
            for digit in step.dtmf:
                await self.pipeline.send_dtmf(digit)
        elif step.silence:
            await self.pipeline.send_no_input(after_s=self.brain.no_input_s or 0.0)
        elif step.hangup:
            await self.pipeline.hangup()

    def _played_ms(self, mark: int) -> float:
        samples = sum(c.size for rid, chunks in self.sink.replies.items() if rid > mark for c in chunks)
        return samples * 1000.0 / self.rate

    async def _until_played(self, after_ms: int) -> int | None:
        """Wait until `after_ms` of the pending turn's replies reached the line; the reply then playing.

        None when its replies were over before that (its barrier came through first). Meanwhile the caller's
        side of the line carries silence in real time, as a phone line does: a VAD that hears nothing at all
        before the caller's first word is slower to notice it.
        """
        pending = self.group[-1]
        frame_ms = self.services.config.pipeline.frame_ms
        quiet = np.zeros(frame_samples(self.rate, frame_ms), np.int16)
        clock, ticks = time.monotonic(), 0
        while True:
            started = [rid for rid in self.sink.replies if rid > pending.mark]
            if started and self._played_ms(pending.mark) >= after_ms:
                return max(started)
            self.events.poll()
            if self.events.reached(pending.tag):
                return None
            if time.monotonic() - clock > self.timeout:
                raise TimeoutError
            await self.pipeline.caller_audio(quiet)
            ticks += 1
            await asyncio.sleep(max(0.0, clock + ticks * frame_ms / 1000.0 - time.monotonic()))

    async def _collect(self) -> None:
        """Frames up to the last pending barrier, split over the pending turns by reply number."""
        frames = await self.events.until(self.group[-1].tag, self.timeout)
        parts: list[list[Frame]] = [[] for _ in self.group]
        waiting: list[Frame] = []
        for frame in frames:
            waiting.append(frame)
            if isinstance(frame, TurnDone):
                self.replies += 1
                owner = sum(1 for t in self.group[1:] if t.mark < self.replies)
                parts[owner] += waiting
                waiting = []
        parts[-1] += waiting  # frames after the last reply belong to the last turn
        group, self.group = self.group, []
        for turn, part in zip(group, parts, strict=True):
            self._judge(turn, part)

    def _judge(self, turn: _Turn, frames: list[Frame], problems: Sequence[str] = ()) -> None:
        records = [f.record.as_json() for f in frames if isinstance(f, TurnDone)]
        failures = [*turn.notes, *problems]
        failures += [f"{f.stage} error: {f.message}" for f in frames if isinstance(f, StageError)]
        self.ended = next((f for f in frames if isinstance(f, CallEnded)), self.ended)
        step = turn.step
        if step is None or step.bot is not None:
            self.result.greeting = reply_text(records)
        if step is None:
            self.result.errors += [f"greeting: {f}" for f in failures]
            return
        if not problems:  # a step that got no answer at all has nothing to compare
            if step.bot is not None:
                failures += [f for f in [regex_failure("bot", step.bot, reply_text(records))] if f]
            failures += check_step(step.expect, records)
        seconds = time.perf_counter() - turn.started
        self.result.steps.append(
            StepResult(turn.number, step.label, records, reply_text(records), failures, seconds=seconds)
        )

    def _after_end(self, rest: list[tuple[int, Step | None]], notes: list[str]) -> None:
        """The call is over: the next step fails (unless the caller hangs up too); later ones are skipped."""
        number, step = rest[0]
        if step is None:
            return
        failures = [] if step.hangup else [*notes, "call already ended"]
        self.result.steps.append(StepResult(number, step.label, failures=failures))


async def run_conversation(
    services: Services,
    brain_factory: Callable[[], Brain],
    spec: Conversation,
    channel_rate: int = 16_000,
    line: LineConfig | None = None,
    step_timeout_s: float = STEP_TIMEOUT_S,
) -> ConversationResult:
    """Play one conversation through a fresh brain and pipeline (fast, except around barge-ins); `line`:
    the caller's audio over that line where the file sets none."""
    call = _Call(services, brain_factory(), spec, channel_rate, line, step_timeout_s)
    return await call.run()


async def run_suite(
    paths: Sequence[Path],
    services: Services,
    brain_factory: Callable[[], Brain],
    channel_rate: int = 16_000,
    line: LineConfig | None = None,
    on_result: Callable[[ConversationResult], None] | None = None,
) -> SuiteResult:
    """Every conversation file under `paths`, one after another; a broken file fails alone."""
    started = time.perf_counter()
    suite = SuiteResult()
    for path in collect_files(paths):
        result = await _run_file(path, services, brain_factory, channel_rate, line)
        suite.conversations.append(result)
        if on_result is not None:
            on_result(result)
    suite.seconds = time.perf_counter() - started
    return suite


async def _run_file(
    path: Path,
    services: Services,
    brain_factory: Callable[[], Brain],
    channel_rate: int,
    line: LineConfig | None,
) -> ConversationResult:
    try:
        spec = load_conversation(path)
    except DomainError as exc:
        return ConversationResult(name=path.stem, path=path, errors=[str(exc)])
    try:
        return await run_conversation(services, brain_factory, spec, channel_rate, line)
    except Exception as exc:  # one conversation's crash is its failure, not the end of the suite
        log.exception("conversation %s crashed", path)
        return ConversationResult(name=spec.name, path=path, errors=[f"{type(exc).__name__}: {exc}"])
