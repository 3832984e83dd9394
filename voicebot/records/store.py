"""`CallStore`: the gateway's call-records observer, and the way to read the records back.

Write-ahead: the call row is written when the call starts, each turn when it completes, the end reason at
the end, so a crash mid-call still leaves the call and its turns. Observer methods mask the data (see
`capture`) and hand it to one writer thread: they never wait for the database, whatever state it is in.
An unavailable database sends records to the spool (see `spool`), replayed once it is back. One store
serves every call of a process; while the gateway serves, it also beats for its instance and ends the calls
of instances that died on the same database (see `instances`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from voicebot.audio import write_stereo_wav
from voicebot.frames import PCM, CallEnded, Frame, TurnDone
from voicebot.records import capture
from voicebot.records.capture import Op
from voicebot.records.db import default_url, ensure_schema, make_engine, resolve_url, spool_path
from voicebot.records.instances import HEARTBEAT_S, LOST_AFTER_S, Heartbeat, new_instance_id
from voicebot.records.spool import MAX_MEMORY, Backlog
from voicebot.records.views import CallDetail, CallSummary, get_call, list_calls
from voicebot.records.writer import Writer

if TYPE_CHECKING:
    from voicebot.config import VoicebotConfig

log = logging.getLogger("voicebot.records")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
T = TypeVar("T")


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


class CallStore:
    """Observer for the gateway's session core (`on_start`/`on_event`/`on_end`) and reader for the CLI."""

    def __init__(
        self,
        url: str | None = None,
        recordings: Path | None = None,
        spool: Path | None = None,
        *,
        retry_s: float = 5.0,
        max_memory: int = MAX_MEMORY,
        instance: str | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        lost_after_s: float = LOST_AFTER_S,
    ) -> None:
        """`url`: SQLAlchemy URL (default SQLite in the cache dir); `recordings`: folder for call audio
        (None: no audio kept); `spool`: JSONL file for records the database could not take yet;
        `instance`: this process's id on the database (default: a new one), see `instances`."""
        self.url = resolve_url(url)
        self.engine = make_engine(self.url)
        self.recordings = recordings
        self.instance = instance or new_instance_id()
        self.heartbeat = Heartbeat(self.engine, self.instance, heartbeat_s, lost_after_s)
        self.backlog = Backlog(spool or spool_path(self.url), max_memory)
        self._writer = Writer(self.engine, self.backlog, retry_s)
        # At interpreter exit, queued records still reach the database or the spool (the thread is a daemon).
        self._finalizer = weakref.finalize(self, self._writer.close)
        self._positions: dict[str, list[int]] = {}  # call id → [turns, transfers] so far
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: VoicebotConfig) -> CallStore:
        """The store `voicebot serve` uses: `server.records_url` / `server.recordings_dir`, spool in cache."""
        url = resolve_url(config.server.records_url or default_url(config.cache_dir))
        spool = spool_path(url, config.cache_dir)
        server = config.server
        return cls(
            url.render_as_string(hide_password=False),
            server.recordings_dir,
            spool,
            instance=server.instance_id,
            heartbeat_s=server.heartbeat_s,
            lost_after_s=server.instance_lost_after_s,
        )

    # --- observer ------------------------------------------------------------------------------------

    def _submit(self, what: str, call_id: str, build: Callable[[], list[Op]]) -> None:
        """Build and queue ops; a failure here is logged, never raised into the call."""
        try:
            for op in build():
                self._writer.submit(op)
        except Exception as exc:
            log.error("call records: cannot record the %s of call %s (%s)", what, call_id, type(exc).__name__)

    def _next(self, call_id: str, which: int, count: int = 1) -> int:
        """Reserve `count` positions (0: turns, 1: transfers) in the call; returns the first."""
        with self._lock:
            positions = self._positions.setdefault(call_id, [0, 0])
            first = positions[which]
            positions[which] += count
            return first

    async def on_start(self, call_id: str, protocol: str, meta: dict[str, Any]) -> None:
        with self._lock:
            self._positions[call_id] = [0, 0]
        self._submit("start", call_id, lambda: [capture.start_op(call_id, protocol, meta, self.instance)])

    async def on_event(self, call_id: str, frame: Frame) -> None:
        """TurnDone → a turn row; CallEnded with transfer actions → transfer rows. Other frames: ignored."""
        if isinstance(frame, TurnDone):
            self.add_turn(call_id, frame.record.as_json())
        elif isinstance(frame, CallEnded):
            count = sum(a.kind == "transfer" for a in frame.actions)
            if count:
                first = self._next(call_id, 1, count)
                self._submit("transfer", call_id, lambda: capture.transfer_ops(call_id, first, frame))

    def add_turn(self, call_id: str, record: Mapping[str, Any]) -> None:
        """One turn in its public JSON form (`TurnRecord.as_json()`), the form the database keeps."""
        index = self._next(call_id, 0)
        self._submit("turn", call_id, lambda: [capture.turn_op(call_id, index, record)])

    def add_handoff(self, call_id: str, summary: Mapping[str, Any]) -> None:
        """A transfer's hand-off summary (`telephony.handoff` makes it), stored with the call."""
        self._submit("hand-off", call_id, lambda: [capture.handoff_op(call_id, summary)])

    async def on_end(self, call_id: str, reason: str) -> None:
        with self._lock:
            self._positions.pop(call_id, None)
        self._submit("end", call_id, lambda: [capture.end_op(call_id, reason)])

    async def save_audio(self, call_id: str, caller_pcm: PCM, bot_pcm: PCM, rate: int) -> Path | None:
        """Write the call's audio (caller left, bot right) and record its path; None when not kept.

        A full disk or an unwritable folder costs the audio only: it is logged and the record stays.
        Recordings hold the caller's voice unmasked, which is why there are none unless configured.
        """
        if self.recordings is None:
            return None
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        path = self.recordings / day / f"{_UNSAFE.sub('_', call_id).lstrip('.') or 'call'}.wav"
        try:
            await asyncio.to_thread(write_stereo_wav, path, caller_pcm, bot_pcm, rate)
        except OSError as exc:
            log.error("call records: no recording for call %s: cannot write %s (%s)", call_id, path, exc)
            await asyncio.to_thread(_discard, path)  # a half-written file is worse than none
            return None
        self._submit("recording", call_id, lambda: [capture.audio_op(call_id, str(path))])
        return path

    async def on_serve_start(self) -> None:
        """The gateway is up: beat for this instance and watch the others (in a thread)."""
        self.heartbeat.start()

    async def on_serve_stop(self) -> None:
        """The gateway has drained: stop beating and, once the calls' ends are written, leave the database."""
        await asyncio.to_thread(self.heartbeat.stop)
        if await self.flush() == 0:
            await asyncio.to_thread(self.heartbeat.forget)

    async def flush(self) -> int:
        """Wait for queued records, retry spooled ones now; returns how many are still waiting for the DB."""
        return await asyncio.wrap_future(self._writer.flush())

    # --- reading -------------------------------------------------------------------------------------

    def _read(self, query: Callable[[], T]) -> T:
        """Run a query, the tables made first if missing (a fresh database reads as empty, not as an error);
        a database error becomes a RuntimeError that names the database (never its password)."""
        try:
            ensure_schema(self.engine)
            return query()
        except SQLAlchemyError as exc:
            cause = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()[0]
            raise RuntimeError(f"cannot read call records from {self.url}: {cause}") from exc

    def list_calls(self, limit: int = 20) -> list[CallSummary]:
        """Most recent first. Blocking: from async code, run it in a thread."""
        return self._read(lambda: list_calls(self.engine, limit))

    def get_call(self, call_id: str) -> CallDetail | None:
        """A call with its turns and transfers, or None. Blocking: from async code, run it in a thread."""
        return self._read(lambda: get_call(self.engine, call_id))

    def close(self) -> None:
        """Write what is queued; whatever the database cannot take now stays in the spool for next time."""
        self.heartbeat.stop()
        left = self._finalizer() or 0
        if left:
            log.warning("call records: %d records wait in %s for the database", left, self.backlog.path)
        self.engine.dispose()
