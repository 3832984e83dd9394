"""The console's routes: the page and its login, the JSON API over the call records (read on the console's
own threads: `records`), the live feed (SSE), listen-in and "transfer to a person"; the learning routes are
`learn`'s. Every route below `/console` except the login form and the static assets (which hold no data)
asks `Auth` first (see `telephony.console.auth`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from telephony.console.auth import COOKIE, Auth, Session, refused, same_origin
from telephony.console.learn import learning_routes
from telephony.console.listen import listen
from telephony.console.live import LiveFeed
from telephony.console.records import Records, call_filter, summary_json, turn_start_s
from telephony.console.stats import dashboard
from telephony.session import CallHub, CallObserver
from telephony.twiml import BodyTooLarge, read_body
from voicebot.config import VoicebotConfig
from voicebot.handoff import wire_values
from voicebot.records.search import calls_with_turns, facets, search_calls
from voicebot.records.views import CallDetail, get_call

STATIC = files("telephony").joinpath("static/console")
ASSETS = {"console.js": "text/javascript", "learn.js": "text/javascript", "console.css": "text/css"}
LOGIN_BYTES = 4096
# The dashboard's figures are per hour: five open dashboards need not read and count a day of calls five
# times over; one reading serves every console for this long (it is CPU the calls' event loop shares).
STATS_CACHE_S = 5.0


def _page(name: str) -> str:
    return STATIC.joinpath(name).read_text()


def console_router(
    config: VoicebotConfig, hub: CallHub, feed: LiveFeed, observers: Sequence[CallObserver]
) -> tuple[APIRouter, Callable[[], None]]:
    """The console's routes, and what to call once the gateway has stopped (its reading threads end)."""
    auth = Auth(config.server, config.console)
    records = Records(config, observers)
    feed.hub = hub
    router = APIRouter(prefix="/console")
    secure_cookie = bool(config.server.public_url and config.server.public_url.startswith("https"))

    def with_cookie(response: Response, sid: str) -> Response:
        response.set_cookie(COOKIE, sid, max_age=int(auth.lifetime_s), path="/console", httponly=True,
                            samesite="strict", secure=secure_cookie)  # fmt: skip
        return response

    stats_cache: dict[int, tuple[float, dict[str, Any]]] = {}
    domain_of = learning_routes(router, auth, records, config, hub)

    @router.websocket("/api/live/{call_id}/listen")
    async def listen_in(ws: WebSocket, call_id: str) -> None:
        session, call = auth.who(ws), hub.calls.get(call_id)
        if session is None or not same_origin(ws):
            await ws.close(1008, "log in first")  # before accepting: the browser sees a refused handshake
        elif session.role != "supervisor" or not config.console.listen_in:
            await ws.close(1008, "only a supervisor may listen in (console.listen_in)")
        elif call is None:
            await ws.close(1008, "no such live call")
        else:
            await ws.accept()
            await listen(ws, hub, call)

    @router.get("", response_class=HTMLResponse)
    async def page(request: Request, token: str | None = None) -> Response:
        if token is not None:
            if not auth.token_ok(token):
                return HTMLResponse(_page("login.html").replace("<!--error-->", "Wrong token."), 403)
            return with_cookie(RedirectResponse("/console", 303), auth.new_session("token", "supervisor"))
        if auth.session(request) is not None:
            return HTMLResponse(_page("index.html"))
        if auth.local_ok(request):  # loopback, nothing configured: a session for the CSRF token
            return with_cookie(HTMLResponse(_page("index.html")), auth.new_session("local", "supervisor"))
        if auth.open_on_loopback:
            return refused(
                403, "no server.token or console.users set: the console is served on loopback only"
            )
        return RedirectResponse("/console/login", 303)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form() -> str:
        return _page("login.html")

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not same_origin(request):
            return refused(403, "cross-site login refused")
        try:
            form = dict(parse_qsl((await read_body(request, LOGIN_BYTES)).decode(errors="replace")))
        except BodyTooLarge:
            return refused(413, "login form too large")
        sid = await auth.login(form.get("name", ""), form.get("password", ""))
        if sid is None:
            return HTMLResponse(_page("login.html").replace("<!--error-->", "Wrong name or password."), 401)
        return with_cookie(RedirectResponse("/console", 303), sid)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = auth.session(request)
        if session is None or not auth.csrf_ok(request, session):
            return refused(403, "missing or wrong CSRF token")
        auth.end_session(request)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("/static/{name}")
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            return refused(404, "no such asset")
        return Response(_page(name), media_type=ASSETS[name])

    @router.get("/api/me")
    async def me(request: Request) -> Response:
        async def answer(s: Session) -> Response:
            return JSONResponse({"user": s.user, "role": s.role, "csrf": s.csrf})

        return await auth.guarded(request, answer)

    @router.get("/api/calls")
    async def calls(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            f = call_filter(request, config.console.max_results)
            found = await records.read(lambda e: search_calls(e, f))
            return JSONResponse([summary_json(c) for c in found])

        return await auth.guarded(request, answer)

    @router.get("/api/facets")
    async def facet_values(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            return JSONResponse(await records.read(facets))

        return await auth.guarded(request, answer)

    @router.get("/api/calls/{call_id}")
    async def call(request: Request, call_id: str) -> Response:
        async def answer(_: Session) -> Response:
            detail = await records.read(lambda e: get_call(e, call_id))
            if detail is None:
                return refused(404, "no such call")
            data = detail.as_json()
            for turn, start in zip(data["turns"], turn_start_s(detail), strict=True):
                turn["start_s"] = start
            data["recording_url"] = f"/console/api/calls/{call_id}/recording" if _recording(detail) else None
            data["domain"] = domain_of(detail)  # whose reviews and retrain its turns go to
            data["handoff_wire"] = wire_values(detail.handoff) if detail.handoff else None
            return JSONResponse(data)

        return await auth.guarded(request, answer)

    def _recording(detail: CallDetail) -> Path | None:
        """The call's WAV, only inside `server.recordings_dir` (the one folder the console may serve)."""
        folder, stored = config.server.recordings_dir, detail.call.recording
        if folder is None or stored is None:
            return None
        path = Path(stored).resolve()
        return path if path.is_relative_to(Path(folder).resolve()) and path.is_file() else None

    @router.get("/api/calls/{call_id}/recording")
    async def recording(request: Request, call_id: str) -> Response:
        async def answer(_: Session) -> Response:
            detail = await records.read(lambda e: get_call(e, call_id))
            path = _recording(detail) if detail is not None else None
            if path is None:
                return refused(404, "no recording of this call")
            return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "private"})

        return await auth.guarded(request, answer)

    @router.get("/api/stats")
    async def stats(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            hours = min(max(int(request.query_params.get("hours") or 24), 1), 24 * 31)
            cached = stats_cache.get(hours)
            if cached is not None and cached[0] > time.monotonic():
                return JSONResponse(cached[1] | {"live": len(feed.calls)})
            until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            since = until - timedelta(hours=hours)
            limit = config.console.dashboard_calls
            found = await records.read(lambda e: calls_with_turns(e, since, until, limit))
            figures = await records.read(
                lambda _: dashboard(found, since, until, config.console.low_confidence)
            )
            stats_cache[hours] = (time.monotonic() + STATS_CACHE_S, figures)
            return JSONResponse(figures | {"live": len(feed.calls)})

        return await auth.guarded(request, answer)

    @router.get("/api/live")
    async def live(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
            return StreamingResponse(feed.stream(), media_type="text/event-stream", headers=headers)

        return await auth.guarded(request, answer)

    @router.post("/api/live/{call_id}/transfer")
    async def transfer(request: Request, call_id: str) -> Response:
        async def answer(s: Session) -> Response:
            live_call = hub.calls.get(call_id)
            if live_call is None:
                return refused(404, "no such live call")
            reason = f"operator {s.user} transferred the call"
            await live_call.transfer(config.console.transfer_target, reason, config.console.transfer_notice)
            return JSONResponse({"ok": True, "target": config.console.transfer_target})

        return await auth.change(request, answer)

    return router, records.close
