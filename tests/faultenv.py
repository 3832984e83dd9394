"""The fault tests' surroundings: the gateway, a real full disk, a database that can be stopped, call steps.

`small_disk` mounts a real tmpfs of a few hundred KiB (root only) and `fill` fills it, so a recording
meets ENOSPC from the kernel, not from a mock. `throwaway_postgres` is tests/pg.py's cluster outside pytest
(for scripts/faults_gateway.py); `frozen` makes it hang instead of refusing. The call steps place, drive
and drop one call of a `Caller`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import uvicorn
from fastapi import FastAPI

from telephony.server import GatewayServer, create_app
from telephony.session import CallHub, CallObserver
from tests.faultkit import Caller, until
from tests.pg import PREFIX, PostgresCluster, _as_user, _remove, find_bin_dir, remove_stale_clusters
from voicebot.brain import BrainFactory
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.frames import PCM
from voicebot.pipeline import Services

CALL_S = 90.0  # the longest a whole fault call may take on two busy cores


class Unavailable(Exception):
    """This machine cannot provide the real thing (not root, no PostgreSQL): say so, do not fake it."""


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
def throwaway_postgres() -> Iterator[PostgresCluster]:
    """A running PostgreSQL cluster in a temp dir on a free loopback port (see tests/pg.py), deleted after."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable("no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    remove_stale_clusters(bin_dir)
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    (root / "owner.pid").write_text(str(os.getpid()))
    as_user = _as_user(root)
    if as_user is None:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable("running as root and there is no `postgres` user to run the server as")
    cluster = PostgresCluster(bin_dir, root, as_user)
    try:
        cluster.init()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        _remove(cluster)


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


@dataclass
class Gateway:
    http: str  # host:port
    audiosocket_port: int
    app: FastAPI
    server: GatewayServer

    @property
    def hub(self) -> CallHub:
        hub: CallHub = self.app.state.gateway.hub
        return hub


def fault_config(**server: Any) -> VoicebotConfig:
    """Short grace and dead-line clocks so faults resolve in seconds; limits that exist in this version of
    `ServerConfig` only (per-source and length limits are newer than some checkouts)."""
    values: dict[str, Any] = {"audiosocket_port": 0, "hangup_grace_s": 1.0, "drain_s": 5.0, "max_calls": 64}
    newer = {"idle_timeout_s": 4.0, "max_calls_per_source": 64, "max_call_s": 300.0}
    values |= {k: v for k, v in newer.items() if k in ServerConfig.model_fields}
    return VoicebotConfig(server=ServerConfig(**(values | server)))


@asynccontextmanager
async def serving(
    config: VoicebotConfig,
    services: Services,
    brain_factory: BrainFactory,
    observers: Sequence[CallObserver] = (),
    ping_s: float | None = 20.0,
) -> AsyncIterator[Gateway]:
    """The real app under `GatewayServer` on loopback (uvicorn's WebSocket keepalive every `ping_s`)."""
    app = create_app(config, services, brain_factory, observers)
    uv = uvicorn.Config(  # no log_config: uvicorn's loggers propagate to the root, where `Crashes` listens
        app, host="127.0.0.1", port=0, log_config=None, log_level="warning",
        ws_ping_interval=ping_s, ws_ping_timeout=ping_s,
    )  # fmt: skip
    server = GatewayServer(uv, app.state.gateway)
    task = asyncio.create_task(server.serve(), name="gateway")
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Gateway(f"127.0.0.1:{port}", app.state.gateway.audiosocket_port, app, server)
    finally:
        server.should_exit = True
        await task


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
