"""The console's routes: the page and its login, the JSON API over the call records, the live feed (SSE)
and the one state change, "transfer to a person". Every route below `/console` except the login form and
the static assets (which hold no data) asks `Auth` first (see `telephony.console.auth`).

Record reads are blocking SQL: they run on the console's own two threads, never on the event loop that
paces every call's audio, and never on the model pool.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar, cast, get_args
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
from sqlalchemy import Engine

from telephony.console.auth import COOKIE, Auth, Session, same_origin
from telephony.console.listen import listen
from telephony.console.live import LiveFeed
from telephony.console.review import Retrain, Reviews, check_review, reviewed_examples
from telephony.console.stats import dashboard
from telephony.session import CallHub, CallObserver
from telephony.twiml import BodyTooLarge, read_body
from voicebot.config import VoicebotConfig
from voicebot.records import CallStore
from voicebot.records.db import default_url, ensure_schema, make_engine, resolve_url
from voicebot.records.search import CallFilter, Outcome, calls_with_turns, facets, search_calls
from voicebot.records.views import CallDetail, CallSummary, get_call

T = TypeVar("T")
STATIC = files("telephony").joinpath("static/console")
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
LOGIN_BYTES = 4096
# The dashboard's figures are per hour: five open dashboards need not read and count a day of calls five
# times over; one reading serves every console for this long (it is CPU the calls' event loop shares).
STATS_CACHE_S = 5.0


def _page(name: str) -> str:
    return STATIC.joinpath(name).read_text()


class Records:
    """The records database, read on the console's threads. The gateway's own `CallStore` when it has
    one (the same engine and pool), else the configured database, opened on first use."""

    def __init__(self, config: VoicebotConfig, observers: Sequence[CallObserver]) -> None:
        store = next((o for o in observers if isinstance(o, CallStore)), None)
        self._engine: Engine | None = store.engine if store is not None else None
        self._own = store is None
        self._url = config.server.records_url or default_url(config.cache_dir)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="console")
        self._ready = False

    def _run(self, query: Callable[[Engine], T]) -> T:
        if self._engine is None:
            self._engine = make_engine(resolve_url(self._url))
        if not self._ready:
            ensure_schema(self._engine)
            self._ready = True
        return query(self._engine)

    def read(self, query: Callable[[Engine], T]) -> Awaitable[T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, self._run, query)

    def close(self) -> None:
        """End the threads; an engine of our own is disposed of (the gateway's store closes its own)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own and self._engine is not None:
            self._engine.dispose()


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _filter(request: Request, limit: int) -> CallFilter:
    q = request.query_params
    outcome = q.get("outcome") or None
    if outcome is not None and outcome not in get_args(Outcome):
        raise ValueError(f"outcome must be one of {', '.join(get_args(Outcome))}")
    return CallFilter(
        since=_time(q.get("since")),
        until=_time(q.get("until")),
        outcome=cast(Outcome | None, outcome),
        intent=q.get("intent") or None,
        sentiment=q.get("sentiment") or None,
        protocol=q.get("protocol") or None,
        text=(q.get("q") or "").strip() or None,
        limit=min(int(q.get("limit") or 50), limit),
        offset=max(int(q.get("offset") or 0), 0),
    )


def turn_start_s(detail: CallDetail) -> list[float | None]:
    """Where each turn starts in the call's recording (s): the caller's speech when the turn has a
    waterfall, else its reply. A turn is written when its reply has played (`created_at`), so the reply
    began `played_ms` before that and the caller's speech `first_audio_sent - speech_start` before that."""
    starts: list[float | None] = []
    for turn in detail.turns:
        end = (turn.created_at - detail.call.started_at).total_seconds()
        at = turn.extra.get("at_ms") or {}
        back = float(turn.played_ms or 0.0)
        sent, spoke = at.get("first_audio_sent"), at.get("speech_start")
        if isinstance(sent, int | float) and isinstance(spoke, int | float):
            back += float(sent) - float(spoke)
        starts.append(round(max(end - back / 1000.0, 0.0), 2))
    return starts


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

    def refused(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def guarded(request: Request, answer: Callable[[Session], Awaitable[Response]]) -> Response:
        session = auth.who(request)
        if session is None:
            return refused(401, "log in first: /console/login, or /console?token=…")
        try:
            return await answer(session)
        except ValueError as exc:
            return refused(400, str(exc))

    stats_cache: dict[int, tuple[float, dict[str, Any]]] = {}

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

    reviews = Reviews(reviews_path(config, hub), known_intents(hub))
    retrain_hook = Retrain(config.console.retrain_command, reviews.path)

    async def change(request: Request, answer: Callable[[Session], Awaitable[Response]]) -> Response:
        """A supervisor's state change from the console's own page (see `auth`)."""

        async def checked(s: Session) -> Response:
            if not auth.csrf_ok(request, s):
                return refused(403, "missing or wrong CSRF token")
            if s.role != "supervisor":
                return refused(403, "only a supervisor may do this")
            return await answer(s)

        return await guarded(request, checked)

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

        return await guarded(request, answer)

    @router.get("/api/calls")
    async def calls(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            f = _filter(request, config.console.max_results)
            found = await records.read(lambda e: search_calls(e, f))
            return JSONResponse([summary_json(c) for c in found])

        return await guarded(request, answer)

    @router.get("/api/facets")
    async def facet_values(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            return JSONResponse(await records.read(facets))

        return await guarded(request, answer)

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
            return JSONResponse(data)

        return await guarded(request, answer)

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

        return await guarded(request, answer)

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

        return await guarded(request, answer)

    @router.get("/api/live")
    async def live(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
            return StreamingResponse(feed.stream(), media_type="text/event-stream", headers=headers)

        return await guarded(request, answer)

    @router.post("/api/live/{call_id}/transfer")
    async def transfer(request: Request, call_id: str) -> Response:
        async def answer(s: Session) -> Response:
            live_call = hub.calls.get(call_id)
            if live_call is None:
                return refused(404, "no such live call")
            reason = f"operator {s.user} transferred the call"
            await live_call.transfer(config.console.transfer_target, reason, config.console.transfer_notice)
            return JSONResponse({"ok": True, "target": config.console.transfer_target})

        return await change(request, answer)

    @router.get("/api/reviews")
    async def review_list(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            found = await asyncio.to_thread(reviews.read)
            return JSONResponse({"file": str(reviews.path), "known_intents": reviews.known_intents,
                                 "reviews": found[::-1], "examples": reviewed_examples(found),
                                 "retrain": retrain_hook.status()})  # fmt: skip

        return await guarded(request, answer)

    @router.post("/api/calls/{call_id}/turns/{index}/review")
    async def review(request: Request, call_id: str, index: int) -> Response:
        async def answer(s: Session) -> Response:
            try:
                body = json.loads(await read_body(request, LOGIN_BYTES))
            except (BodyTooLarge, json.JSONDecodeError) as exc:
                raise ValueError(f"a JSON body of at most {LOGIN_BYTES} bytes, please") from exc
            verdict, intent, example = check_review(
                str(body.get("verdict")), str(body.get("intent")), str(body.get("example") or ""),
                reviews.known_intents,
            )  # fmt: skip
            detail = await records.read(lambda e: get_call(e, call_id))
            turn = next((t for t in detail.turns if t.index == index), None) if detail is not None else None
            if turn is None or turn.transcript is None:
                return refused(404, "no such caller turn")
            data = {"index": turn.index, "transcript": turn.transcript, "intent": turn.intent,
                    "confidence": turn.confidence}  # fmt: skip
            written = await asyncio.to_thread(reviews.add, call_id, data, s.user, verdict, intent, example)
            return JSONResponse(written)

        return await change(request, answer)

    @router.get("/api/retrain")
    async def retrain_status(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            return JSONResponse(retrain_hook.status())

        return await guarded(request, answer)

    @router.post("/api/retrain")
    async def retrain(request: Request) -> Response:
        async def answer(_: Session) -> Response:
            retrain_hook.start()
            return JSONResponse(retrain_hook.status())

        return await change(request, answer)

    return router, records.close


def reviews_path(config: VoicebotConfig, hub: CallHub) -> Path:
    """`console.reviews_file`, else reviewed.jsonl beside the domain the gateway answers with (the
    dialogue engine's factory knows it), else in the cache dir."""
    if config.console.reviews_file is not None:
        return config.console.reviews_file
    domain = getattr(getattr(hub.brain_factory, "domain", None), "path", None)
    return Path(domain if domain is not None else config.cache_dir) / "reviewed.jsonl"


def known_intents(hub: CallHub) -> list[str]:
    """The intents the running model knows (empty without a dialogue engine: any name is taken)."""
    labels = getattr(getattr(hub.brain_factory, "nlu", None), "labels", None)
    return sorted(getattr(labels, "intents", None) or [])


def summary_json(call: CallSummary) -> dict[str, Any]:
    """A call of the history list as JSON, the form `voicebot calls show --json` gives its `call`."""
    return cast(dict[str, Any], CallDetail(call=call, meta={}).as_json()["call"])
