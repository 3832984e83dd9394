"""Reading call records back: plain frozen dataclasses, detached from the ORM session that loaded them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from voicebot.records.models import CallRow, TransferRow, TurnRow, utc

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

V = TypeVar("V", bound="DataclassInstance")


@dataclass(frozen=True)
class CallSummary:
    id: str
    protocol: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    turns: int
    caller: str | None
    transfer_target: str | None
    transfer_reason: str | None
    recording: str | None
    instance: str | None  # the gateway process that took the call
    handoff_reason: str | None = None  # a transfer's hand-off reason code (voicebot.handoff.REASONS)

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class TurnView:
    index: int
    created_at: datetime
    transcript: str | None
    intent: str | None
    confidence: float | None
    slots: dict[str, Any]
    entities: dict[str, Any]
    sentiment: str | None
    frustration: float | None
    reply: str | None
    previous_heard: str | None
    previous_interrupted: bool | None
    barge_in: bool
    played_ms: float | None
    act: str | None
    action: str | None
    action_result: str | None
    actions: list[Any]
    timings_ms: dict[str, Any]
    extra: dict[str, Any]


@dataclass(frozen=True)
class TransferView:
    seq: int
    target: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class CallDetail:
    call: CallSummary
    meta: dict[str, Any]
    turns: list[TurnView] = field(default_factory=list)
    transfers: list[TransferView] = field(default_factory=list)
    handoff: dict[str, Any] | None = None  # the warm hand-off summary of a transfer (voicebot.handoff)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 strings, the duration included."""
        data = asdict(self)
        data["call"]["duration_s"] = self.call.duration_s
        return _iso(data)  # type: ignore[no-any-return]


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_iso(v) for v in value]
    return value


def _copy(cls: type[V], row: object, **override: Any) -> V:
    """A view from an ORM row: every field of the same name, times overridden as aware UTC."""
    values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name not in override}
    return cls(**values, **override)


def _summary(row: CallRow) -> CallSummary:
    reason = (row.handoff or {}).get("reason")
    return _copy(
        CallSummary, row, started_at=utc(row.started_at), ended_at=utc(row.ended_at), handoff_reason=reason
    )


def _turn(row: TurnRow) -> TurnView:
    return _copy(TurnView, row, created_at=utc(row.created_at))


def _transfer(row: TransferRow) -> TransferView:
    return _copy(TransferView, row, at=utc(row.at))


def list_calls(engine: Engine, limit: int) -> list[CallSummary]:
    """The most recent calls first."""
    with Session(engine) as session:
        rows = session.scalars(select(CallRow).order_by(CallRow.started_at.desc(), CallRow.id).limit(limit))
        return [_summary(row) for row in rows]


def get_call(engine: Engine, call_id: str) -> CallDetail | None:
    with Session(engine) as session:
        row = session.scalar(
            select(CallRow)
            .where(CallRow.id == call_id)
            .options(selectinload(CallRow.turn_rows), selectinload(CallRow.transfer_rows))
        )
        if row is None:
            return None
        return CallDetail(
            call=_summary(row),
            meta=row.meta or {},
            turns=[_turn(t) for t in row.turn_rows],
            transfers=[_transfer(t) for t in row.transfer_rows],
            handoff=row.handoff,
        )
