"""The gateway in this process on loopback, as the tests and the fuzz and fault scripts run it.

`running_gateway` starts the real app (`create_app` under uvicorn, `GatewayServer` for the drain) on free
loopback ports, `no_greeting` gives it services whose calls start silent; `Recorder` is a real call
observer that keeps everything it is told; `http_get` is a plain HTTP/1.1 request and `receive_until` reads
the browser `/ws` stream up to an event.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

from fastapi import FastAPI

from telephony.server import GatewayServer, create_app, uvicorn_config
from telephony.session import CallHub, CallObserver
from voicebot.brain import BrainFactory, EchoBrain
from voicebot.config import VoicebotConfig
from voicebot.frames import Frame
from voicebot.pipeline import Services


class Recorder:
    """A real `CallObserver` that keeps everything it is told, for assertions."""

    def __init__(self) -> None:
        self.starts: dict[str, tuple[str, dict[str, Any]]] = {}
        self.events: dict[str, list[Frame]] = defaultdict(list)
        self.ends: dict[str, str] = {}

    def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        self.starts[call_id] = (protocol, meta)

    def on_event(self, call_id: str, frame: Frame) -> None:
        self.events[call_id].append(frame)

    def on_end(self, call_id: str, reason: str) -> None:
        self.ends[call_id] = reason

    def of(self, call_id: str, kind: type[Any]) -> list[Any]:
        return [f for f in self.events[call_id] if isinstance(f, kind)]

    async def ended(self, count: int = 1, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while len(self.ends) < count:
                await asyncio.sleep(0.02)


@dataclass
class Gateway:
    """A gateway running in this process on loopback, with the addresses tests need."""

    http: str  # host:port
    audiosocket_port: int | None
    app: FastAPI
    server: GatewayServer

    @property
    def hub(self) -> CallHub:
        return self.app.state.gateway.hub  # type: ignore[no-any-return]


def no_greeting(services: Services) -> Services:
    """The same loaded models, but calls start silent, so the bot's first audio is its first reply (and a
    call costs nothing until the caller says something)."""
    config = services.config.model_copy(deep=True)
    config.pipeline.greeting = False
    return replace(services, config=config)


@asynccontextmanager
async def running_gateway(
    config: VoicebotConfig,
    services: Services,
    brain_factory: BrainFactory = EchoBrain,
    observers: Sequence[CallObserver] = (),
    ping_s: float | None = None,
) -> AsyncIterator[Gateway]:
    """Start `create_app` under `GatewayServer` on free loopback ports; shut it down (drain) after.
    `ping_s`: uvicorn's WebSocket keepalive instead of the gateway's (the fault tests' half-open lines)."""
    app = create_app(config, services, brain_factory, observers)
    uv = uvicorn_config(app, config.server.model_copy(update={"host": "127.0.0.1", "port": 0}), "warning")
    if ping_s is not None:
        uv.ws_ping_interval = uv.ws_ping_timeout = ping_s
    server = GatewayServer(uv, app.state.gateway)
    task = asyncio.create_task(server.serve())
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


async def http_get(
    host: str, path: str, method: str = "GET", form: str = "", headers: dict[str, str] | None = None
) -> tuple[str, str]:
    """A plain HTTP/1.1 request (a form body for POST); returns the status line and the body."""
    name, port = host.split(":")
    reader, writer = await asyncio.open_connection(name, int(port))
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close", f"Content-Length: {len(form)}"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    head += ["Content-Type: application/x-www-form-urlencoded"] if form else []
    writer.write(("\r\n".join(head) + "\r\n\r\n" + form).encode())
    data = (await reader.read()).decode()
    writer.close()
    status, _, body = data.partition("\r\n\r\n")
    return status.splitlines()[0], body


async def receive_until(ws: Any, kind: str, audio: list[bytes], timeout: float = 30) -> list[dict[str, Any]]:
    """Read a browser `/ws` stream until an event of type `kind`: the events read (audio goes to `audio`)."""
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                audio.append(message)
                continue
            events.append(json.loads(message))
            if events[-1]["type"] == kind:
                return events
