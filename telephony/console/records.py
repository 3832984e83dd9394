"""The console's reading of the call records: on its own two threads (blocking SQL never runs on the event
loop that paces every call's audio, nor on the model pool), the history's query parameters, and the shapes
the page is given."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, get_args

from fastapi import Request
from sqlalchemy import Engine

from telephony.session import CallObserver
from voicebot.config import VoicebotConfig
from voicebot.records import CallStore
from voicebot.records.db import default_url, ensure_schema, make_engine, resolve_url
from voicebot.records.search import CallFilter, Outcome
from voicebot.records.views import CallDetail, CallSummary

T = TypeVar("T")


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


def call_filter(request: Request, limit: int) -> CallFilter:
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


def summary_json(call: CallSummary) -> dict[str, Any]:
    """A call of the history list as JSON, the form `voicebot calls show --json` gives its `call`."""
    return cast(dict[str, Any], CallDetail(call=call, meta={}).as_json()["call"])
