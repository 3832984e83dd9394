"""The gateway: one FastAPI app, one process, every way a call comes in.

HTTP: the browser page `/`, `/health`, `/metrics` (Prometheus, telephony.metrics), `/twilio/voice`
(TwiML for a Twilio number, telephony.twiml) and the warm hand-off's `/calls/{id}/handoff` and
`/twilio/handoff` (telephony.handoff).
WebSockets: `/ws` (browser/app calls, telephony.browser) and `/twilio/stream` (Twilio Media Streams,
telephony.twilio). TCP: Asterisk AudioSocket on `server.audiosocket_port` (telephony.audiosocket), started
in the app's lifespan. Models load once and are shared by every call; the `CallHub` admits calls and holds
the call-record observers. `GatewayServer` lets running calls finish (`server.drain_s`) on shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, Response

from telephony import audiosocket
from telephony.browser import browser_call
from telephony.console import LiveFeed, console_router
from telephony.domains import domain_names
from telephony.handoff import HandoffDesk, add_handoff_routes
from telephony.metrics import CONTENT_TYPE, MetricsObserver
from telephony.routes import CARRIERS, add_carrier_routes
from telephony.session import CallHub, CallObserver
from telephony.stallwatch import StallWatch
from telephony.twilio import twilio_call
from telephony.twiml import token_ok, voice_response
from voicebot.brain import BrainFactory, EchoBrain, HasFixedPhrases
from voicebot.config import ServerConfig, VoicebotConfig
from voicebot.memory import MemoryTrimmer
from voicebot.pipeline import Services
from voicebot.records import CallStore
from voicebot.tts import split_sentences
from voicebot.tts.cache import BackgroundWarm

log = logging.getLogger(__name__)


class Gateway:
    """What the app's lifespan starts and stops: the models, the call hub, the AudioSocket listener."""

    def __init__(
        self,
        config: VoicebotConfig,
        services: Services | None,
        brain_factory: BrainFactory,
        observers: Sequence[CallObserver],
    ) -> None:
        self.config = config
        self.hub = CallHub(config.server, brain_factory, observers, services)
        self.audiosocket: asyncio.Server | None = None
        self.audiosocket_port: int | None = None
        self._owns_services = services is None
        self._drained = False
        self.trimmer = MemoryTrimmer(config.server.memory_trim_s)
        self.stallwatch = StallWatch(config.server.stall_warn_ms)
        self.warm: BackgroundWarm | None = None

    async def start(self) -> None:
        server = self.config.server
        if self.hub.services is None:
            services = self.hub.services = Services.load(self.config)
            brain = self.hub.brain_factory()
            greeting = brain.greeting()
            for rate in (8_000, 16_000):  # telephony and browser: the first caller never waits for it
                services.tts.warm(split_sentences(greeting.text) if greeting else [], rate)
            if isinstance(brain, HasFixedPhrases) and self.config.tts.warm_replies:
                self.warm = BackgroundWarm(services.tts, brain.fixed_phrases(), [8_000])
                self.warm.start()
            # Everything alive now (models, app, libraries) lives as long as the process: out of the
            # collector's reach, a full collection no longer walks it. One took 254 ms here, stopping every
            # call's audio (docs/reliability.md, soak). Only when this gateway owns the process's models.
            gc.collect()
            gc.freeze()
            # CPython runs a full collection only once the objects new to the oldest generation exceed a
            # quarter of those its last full collection kept, and that count still includes the frozen
            # ~450k: the first full collection came only after ~110k new objects and stopped the loop for
            # 96 ms (a 30-minute soak). Collecting once more now resets the count to the unfrozen few.
            gc.collect()
        if os.name == "posix" and os.geteuid() == 0:
            log.warning("running as root: a gateway faces the public, run it as an unprivileged user")
        if server.audiosocket_port is not None:
            where = f"{server.audiosocket_host}:{server.audiosocket_port}"
            try:
                self.audiosocket = await audiosocket.start_server(
                    self.hub, server.audiosocket_host, server.audiosocket_port
                )
            except OSError as exc:
                raise RuntimeError(
                    f"AudioSocket cannot listen on {where}: {exc.strerror} (use --audiosocket-port, "
                    "or VOICEBOT__SERVER__AUDIOSOCKET_PORT=null to turn it off)"
                ) from exc
            self.audiosocket_port = int(self.audiosocket.sockets[0].getsockname()[1])
            log.info("AudioSocket listening on %s:%d", server.audiosocket_host, self.audiosocket_port)
        await self._lifecycle("on_serve_start")  # the call store's heartbeat and lost-instance reaper
        self.trimmer.start()
        self.stallwatch.start()  # after the models load: that wait is expected

    async def drain(self, abort: Callable[[], bool] = lambda: False) -> None:
        """Stop taking calls and let running ones finish (up to `drain_s`); idempotent."""
        if self._drained:
            return
        self._drained = True
        if self.audiosocket is not None:
            self.audiosocket.close()
        await self.hub.drain(self.config.server.drain_s, abort)

    async def _lifecycle(self, hook: str) -> None:
        """Observers with an optional `on_serve_start`/`on_serve_stop` hear when the gateway starts/stops."""
        for observer in self.hub.observers:
            method = getattr(observer, hook, None)
            if method is not None:
                try:
                    await method()
                except Exception:
                    log.exception("call observer %s.%s failed", type(observer).__name__, hook)

    async def stop(self) -> None:
        await self.drain()
        await self._lifecycle("on_serve_stop")  # after the drain: every call's end is queued by now
        await self.trimmer.stop()
        await self.stallwatch.stop()
        if self.warm is not None:
            await asyncio.to_thread(self.warm.stop)
        if self.audiosocket is not None:
            await self.audiosocket.wait_closed()
        if self._owns_services and self.hub.services is not None:
            self.hub.services.close()


def create_app(
    config: VoicebotConfig,
    services: Services | None = None,
    brain_factory: BrainFactory = EchoBrain,
    observers: Sequence[CallObserver] = (),
) -> FastAPI:
    """The gateway app; `app.state.gateway` holds the hub (`.hub.observers` is the observer list, metrics
    first) and `app.state.metrics` the app's own metrics."""
    metrics = MetricsObserver()
    feed = LiveFeed(config.console.live_partials) if config.console.enabled else None
    desk = HandoffDesk(config, next((o for o in observers if isinstance(o, CallStore)), None))
    gateway = Gateway(config, services, brain_factory, [metrics, *observers, desk, *filter(None, [feed])])
    gateway.stallwatch.on_lag = metrics.loop_lag.observe
    hub = gateway.hub
    closers: list[Callable[[], None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()
        for close in closers:  # after the calls: the console's reading threads
            close()

    app = FastAPI(title="voicebot gateway", lifespan=lifespan)
    app.state.gateway = gateway
    app.state.metrics = metrics
    page = files("telephony").joinpath("static/index.html").read_text()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict[str, Any]:
        status = "ok" if hub.accepting else "draining"
        warming = gateway.warm is not None and gateway.warm.running
        return {"status": status, "active_calls": len(hub.calls), "max_calls": config.server.max_calls,
                "warming_tts": warming}  # fmt: skip

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if not token_ok(config.server.token, request):
            return Response("missing or wrong token", status_code=403, media_type="text/plain")
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/domains")
    async def domains(request: Request) -> Response:
        if not token_ok(config.server.token, request):
            return JSONResponse({"error": "missing or wrong token"}, status_code=403)
        names = domain_names(hub.brain_factory)
        return JSONResponse({"domains": names, "default": names[0] if names else None})

    @app.websocket("/ws")
    async def ws_call(
        ws: WebSocket, rate: str = "16000", token: str | None = None, domain: str | None = None
    ) -> None:
        await browser_call(ws, hub, rate, token, domain)

    @app.api_route("/twilio/voice", methods=["GET", "POST"])
    async def twilio_voice(request: Request) -> Response:
        return await voice_response(config.server, request)

    @app.websocket("/twilio/stream")
    async def twilio_stream(ws: WebSocket, token: str | None = None) -> None:
        await twilio_call(ws, hub, token)

    add_carrier_routes(app, hub)  # Telnyx, Plivo, Exotel, Vonage, jambonz, FreeSWITCH, Genesys
    add_handoff_routes(app, desk, config)
    if feed is not None:  # the operator console (telephony.console): its own auth, API and live feed
        router, close_console = console_router(config, hub, feed, observers)
        app.include_router(router)
        closers.append(close_console)
    return app


class GatewayServer(uvicorn.Server):
    """uvicorn, except that on shutdown running calls get `drain_s` to finish before uvicorn closes
    their WebSockets (it would close them at once, mid-sentence)."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.gateway.drain(abort=lambda: self.force_exit)  # a second Ctrl-C stops waiting
        await super().shutdown(sockets)


def endpoints(server: ServerConfig) -> list[str]:
    """What `voicebot serve` prints: every way in."""
    base = f"{server.host}:{server.port}"
    if server.public_url:
        public = server.public_url.rstrip("/")
        stream = public.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/twilio/stream"
    else:
        public, stream = "https://<public host>", "wss://<Host of the webhook request>/twilio/stream"
    token = "&token=…" if server.token else ""
    console = "?token=…" if server.token else "   (loopback only: no token set)"
    if server.audiosocket_port is None:
        tcp = "off (server.audiosocket_port: null)"
    else:
        where = f"{server.audiosocket_host}:{server.audiosocket_port or '<free port, logged at start-up>'}"
        tcp = f"tcp://{where}   dialplan: AudioSocket(${{UUID}},{where})"
    return [
        f"voicebot gateway on http://{base}/  (browser voice page)",
        f"  browser calls:  ws://{base}/ws?rate=16000{token}",
        f"  Twilio webhook: {public}/twilio/voice   (GET/POST: the number's 'A call comes in' URL)",
        f"  Twilio stream:  {stream}",
        f"  AudioSocket:    {tcp}",
        f"  carriers:       {stream.rsplit('/twilio/stream', 1)[0]}{{{','.join(CARRIERS)}}}   (see README)",
        f"  health:         http://{base}/health",
        f"  metrics:        http://{base}/metrics   (Prometheus)",
        f"  hand-offs:      http://{base}/calls/<call id>/handoff{'   (token)' if server.token else ''}",
        f"  console:        http://{base}/console{console}",
    ]


def uvicorn_config(app: FastAPI, server: ServerConfig, log_level: str = "info") -> uvicorn.Config:
    """uvicorn for the gateway: WebSocket messages over twice `max_message_bytes` are refused by the
    protocol layer (close 1009) before they are buffered (uvicorn's default would take 16 MiB); those just
    over the limit still reach the parsers, which end the call with a reason that names the size. Pings
    find dead peers.
    X-Forwarded-For is trusted from loopback only (uvicorn's default), i.e. a proxy on the same box."""
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_level=log_level,
        log_config=None,  # uvicorn's lines go through our handlers, which mask tokens and caller data
        ws_max_size=2 * server.max_message_bytes,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
    )


def serve(
    config: VoicebotConfig, brain_factory: BrainFactory = EchoBrain, observers: Sequence[CallObserver] = ()
) -> None:
    app = create_app(config, brain_factory=brain_factory, observers=observers)
    server = GatewayServer(uvicorn_config(app, config.server), app.state.gateway)
    for line in endpoints(config.server):
        print(line, flush=True)
    server.run()
