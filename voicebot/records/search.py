"""Finding calls in the records: the operator console's history filters and the dashboard's time window.

Every filter is one SQL condition on the calls table (a turn's intent, sentiment or words through an EXISTS
on the turns table), so the same query runs on SQLite and PostgreSQL and only the page of calls asked for
leaves the database. Blocking, like every read here: from async code, run it in a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, and_, exists, not_, or_, select
from sqlalchemy.orm import Session, selectinload

from voicebot.records.models import CallRow, TurnRow
from voicebot.records.views import CallDetail, CallSummary, _summary, _transfer, _turn

Outcome = Literal["contained", "transferred", "active", "error"]
OUTCOMES: tuple[Outcome, ...] = ("contained", "transferred", "active", "error")
# End reasons of calls that failed rather than finished (the session core's wording).
ERROR_REASONS = ("internal error%", "limit exceeded%", "line dead%", "call failed%", "gateway instance lost%")


@dataclass(frozen=True)
class CallFilter:
    """What a history search asks for; None = any. `text` matches the caller's words, the bot's replies
    and the call id; `outcome` is `contained` (ended without a person), `transferred`, `active` or `error`."""

    since: datetime | None = None
    until: datetime | None = None
    outcome: Outcome | None = None
    intent: str | None = None
    sentiment: str | None = None
    protocol: str | None = None
    text: str | None = None
    limit: int = 50
    offset: int = 0


def _transferred() -> ColumnElement[bool]:
    return or_(CallRow.transfer_target.is_not(None), CallRow.transfer_reason.is_not(None))


def _failed() -> ColumnElement[bool]:
    return or_(*(CallRow.end_reason.like(pattern) for pattern in ERROR_REASONS))


def _outcome(outcome: Outcome) -> ColumnElement[bool]:
    if outcome == "transferred":
        return _transferred()
    if outcome == "active":
        return CallRow.status == "active"
    if outcome == "error":
        return and_(CallRow.status == "ended", not_(_transferred()), _failed())
    return and_(CallRow.status == "ended", not_(_transferred()), not_(_failed()))


def _turn_has(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists().where(TurnRow.call_id == CallRow.id, condition)


def conditions(f: CallFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if f.since is not None:
        found.append(CallRow.started_at >= f.since)
    if f.until is not None:
        found.append(CallRow.started_at < f.until)
    if f.outcome is not None:
        found.append(_outcome(f.outcome))
    if f.protocol:
        found.append(CallRow.protocol == f.protocol)
    if f.intent:
        found.append(_turn_has(TurnRow.intent == f.intent))
    if f.sentiment:
        found.append(_turn_has(TurnRow.sentiment == f.sentiment))
    if f.text:
        words = "%" + f.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        said = or_(TurnRow.transcript.ilike(words, escape="\\"), TurnRow.reply.ilike(words, escape="\\"))
        found.append(or_(CallRow.id.ilike(words, escape="\\"), _turn_has(said)))
    return found


def search_calls(engine: Engine, f: CallFilter) -> list[CallSummary]:
    """The calls that match, most recent first."""
    query = select(CallRow).where(*conditions(f)).order_by(CallRow.started_at.desc(), CallRow.id)
    with Session(engine) as session:
        rows = session.scalars(query.offset(f.offset).limit(f.limit))
        return [_summary(row) for row in rows]


def calls_with_turns(engine: Engine, since: datetime, until: datetime, limit: int) -> list[CallDetail]:
    """The calls started in [since, until) with their turns and transfers (the dashboard's input), most
    recent first, at most `limit`."""
    query = (
        select(CallRow)
        .where(CallRow.started_at >= since, CallRow.started_at < until)
        .order_by(CallRow.started_at.desc(), CallRow.id)
        .limit(limit)
        .options(selectinload(CallRow.turn_rows), selectinload(CallRow.transfer_rows))
    )
    with Session(engine) as session:
        return [
            CallDetail(
                call=_summary(row),
                meta=row.meta or {},
                turns=[_turn(t) for t in row.turn_rows],
                transfers=[_transfer(t) for t in row.transfer_rows],
            )
            for row in session.scalars(query)
        ]


def facets(engine: Engine) -> dict[str, Any]:
    """The values the history filters offer: intents, sentiments and protocols seen in the records."""
    with Session(engine) as session:
        intents = session.scalars(select(TurnRow.intent).where(TurnRow.intent.is_not(None)).distinct())
        sentiments = session.scalars(
            select(TurnRow.sentiment).where(TurnRow.sentiment.is_not(None)).distinct()
        )
        protocols = session.scalars(select(CallRow.protocol).distinct())
        return {
            "intents": sorted(i for i in intents if i),
            "sentiments": sorted(s for s in sentiments if s),
            "protocols": sorted(p for p in protocols if p),
            "outcomes": list(OUTCOMES),
        }
