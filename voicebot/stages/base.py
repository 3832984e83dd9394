"""A pipeline stage: an inbox, a loop, links both ways, and an ordered worker for slow jobs.

Model calls (ASR decodes, the brain, TTS) can take hundreds of milliseconds. If a stage awaited them inline,
a speech-start frame behind them would wait too and barge-in would lag. So `on_frame` never waits for a
model: slow jobs go to the stage's `OrderedWork`, which runs them one after another. What happens to the
frames a stage passes on is decided here, by each frame's category (`voicebot.frames`): system frames go on
at once, overtaking the queued work; control and data frames go on after the work queued before them; and
when a frame that interrupts the bot arrives, the data frames and data jobs still queued are dropped.

To add a stage: subclass `Stage`, handle the frames it owns in `on_frame` (`await self.pass_on(frame,
direction)` for the rest), submit slow work with `self.after(frame, job)`, send results with `push`
(downstream or upstream), and insert it in `CallPipeline.stages`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from voicebot.frames import Category, Direction, Frame, StageError

log = logging.getLogger(__name__)

Emit = Callable[[Frame], Awaitable[None]]
Job = Callable[[], Awaitable[None]]
T = TypeVar("T")


def in_pool(executor: Executor, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run a blocking model call on the shared pool: the event loop never waits on a model.

    The caller's context goes along, so log lines from the worker still carry the call's id.
    """
    context = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(executor, context.run, fn, *args)


class ModelPool(ThreadPoolExecutor):
    """The shared model thread pool, counting jobs not finished yet (`busy`), so optional work (partial
    transcripts) can stand aside while calls wait for finals and speech."""

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._busy = 0
        self._count = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._count:
            self._busy += 1
        future = super().submit(fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._count:
            self._busy -= 1

    @property
    def busy(self) -> int:
        return self._busy


class OrderedWork:
    """Runs submitted jobs sequentially in a background task; a failing job is reported, not fatal."""

    def __init__(self, name: str, report: Emit) -> None:
        self.name = name
        self._report = report
        self._jobs: asyncio.Queue[tuple[Job, bool]] = asyncio.Queue()  # (job, survives clear())
        self._task: asyncio.Task[None] | None = None
        self._running = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-work")

    def submit(self, job: Job, keep: bool = False) -> None:
        """Queue a job; `keep` jobs (forwarding a barrier, a hang-up…) survive `clear()`."""
        self._jobs.put_nowait((job, keep))

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing running: a frame passed on now is in order with all the work."""
        return not self._running and self._jobs.empty()

    @property
    def queued(self) -> bool:
        """Jobs wait behind the one running (a job asking: has something overtaken me already?)."""
        return not self._jobs.empty()

    def clear(self) -> int:
        """Drop jobs not started yet (e.g. replies made stale by barge-in); returns how many."""
        kept: list[tuple[Job, bool]] = []
        dropped = 0
        while not self._jobs.empty():
            item = self._jobs.get_nowait()
            if item[1]:
                kept.append(item)
            else:
                dropped += 1
        for item in kept:
            self._jobs.put_nowait(item)
        return dropped

    async def _run(self) -> None:
        while True:
            job, _ = await self._jobs.get()
            self._running = True
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s job failed", self.name)
                await self._report(StageError(stage=self.name, message=f"{type(exc).__name__}: {exc}"))
            finally:
                self._running = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Stage:
    """Base stage: passes every frame on by its category unless `on_frame` is overridden for it."""

    name = "stage"

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[Frame, Direction] | None] = asyncio.Queue()
        self._links: dict[Direction, Emit] = {}
        self._task: asyncio.Task[None] | None = None
        self.work = OrderedWork(self.name, self.push)

    def link(self, downstream: Emit | None = None, upstream: Emit | None = None) -> None:
        """Where frames go: the next stage's `put` (or the call's events) and the previous stage's."""
        if downstream is not None:
            self._links[Direction.DOWNSTREAM] = downstream
        if upstream is not None:
            self._links[Direction.UPSTREAM] = upstream

    async def put(self, frame: Frame, direction: Direction = Direction.DOWNSTREAM) -> None:
        await self.inbox.put((frame, direction))

    async def push(self, frame: Frame, direction: Direction = Direction.DOWNSTREAM) -> None:
        """Send `frame` on now, downstream or upstream; a direction not linked drops it."""
        emit = self._links.get(direction)
        if emit is not None:
            await emit(frame)
        else:
            assert direction is Direction.UPSTREAM, f"{self.name} is not linked downstream"

    async def pass_on(self, frame: Frame, direction: Direction = Direction.DOWNSTREAM) -> None:
        """Forward a frame this stage does not consume, scheduled by its category."""
        if frame.category is Category.SYSTEM or self.work.idle:
            await self.push(frame, direction)
            return

        async def forward() -> None:
            await self.push(frame, direction)

        self.work.submit(forward, keep=frame.category is Category.CONTROL)

    def after(self, frame: Frame, job: Job) -> None:
        """Queue slow work caused by `frame`; it is dropped by an interruption when `frame` is data."""
        self.work.submit(job, keep=frame.category is not Category.DATA)

    def start(self) -> None:
        self.work.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            item = await self.inbox.get()
            if item is None:
                return
            frame, direction = item
            try:
                if frame.interrupts and self.interruptible():
                    await self.interrupt()
                await self.on_frame(frame, direction)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s failed on %s", self.name, type(frame).__name__)
                await self.push(StageError(stage=self.name, message=f"{type(exc).__name__}: {exc}"))

    async def on_frame(self, frame: Frame, direction: Direction) -> None:
        await self.pass_on(frame, direction)

    def interruptible(self) -> bool:
        """Whether an interrupting frame (barge-in) cuts this stage's queued data now."""
        return True

    async def interrupt(self) -> None:
        """The caller cut the bot off: queued data work is stale. Stages that play audio also stop it."""
        self.work.clear()

    async def stop(self) -> None:
        await self.work.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
