"""The one thread that writes call records, so the event loop never waits on the database.

Calls hand it ops and go on at once. It writes them in arrival order (a call's start before its turns);
when the database is unavailable, ops go to the backlog (spool) and the thread stops trying for `retry_s`,
so an outage costs one connect timeout per retry, not one per record. The backlog is retried on the next op
after that, every `retry_s` while idle, on `flush()` and on `close()`; new ops queue behind it until it is
empty, which keeps every call's writes in order across an outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Literal

from sqlalchemy import Engine

from voicebot.records.apply import apply, describe
from voicebot.records.capture import Op
from voicebot.records.db import ensure_schema, is_unavailable
from voicebot.records.spool import Backlog, Stop

log = logging.getLogger("voicebot.records")

# ("flush", None) is a retry nobody waits for: the first item (what a previous run spooled) and idle retries.
Item = tuple[Literal["op"], Op] | tuple[Literal["flush"], Future[int] | None] | tuple[Literal["stop"], None]


class Writer:
    """Owns the writes of one `CallStore`: a queue in, the database or the backlog out."""

    def __init__(self, engine: Engine, backlog: Backlog, retry_s: float = 5.0) -> None:
        self.engine, self.backlog, self.retry_s = engine, backlog, retry_s
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._queue.put(("flush", None))  # first of all: replay what a previous run spooled
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._schema_ready = False
        self._failed_at: float | None = None  # monotonic time of the last "unavailable"; None = DB is up
        self._closed = False

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="call-records", daemon=True)
                self._thread.start()

    def submit(self, op: Op) -> None:
        if self._closed:  # a call still talking during shutdown: straight to the spool, for the next run
            self.backlog.add(op)
            return
        self._ensure_thread()
        self._queue.put(("op", op))

    def flush(self) -> Future[int]:
        """Resolves, once everything submitted before is written or kept, to the number still kept."""
        done: Future[int] = Future()
        if self._closed:
            done.set_result(len(self.backlog))
            return done
        self._ensure_thread()
        self._queue.put(("flush", done))
        return done

    def close(self, timeout: float = 30.0) -> int:
        """Write or spool everything queued, stop the thread; returns how many records are still kept."""
        with self._start_lock:
            thread, self._closed = self._thread, True
        if thread is not None and thread.is_alive():
            self._queue.put(("stop", None))
            thread.join(timeout)
            if thread.is_alive():  # stuck in a query (a frozen database): what waits goes to the spool
                spooled = self._spool_queued()
                log.error("call records: writer stuck after %.0f s; %d records spooled", timeout, spooled)
        return len(self.backlog)

    def _spool_queued(self) -> int:
        count = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._queue.put(("stop", None))  # should the query ever return, the thread still ends
                return count
            if item[0] == "op":
                self.backlog.add(item[1])
                count += 1

    # --- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.retry_s if len(self.backlog) else None)
            except queue.Empty:
                item = ("flush", None)  # idle with a backlog: time to retry
            try:
                if item[0] == "op":
                    self._take(item[1])
                else:  # someone waiting (flush, close) means now, whenever the last failure was
                    self._retry(force=item[1] is not None or item[0] == "stop")
            except Exception:  # a bug here must not stop the thread: every later record would be lost
                log.exception("call records: writer error")
            if item[0] == "flush" and item[1] is not None and item[1].set_running_or_notify_cancel():
                item[1].set_result(len(self.backlog))
            elif item[0] == "stop":
                return

    def _take(self, op: Op) -> None:
        if len(self.backlog):
            self._retry(force=False)
        if len(self.backlog) or not self._write(op):
            self.backlog.add(op)  # behind older records, so each call's writes stay in order

    def _retry(self, force: bool) -> None:
        """Replay the backlog, unless the last failure is less than `retry_s` old (and not forced)."""
        if not len(self.backlog):
            return
        if not force and self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_s:
            return

        def write(op: Op) -> None:
            if not self._write(op):
                raise Stop

        if self.backlog.replay(write) == 0:
            log.warning("call records: spooled records written to the database")

    def _write(self, op: Op) -> bool:
        """True when the op is written (or set aside as unwritable); False when the DB is unavailable."""
        try:
            if not self._schema_ready:
                ensure_schema(self.engine)
                self._schema_ready = True
            apply(self.engine, op)
        except Exception as exc:
            if not is_unavailable(exc):
                self.backlog.reject(op, exc)
                return True
            if self._failed_at is None:
                log.warning("call records: database unavailable (%s); spooling the %s and later records",
                            type(exc).__name__, describe(op))  # fmt: skip
            self._failed_at = time.monotonic()
            return False
        self._failed_at = None
        return True
