"""A pipeline stage: an inbox, a loop, and an ordered worker for slow jobs.

Model calls (ASR decodes, the brain, TTS) can take hundreds of milliseconds. If a stage awaited them inline,
a speech-start frame behind them would wait too and barge-in would lag. So each stage forwards control frames
at once and pushes slow jobs to its `OrderedWork`, which runs them one after another, keeping their order
relative to each other (and to frames such as hang-up that must come after them).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

from voicebot.frames import Frame, StageError

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

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-work")

    def submit(self, job: Job, keep: bool = False) -> None:
        """Queue a job; `keep` jobs (forwarding a barrier, a hang-up…) survive `clear()`."""
        self._jobs.put_nowait((job, keep))

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
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s job failed", self.name)
                await self._report(StageError(stage=self.name, message=f"{type(exc).__name__}: {exc}"))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Stage:
    """Base stage: forwards every frame unless `on_frame` is overridden for it."""

    name = "stage"

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._emit: Emit | None = None
        self._task: asyncio.Task[None] | None = None
        self.work = OrderedWork(self.name, self.emit)

    def link(self, emit: Emit) -> None:
        self._emit = emit

    async def emit(self, frame: Frame) -> None:
        assert self._emit is not None, f"{self.name} is not linked"
        await self._emit(frame)

    async def put(self, frame: Frame) -> None:
        await self.inbox.put(frame)

    def start(self) -> None:
        self.work.start()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            frame = await self.inbox.get()
            if frame is None:
                return
            try:
                await self.on_frame(frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("%s failed on %s", self.name, type(frame).__name__)
                await self.emit(StageError(stage=self.name, message=f"{type(exc).__name__}: {exc}"))

    async def on_frame(self, frame: Frame) -> None:
        await self.emit(frame)

    def after_work(self, frame: Frame) -> None:
        """Forward `frame` only once the jobs submitted before it have finished."""

        async def forward() -> None:
            await self.emit(frame)

        self.work.submit(forward, keep=True)

    async def stop(self) -> None:
        await self.work.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
