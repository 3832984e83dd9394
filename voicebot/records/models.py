"""The call-records schema: calls, their turns and transfers (SQLAlchemy 2.0 typed ORM).

Everything stored here is already masked (see `capture`): the tables may be read by people who must
not see card numbers, emails or phone numbers. Turns and transfers carry their position in the call
(`index`, `seq`) as a unique key, so replaying a spooled write after a crash is a no-op, never a copy.
Timestamps are UTC; SQLite hands them back naive, `utc()` puts the zone back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, overload

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UNKNOWN = "unknown"  # protocol of a call whose start record never arrived (a row made by a later write)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class CallRow(Base):
    __tablename__ = "calls"
    # The lost-instance reaper's query (active calls by instance) every few seconds, on however many calls.
    __table_args__ = (Index("ix_calls_status_instance", "status", "instance"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    protocol: Mapped[str] = mapped_column(String(32))  # twilio / audiosocket / browser / file
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)  # provider ids (callSid, streamSid, UUID)
    caller: Mapped[str | None] = mapped_column(String(64))  # masked: only a hint such as '*********42'
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active / ended
    turns: Mapped[int] = mapped_column(Integer, default=0)
    transfer_target: Mapped[str | None] = mapped_column(Text)
    transfer_reason: Mapped[str | None] = mapped_column(Text)
    recording: Mapped[str | None] = mapped_column(Text)  # stereo WAV: caller left, bot right
    instance: Mapped[str | None] = mapped_column(String(128))  # the gateway process that took the call
    handoff: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a transfer's summary (voicebot.handoff)

    turn_rows: Mapped[list[TurnRow]] = relationship(
        back_populates="call", order_by="TurnRow.index", cascade="all, delete-orphan"
    )
    transfer_rows: Mapped[list[TransferRow]] = relationship(
        back_populates="call", order_by="TransferRow.seq", cascade="all, delete-orphan"
    )


class TurnRow(Base):
    """One `TurnDone` record: what the caller said, what the bot understood, did and said back."""

    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "index", name="uq_turns_call_index"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)  # 0 = the greeting, when the bot greets
    transcript: Mapped[str | None] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(128))
    confidence: Mapped[float | None] = mapped_column(Float)
    slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    entities: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sentiment: Mapped[str | None] = mapped_column(String(32))
    frustration: Mapped[float | None] = mapped_column(Float)
    reply: Mapped[str | None] = mapped_column(Text)
    previous_heard: Mapped[str | None] = mapped_column(Text)  # what the caller heard of the previous reply
    previous_interrupted: Mapped[bool | None] = mapped_column(Boolean)
    barge_in: Mapped[bool] = mapped_column(Boolean, default=False)  # the caller cut this reply short
    played_ms: Mapped[float | None] = mapped_column(Float)  # how much of this reply was played
    act: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(128))
    action_result: Mapped[str | None] = mapped_column(Text)
    actions: Mapped[list[Any]] = mapped_column(default=list)  # [{kind, target, reason}]
    timings_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)  # per stage: asr, nlu, policy, tts…
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)  # record keys without a column of their own
    created_at: Mapped[datetime]

    call: Mapped[CallRow] = relationship(back_populates="turn_rows")


class TransferRow(Base):
    __tablename__ = "transfers"
    __table_args__ = (UniqueConstraint("call_id", "seq", name="uq_transfers_call_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]

    call: Mapped[CallRow] = relationship(back_populates="transfer_rows")


class InstanceRow(Base):
    """A running gateway process and its last heartbeat (the database's clock), see `instances`."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]


@overload
def utc(moment: datetime) -> datetime: ...
@overload
def utc(moment: None) -> None: ...
@overload
def utc(moment: datetime | None) -> datetime | None: ...
def utc(moment: datetime | None) -> datetime | None:
    """The stored time as an aware UTC datetime (SQLite drops the zone it was written with)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
