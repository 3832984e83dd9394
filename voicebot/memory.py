"""Hand freed native memory back to the OS, so a long-running gateway's RSS follows what it uses.

Why: the models' native code (onnxruntime for Piper and Silero, CTranslate2, torch) allocates and frees
large buffers of varying size from many threads. glibc keeps freed pages in its per-thread arenas, so RSS
only ever climbs, by steps, as new peaks come (docs/reliability.md, soak). `malloc_trim(0)` gives the
free pages of every arena back. `heap_usage` (glibc's `mallinfo2`) tells a leak (bytes in use climb) from
fragmentation (free bytes held climb) when RSS moves. Both are glibc's; elsewhere this module does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class _Mallinfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (2.33+), totals over every arena."""

    _fields_ = [
        (field, ctypes.c_size_t)
        for field in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                      "fordblks", "keepcost")
    ]  # fmt: skip


def _load_libc() -> ctypes.CDLL | None:
    """The C library, looked up once (`find_library` runs `ldconfig`): None where there is none to load."""
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        return ctypes.CDLL(lib)
    except OSError:
        return None


_LIBC = _load_libc()


def _libc(name: str, argtypes: list[Any], restype: Any) -> Callable[..., Any] | None:
    """A glibc function, or None where the C library has no such function (musl, macOS, old glibc)."""
    func = getattr(_LIBC, name, None) if _LIBC is not None else None
    if func is None:
        return None
    func.argtypes = argtypes
    func.restype = restype
    return func  # type: ignore[no-any-return]


_MALLOC_TRIM = _libc("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
_MALLINFO2 = _libc("mallinfo2", [], _Mallinfo2)


@dataclass(frozen=True)
class HeapUsage:
    """malloc's view of the heap, in bytes: `in_use` by live allocations (mmapped ones included), `free`
    held in the arenas for reuse (what fragmentation keeps; malloc_trim hands back only whole free pages)."""

    in_use: int
    free: int


def heap_usage() -> HeapUsage | None:
    """The C heap now (not Python's small-object pools, which mmap their own); None where glibc cannot say."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return HeapUsage(in_use=int(info.uordblks + info.hblkhd), free=int(info.fordblks))


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
