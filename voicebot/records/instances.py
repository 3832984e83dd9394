"""Several gateway instances on one records database: heartbeats, and ending the calls of a lost instance.

An instance killed mid-call (SIGKILL, out of memory, a dead host) cannot write its calls' ends, and they
would stay "active" forever. So each instance (one `voicebot serve` process, id `host-pid-random`) stamps
the calls it takes, writes a heartbeat row every `heartbeat_s`, and on every beat ends the still-active
calls of any instance not heard from for `lost_after_s`, with the reason `LOST_REASON` and the time it was
last heard of. A restarted single instance does the same for the calls its previous run left open.

Times are the database's clock, so instances on hosts whose clocks disagree still agree on who is stale.
Only time this instance could see the database counts: after an outage that cut everyone off, nobody is
judged until they had `lost_after_s` to beat again. A false alarm heals itself: a call's own end record,
written when the instance gets through again, replaces the reaper's.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from voicebot.records.db import ensure_schema, is_unavailable
from voicebot.records.models import CallRow, InstanceRow, utc

log = logging.getLogger("voicebot.records")

LOST_REASON = "gateway instance lost"
HEARTBEAT_S = 3.0
LOST_AFTER_S = 15.0  # five missed beats: no pause of a healthy process comes near it


def new_instance_id() -> str:
    """Unique per process start (a restart on the same host and pid is a new instance)."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Lost:
    """An instance found lost, and the calls of it this beat ended."""

    instance: str
    last_seen: datetime | None  # None: it never wrote a heartbeat (or its row is gone)
    calls: tuple[str, ...]


class Heartbeat:
    """One instance's heartbeat and reaper: `beat()` once, or `start()` a thread that beats until `stop()`."""

    def __init__(
        self,
        engine: Engine,
        instance: str,
        heartbeat_s: float = HEARTBEAT_S,
        lost_after_s: float = LOST_AFTER_S,
    ) -> None:
        self.engine, self.instance = engine, instance
        self.heartbeat_s, self.lost_after = heartbeat_s, timedelta(seconds=lost_after_s)
        self._watching_since: datetime | None = None  # first beat after a failure (None: no failure yet)
        self._failed = False
        self._schema_ready = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> list[Lost]:
        """Write this instance's heartbeat, then end the active calls of lost instances (one transaction).

        Raises what the database raised; the thread logs it and beats again later.
        """
        if not self._schema_ready:
            ensure_schema(self.engine)
            self._schema_ready = True
        with Session(self.engine) as session, session.begin():
            now = utc(session.scalar(select(func.current_timestamp())))
            if now is None:
                raise RuntimeError("the database did not tell its time")
            me = session.get(InstanceRow, self.instance)
            if me is None:
                session.add(InstanceRow(id=self.instance, host=socket.gethostname()[:255], pid=os.getpid(),
                                        started_at=now, seen_at=now))  # fmt: skip
            else:
                me.seen_at = now
            if self._failed:
                self._failed, self._watching_since = False, now
            return self._reap(session, now)

    def _reap(self, session: Session, now: datetime) -> list[Lost]:
        horizon = now - self.lost_after
        if self._watching_since is not None and self._watching_since > horizon:
            return []  # back from an outage: everyone gets `lost_after` to beat again first
        others = select(CallRow.instance).where(
            CallRow.status == "active", CallRow.instance.is_not(None), CallRow.instance != self.instance
        )
        found: list[Lost] = []
        for instance in session.scalars(others.distinct()).all():
            assert instance is not None
            row = session.get(InstanceRow, instance)
            last = utc(row.seen_at) if row is not None else None
            if last is not None and last >= horizon:
                continue
            calls = select(CallRow.id, CallRow.started_at).where(
                CallRow.status == "active", CallRow.instance == instance
            )
            # No heartbeat row: a call written late (a spool replayed) of an instance already reaped.
            ids = [
                cid for cid, started in session.execute(calls) if last is not None or utc(started) < horizon
            ]
            if ids:
                session.execute(
                    update(CallRow)
                    .where(CallRow.id.in_(ids), CallRow.status == "active")
                    .values(status="ended", ended_at=last or now, end_reason=LOST_REASON)
                    .execution_options(synchronize_session=False)
                )
                found.append(Lost(instance, last, tuple(ids)))
            if row is not None:  # it is gone: no need to keep its row (a live one writes it again)
                session.execute(delete(InstanceRow).where(InstanceRow.id == instance))
        return found

    def tick(self) -> list[Lost]:
        """`beat()`, its findings logged; a failure is logged (once per outage), never raised."""
        try:
            found = self.beat()
            for lost in found:
                heard = lost.last_seen.isoformat(timespec="seconds") if lost.last_seen else "never"
                log.warning("call records: gateway instance %s lost (last heard %s): ended its %d active "
                            "call(s)", lost.instance, heard, len(lost.calls))  # fmt: skip
        except Exception as exc:
            if not self._failed:
                if is_unavailable(exc):
                    log.warning("call records: heartbeat: database unavailable (%s)", type(exc).__name__)
                else:
                    log.exception("call records: heartbeat failed")
            self._failed = True
            return []
        return found

    def _run(self) -> None:
        while True:
            self.tick()
            if self._stop.wait(self.heartbeat_s):
                return

    def start(self) -> None:
        """Beat now and every `heartbeat_s` in a daemon thread (never blocks the caller); idempotent."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="call-records-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop beating (waits for a beat in progress)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def forget(self) -> None:
        """Remove this instance's row on a clean shutdown (its calls have ended); errors are only logged."""
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(delete(InstanceRow).where(InstanceRow.id == self.instance))
        except Exception as exc:
            log.warning("call records: cannot remove instance %s (%s)", self.instance, type(exc).__name__)
