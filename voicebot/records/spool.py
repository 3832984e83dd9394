"""Writes the database could not take yet: an append-only JSONL spool file, and memory when even that fails.

The file is the durable part: a record spooled there survives a restart and is replayed by the next store
that opens the same spool. Memory (bounded) only holds what the disk refused too; the file is always older
than memory, so replaying file-then-memory keeps each call's writes in order. Another process may share
the file (several gateway workers on one database), so every read-modify-write holds an advisory lock on
a side file (the spool itself is replaced on rewrite, which would drop a lock held on it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from voicebot.records.apply import describe
from voicebot.records.capture import Op

log = logging.getLogger("voicebot.records")

MAX_MEMORY = 10_000  # ops kept in memory when the spool file cannot be written (~2 per turn)


class Stop(Exception):
    """Raised by a replay callback: the database went away again, keep this op and the rest."""


class Backlog:
    def __init__(self, path: Path, max_memory: int = MAX_MEMORY) -> None:
        self.path = path
        self.rejected = path.with_name(path.stem + ".rejected.jsonl")
        self._lock_path = path.with_name(path.name + ".lock")
        self._memory: deque[Op] = deque()
        self._max_memory = max_memory
        self._in_file = self._count_file()

    def __len__(self) -> int:
        return self._in_file + len(self._memory)

    def _count_file(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        except OSError:
            return 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Not re-entrant (flock locks per open file): hold it only around file work, never nested."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _append(self, path: Path, ops: list[Op]) -> None:
        """One unbuffered O_APPEND write, synced: lines from two processes never interleave."""
        data = "".join(json.dumps(op, separators=(",", ":")) + "\n" for op in ops).encode()
        with path.open("ab", buffering=0) as f:
            f.write(data)
            os.fsync(f.fileno())

    def add(self, op: Op) -> None:
        """Keep one op behind everything already kept; to disk when possible (memory first, it is older)."""
        pending = [*self._memory, op]
        try:
            with self._locked():
                self._append(self.path, pending)
        except OSError as exc:
            if len(self._memory) >= self._max_memory:
                lost = self._memory.popleft()
                log.error("call records: %s unwritable, memory full: lost the %s", self.path, describe(lost))
            elif not self._memory:
                log.error("call records: cannot write %s (%s); keeping records in memory", self.path, exc)
            self._memory.append(op)
            return
        self._memory.clear()
        self._in_file += len(pending)

    def reject(self, op: Op, error: BaseException) -> None:
        """Set aside an op the database refuses for good, where a person can look at it (and replay it).

        Called during `replay`, so without the lock: one O_APPEND write of one line needs none.
        """
        log.error("call records: database refused the %s: %s", describe(op), type(error).__name__)
        try:
            self.rejected.parent.mkdir(parents=True, exist_ok=True)
            self._append(self.rejected, [op | {"error": f"{type(error).__name__}: {error}"[:500]}])
        except OSError:
            log.error("call records: cannot write %s; the %s is lost", self.rejected, describe(op))

    def replay(self, write: Callable[[Op], None]) -> int:
        """Hand each kept op, oldest first, to `write` until it raises `Stop`; returns how many remain."""
        with contextlib.suppress(OSError), self._locked():
            ops = self._read()
            done = self._feed(ops, write)
            if done:
                self._rewrite(ops[done:])
            self._in_file = len(ops) - done
        if self._in_file == 0 and self._memory:
            done = self._feed(list(self._memory), write)
            for _ in range(done):
                self._memory.popleft()
        return len(self)

    @staticmethod
    def _feed(ops: list[Op], write: Callable[[Op], None]) -> int:
        for n, op in enumerate(ops):
            try:
                write(op)
            except Stop:
                return n
        return len(ops)

    def _read(self) -> list[Op]:
        if not self.path.exists():
            return []
        ops: list[Op] = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                op = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash mid-append
                op = None
            if isinstance(op, dict):
                ops.append(op)
            else:
                log.error("call records: %s line %d is not a record; skipped", self.path, number)
        return ops

    def _rewrite(self, ops: list[Op]) -> None:
        if not ops:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        self._append(tmp, ops)
        os.replace(tmp, self.path)
