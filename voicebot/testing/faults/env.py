"""The fault tests' surroundings: the gateway, a real full disk, a database that can be stopped, call steps.

`small_disk` mounts a real tmpfs of a few hundred KiB (root only) and `fill` fills it, so a recording
meets ENOSPC from the kernel, not from a mock. PostgreSQL is `voicebot.testing.pg.throwaway_cluster`
(outside pytest too, for scripts/faults_gateway.py); `frozen` makes it hang instead of refusing. The call
steps place, drive and drop one call of a `Caller`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM
from voicebot.testing.faults.callers import Caller, until
from voicebot.testing.gateway import Gateway
from voicebot.testing.pg import PostgresCluster, Unavailable

CALL_S = 90.0  # the longest a whole fault call may take on two busy cores


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "256k") -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `folder` (new), unmounted after."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        raise Unavailable(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until its file system says ENOSPC; returns the filler file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


@contextlib.contextmanager
def frozen(cluster: PostgresCluster) -> Iterator[None]:
    """The server and its backends stopped (SIGSTOP), then resumed: a database that hangs rather than
    refuses (its sockets stay open, nothing answers), like a stalled host."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    server = psutil.Process(pid)
    processes = [server, *server.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


# --- the gateway -------------------------------------------------------------------------------------


def fault_config(**server: Any) -> VoicebotConfig:
    """Short grace and dead-line clocks so faults resolve in seconds; limits that exist in this version of
    `ServerConfig` only (per-source and length limits are newer than some checkouts)."""
    values: dict[str, Any] = {"audiosocket_port": 0, "hangup_grace_s": 1.0, "drain_s": 5.0, "max_calls": 64}
    newer = {"idle_timeout_s": 4.0, "max_calls_per_source": 64, "max_call_s": 300.0}
    values |= {k: v for k, v in newer.items() if k in ServerConfig.model_fields}
    return VoicebotConfig(server=ServerConfig(**(values | server)))


# --- call steps --------------------------------------------------------------------------------------


async def call_of(caller: Caller, gw: Gateway) -> str:
    """The id of `caller`'s call, once the gateway has set it up."""
    if not await until(lambda: caller.call_id(gw.hub) is not None, 20):
        raise TimeoutError(f"{caller.protocol} call was never set up")
    call_id = caller.call_id(gw.hub)
    assert call_id is not None
    return call_id


async def hears_the_bot(caller: Caller, frames: int = 25) -> None:
    if not await until(lambda: caller.bot_frames > frames, 30):
        raise TimeoutError(f"{caller.protocol} caller never heard the bot")


async def talk(caller: Caller, pcm: PCM) -> None:
    """Say `pcm` and stay on the line until the server ends the call."""
    caller.say(pcm)
    async with asyncio.timeout(CALL_S):
        await caller.closed.wait()


async def press_and_wait(caller: Caller, keys: str) -> None:
    """Press `keys` and stay on the line until the server ends the call."""
    await caller.press(keys)
    async with asyncio.timeout(CALL_S):
        await caller.closed.wait()


async def gone(call_id: str, gw: Gateway) -> None:
    if not await until(lambda: call_id not in gw.hub.calls, CALL_S):
        raise TimeoutError(f"call {call_id} never ended")


async def short_call(caller: Caller, gw: Gateway) -> str:
    """A call that hears part of the greeting, then drops; returns its id once the server has ended it."""
    await caller.connect(gw)
    call_id = await call_of(caller, gw)
    await hears_the_bot(caller)
    caller.abort()
    await gone(call_id, gw)
    await caller.close()
    return call_id
