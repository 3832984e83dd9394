"""Writing one op into the database, idempotently.

Ops can arrive twice (a spooled op replayed after a crash between commit and spool rewrite) or without the
call's start (its start op was set aside as unwritable), so every writer checks what is there first: turns and
transfers by their position in the call, and a missing call row is made from what the op knows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from voicebot.records.capture import Op
from voicebot.records.models import UNKNOWN, CallRow, TransferRow, TurnRow


def _at(op: Op) -> datetime:
    return datetime.fromisoformat(op["at"])


def _call(session: Session, op: Op) -> CallRow:
    """The op's call row; made on the spot (protocol 'unknown') when its start never reached the DB."""
    call = session.get(CallRow, op["call_id"])
    if call is None:
        call = CallRow(id=op["call_id"], protocol=UNKNOWN, meta={}, started_at=_at(op), status="active")
        call.turns = 0
        session.add(call)
    return call


def _start(session: Session, op: Op) -> None:
    call = session.get(CallRow, op["call_id"])
    if call is None:
        session.add(
            CallRow(id=op["call_id"], protocol=op["protocol"], meta=op["meta"], caller=op["caller"],
                    started_at=_at(op), status="active", turns=0, instance=op.get("instance"))
        )  # fmt: skip
    elif call.protocol == UNKNOWN:  # a later write got here first: fill in what only the start knows
        call.protocol, call.meta, call.caller = op["protocol"], op["meta"], op["caller"]
        call.started_at, call.instance = _at(op), op.get("instance")


def _turn(session: Session, op: Op) -> None:
    call = _call(session, op)
    index = int(op["index"])
    found = session.scalar(select(TurnRow.id).where(TurnRow.call_id == call.id, TurnRow.index == index))
    if found is None:
        session.add(TurnRow(call_id=call.id, index=index, created_at=_at(op), **op["fields"]))
    call.turns = max(call.turns or 0, index + 1)


def _transfer(session: Session, op: Op) -> None:
    call = _call(session, op)
    seq = int(op["seq"])
    query = select(TransferRow.id).where(TransferRow.call_id == call.id, TransferRow.seq == seq)
    found = session.scalar(query)
    if found is None:
        row = TransferRow(call_id=call.id, seq=seq, target=op["target"], reason=op["reason"], at=_at(op))
        session.add(row)
    call.transfer_target, call.transfer_reason = op["target"], op["reason"]


def _end(session: Session, op: Op) -> None:
    """Also over a reaper's "gateway instance lost" (a false alarm): the call's own end is the truth."""
    call = _call(session, op)
    call.ended_at, call.end_reason, call.status = _at(op), op["reason"], "ended"


def _audio(session: Session, op: Op) -> None:
    _call(session, op).recording = op["path"]


def _handoff(session: Session, op: Op) -> None:
    _call(session, op).handoff = op["summary"]


_WRITERS: dict[str, Callable[[Session, Op], None]] = {
    "start": _start, "turn": _turn, "transfer": _transfer, "end": _end, "audio": _audio,
    "handoff": _handoff,
}  # fmt: skip


def apply(engine: Engine, op: Op) -> None:
    """Write one op in its own transaction; raises what the database raised (see `db.is_unavailable`)."""
    writer = _WRITERS.get(str(op.get("kind")))
    if writer is None:
        raise ValueError(f"unknown record kind {op.get('kind')!r}")
    with Session(engine) as session, session.begin():
        writer(session, op)


def describe(op: dict[str, Any]) -> str:
    """A log-safe name for an op: its kind and call, never its (masked, but long) content."""
    return f"{op.get('kind')} record of call {op.get('call_id')}"
