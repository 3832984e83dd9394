"""Engines for the records database, and telling "database unavailable" from "bad record".

The difference decides what happens to a write that failed: an unavailable database (server down, network,
a locked SQLite file) means keep the write and retry later; any other error would fail again on every retry,
so that write is set aside instead of blocking every record queued behind it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import StaticPool

from voicebot.records.models import Base

CONNECT_TIMEOUT_S = 3  # a dead PostgreSQL server costs the writer thread this long per retry, not forever
SCHEMA_LOCK_KEY = 0x766F6963  # PostgreSQL advisory lock: instances starting together make the tables once
_schema_lock = threading.Lock()  # the writer and heartbeat threads of one process
UNAVAILABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, ConnectionError)


def default_cache_dir() -> Path:
    from voicebot.config import VoicebotConfig  # the one place the cache default is defined

    return VoicebotConfig().cache_dir


def default_url(cache_dir: Path | None = None) -> str:
    return f"sqlite:///{(cache_dir or default_cache_dir()) / 'calls.sqlite'}"


def resolve_url(url: str | None, cache_dir: Path | None = None) -> URL:
    """The URL to use: SQLite in the cache dir by default; `~` in a SQLite path is expanded."""
    parsed = make_url(url or default_url(cache_dir))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
    return parsed


def spool_path(url: URL, cache_dir: Path | None = None) -> Path:
    """Default spool file: one per database, named by a hash so a password in the URL stays out of it."""
    digest = hashlib.sha256(url.render_as_string(hide_password=False).encode()).hexdigest()[:10]
    return (cache_dir or default_cache_dir()) / f"calls-spool-{digest}.jsonl"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets `voicebot calls list` read while the gateway writes; a busy file waits instead of failing."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: URL) -> Engine:
    """An engine that reconnects after an outage (pre-ping), gives up connecting quickly and keeps
    statement parameters out of its error messages (they end up in logs and the rejected file)."""
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):  # one shared connection, or each thread sees its own DB
            engine = create_engine(
                url, hide_parameters=True, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            return engine
        with contextlib.suppress(OSError):  # if it cannot be made, connecting fails and writes spool
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, int] = {}
    if url.get_backend_name() == "postgresql":  # a dead peer or a cut network ends a query, not the writer
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 10}
        connect_args |= {"keepalives_interval": 5, "keepalives_count": 3, "tcp_user_timeout": 30_000}
    return create_engine(
        url, pool_pre_ping=True, pool_size=2, max_overflow=4, hide_parameters=True, connect_args=connect_args
    )


def ensure_schema(engine: Engine) -> None:
    """Create missing tables and columns (idempotent), one process and one instance at a time: two
    gateways creating the same table at once would fail one of them."""
    with _schema_lock, engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        Base.metadata.create_all(conn)
        _migrate(conn)


def _migrate(conn: Connection) -> None:
    """The changes since the first schema, for databases made before: `calls.instance` and its index,
    `calls.handoff`."""
    columns = {column["name"] for column in inspect(conn).get_columns("calls")}
    if "instance" not in columns:
        conn.execute(text("ALTER TABLE calls ADD COLUMN instance VARCHAR(128)"))
    if "handoff" not in columns:
        conn.execute(text("ALTER TABLE calls ADD COLUMN handoff JSON"))
    for index in Base.metadata.tables["calls"].indexes:
        index.create(conn, checkfirst=True)


def is_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, UNAVAILABLE) or bool(getattr(exc, "connection_invalidated", False))
