"""Hand freed native memory back to the OS, so a long-running gateway's RSS follows what it uses.

Why: the models' native code (onnxruntime for Piper and Silero, CTranslate2, torch) allocates and frees
large buffers of varying size from many threads. glibc keeps freed pages in its per-thread arenas, so RSS
only ever climbs, by steps, as new peaks come (docs/reliability.md, soak). `malloc_trim(0)` gives the
free pages of every arena back. It is glibc's; elsewhere this module does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_MALLOC_TRIM = _find_malloc_trim()


def release_freed_memory() -> bool:
    """Return free heap pages to the OS; False where the C library cannot (then RSS just stays high).
    Takes tens of ms with big models loaded: call it from a worker thread, not the event loop."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class MemoryTrimmer:
    """Every `every_s` seconds, `release_freed_memory` in a worker thread; `every_s=None` turns it off."""

    def __init__(self, every_s: float | None) -> None:
        self.every_s = every_s
        self.trims = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every_s is not None and _MALLOC_TRIM is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(self.every_s))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(release_freed_memory)
            except Exception:  # never let housekeeping end the gateway
                log.exception("malloc_trim failed")
            self.trims += 1
