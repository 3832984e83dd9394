"""voicebot.memory: freed native memory really goes back to the OS, and the gateway's trimmer runs."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import re
from pathlib import Path

import pytest

from voicebot.memory import MemoryTrimmer, heap_usage, release_freed_memory

glibc = pytest.mark.skipif(not release_freed_memory(), reason="malloc_trim is glibc's")


def rss_anon_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"RssAnon:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


@glibc
def test_freed_blocks_between_live_ones_go_back_to_the_os() -> None:
    """The models' pattern: big buffers freed while small live ones sit between them. free() keeps those
    pages (RSS stays up); malloc_trim hands them back."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    big, small = [], []
    for _ in range(8000):  # 16 KiB: far under any mmap threshold, so from the heap
        block = libc.malloc(16 * 1024)
        ctypes.memset(block, 1, 16 * 1024)  # touched, so resident
        big.append(block)
        small.append(libc.malloc(64))
    for block in big:
        libc.free(block)
    held = rss_anon_mb()
    assert release_freed_memory()
    after = rss_anon_mb()
    for block in small:
        libc.free(block)
    assert held - after > 80, f"RssAnon {held:.1f} MB before trim, {after:.1f} MB after"


@glibc
def test_heap_usage_tells_live_bytes_from_free_ones() -> None:
    """A leak moves `in_use`; freeing moves the same bytes to `free` (or back to the OS), not out of sight."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    start = heap_usage()
    assert start is not None and start.in_use > 0
    blocks = [libc.malloc(16 * 1024) for _ in range(2000)]  # 32 MiB in small heap blocks
    held = heap_usage()
    assert held is not None and held.in_use - start.in_use >= 30 * 2**20
    for block in blocks[1::2]:  # every other block: freed holes between live ones stay in the arena
        libc.free(block)
    holes = heap_usage()
    assert holes is not None
    assert held.in_use - holes.in_use >= 15 * 2**20
    assert holes.free - held.free >= 15 * 2**20
    for block in blocks[::2]:
        libc.free(block)


@glibc
def test_trimmer_runs_periodically_and_stops() -> None:
    async def run() -> int:
        trimmer = MemoryTrimmer(every_s=0.05)
        trimmer.start()
        await asyncio.sleep(0.5)
        await trimmer.stop()
        done = trimmer.trims
        await asyncio.sleep(0.2)
        assert trimmer.trims == done  # stopped means stopped
        return done

    assert asyncio.run(run()) >= 2


def test_trimmer_off() -> None:
    async def run() -> int:
        trimmer = MemoryTrimmer(every_s=None)
        trimmer.start()
        await asyncio.sleep(0.1)
        await trimmer.stop()
        return trimmer.trims

    assert asyncio.run(run()) == 0
