"""Say when the gateway's event loop stops, and what stopped it.

Why: every call's audio is paced by the one event loop, so a 0.3 s stall is a 0.3 s gap in every reply
playing at that moment (docs/reliability.md, soak: 4 such stalls in 2 hours; this watcher found them to be
full garbage collections, now avoided by `gc.freeze()` at start-up, and stays on as a guard). A watcher thread
sees the loop's heartbeat go late and takes the loop thread's stack *while it is stalled*; when the loop is
back it logs one warning with the stall's length, the time Python's garbage collector ran inside it, and
that stack. If the loop thread held the GIL the whole time (a C call that does not release it), the watcher
cannot run until it is over, and the warning says so instead of giving a stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class StallWatch:
    """Warn about every event-loop stall longer than `warn_ms`; `warn_ms=None` turns it off.

    `on_lag`, if set, hears every heartbeat's lateness in seconds (the loop's scheduling delay: what a paced
    audio frame was late by); the metrics keep it as a histogram, because delays too short to warn about
    still make gaps in the audio.
    """

    def __init__(
        self, warn_ms: float | None, beat_ms: float = 25.0, on_lag: Callable[[float], None] | None = None
    ) -> None:
        self.warn_s = None if warn_ms is None else warn_ms / 1000
        self.beat_s = beat_ms / 1000
        self.on_lag = on_lag
        self.stalls = 0
        self.longest_ms = 0.0
        self._beat = time.monotonic()
        self._gc_s = 0.0  # total time in gc collections since start
        self._gc_started = 0.0
        self._loop_thread = 0
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """From the loop to watch."""
        if self.warn_s is None or self._task is not None:
            return
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._stop.clear()
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())
        self._thread = threading.Thread(
            target=self._watch, args=(self.warn_s,), name="stall-watch", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        self._task = self._thread = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self._gc_s += time.perf_counter() - self._gc_started

    async def _heartbeat(self) -> None:
        while True:
            due = self._beat = time.monotonic()
            await asyncio.sleep(self.beat_s)
            if self.on_lag is not None:
                self.on_lag(max(0.0, time.monotonic() - due - self.beat_s))

    def _watch(self, warn_s: float) -> None:
        seen, gc_at_seen, stack = self._beat, self._gc_s, ""
        while not self._stop.wait(self.beat_s):  # 80 wakeups/s: 0.9 % of a core (2.2 % at 10 ms beats)
            beat = self._beat
            if beat != seen:
                stalled_s = beat - seen - self.beat_s
                if stalled_s > warn_s:
                    self._report(stalled_s, self._gc_s - gc_at_seen, stack)
                seen, gc_at_seen, stack = beat, self._gc_s, ""
            elif not stack and time.monotonic() - seen > self.beat_s + warn_s:
                stack = self._stack()

    def _stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        return "".join(traceback.format_stack(frame, limit=12)) if frame is not None else ""

    def _report(self, stalled_s: float, gc_s: float, stack: str) -> None:
        self.stalls += 1
        self.longest_ms = max(self.longest_ms, stalled_s * 1000)
        where = (
            f"the loop thread was at:\n{stack}"
            if stack
            else "no stack: the loop thread held the GIL throughout (a C call that does not release it)"
        )
        log.warning(
            "event loop stalled %.0f ms (every call's audio paused; garbage collection %.0f ms of it); %s",
            stalled_s * 1000,
            gc_s * 1000,
            where,
        )
