"""The gateway: a FastAPI app serving the browser page, `/ws` voice calls and `/health`.

Models load once at start-up and are shared by every call; each WebSocket is one call with its own
pipeline and brain. Refused calls get a WebSocket close code and reason: 1008 bad token, 1003 bad
rate, 1013 too many calls.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse

from telephony.browser import RATES, browser_call
from voicebot.brain import BrainFactory, EchoBrain
from voicebot.config import VoicebotConfig
from voicebot.pipeline import Services

log = logging.getLogger(__name__)


def create_app(
    config: VoicebotConfig, services: Services | None = None, brain_factory: BrainFactory = EchoBrain
) -> FastAPI:
    state: dict[str, Any] = {"services": services, "active": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = state["services"] is None
        if owned:
            state["services"] = Services.load(config)
            state["services"].tts.warm([g.text for g in [brain_factory().greeting()] if g], 16_000)
        yield
        if owned:
            state["services"].close()

    app = FastAPI(title="voicebot gateway", lifespan=lifespan)
    page = files("telephony").joinpath("static/index.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "active_calls": state["active"], "max_calls": config.server.max_calls}

    @app.websocket("/ws")
    async def ws_call(ws: WebSocket, rate: int = 16_000, token: str | None = None) -> None:
        refusal = None
        if config.server.token and token != config.server.token:
            refusal = (1008, "missing or wrong token")
        elif rate not in RATES:
            refusal = (1003, f"unsupported rate {rate}: use 8000-48000")
        elif state["active"] >= config.server.max_calls:
            refusal = (1013, "too many calls, try again later")
        await ws.accept()  # accept first, so the client gets the close code and reason, not a bare 403
        if refusal is not None:
            await ws.close(code=refusal[0], reason=refusal[1])
            return
        state["active"] += 1
        try:
            reason = await browser_call(ws, state["services"], brain_factory(), rate)
            log.info("call ended: %s", reason)
        finally:
            state["active"] -= 1

    return app


def serve(config: VoicebotConfig, brain_factory: BrainFactory = EchoBrain) -> None:
    host, port = config.server.host, config.server.port
    print(f"voicebot gateway on http://{host}:{port}/  (browser voice page)", flush=True)
    print(
        f"  WebSocket calls: ws://{host}:{port}/ws?rate=16000   health: http://{host}:{port}/health",
        flush=True,
    )
    uvicorn.run(create_app(config, brain_factory=brain_factory), host=host, port=port, log_level="info")
