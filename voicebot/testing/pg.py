"""A throwaway PostgreSQL cluster for tests: the Debian server binaries, a temp dir, loopback, a free port.

The cluster is made fresh per test session (initdb, ~1 s) rather than using a system service, so tests need
no running daemon, no password and no cleanup of someone else's data. PostgreSQL refuses to run as root, so
under root the server commands run as the `postgres` user the Debian package creates, in a temp dir that
user owns. Without the binaries the PostgreSQL tests are skipped locally, but fail in CI (`CI=true`),
where `.ci/run` installs the package: a silently skipped database test in CI is a test that never runs.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

DATABASE = "voicebot_test"
PREFIX = "voicebot-pg-"
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a test cluster: speed


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """The newest server's bin dir: Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresCluster:
    """One cluster in `root`. `new_database()` gives each test its own; `stop()`/`start()` make an outage."""

    def __init__(self, bin_dir: Path, root: Path, as_user: list[str]) -> None:
        self.bin, self.root, self.as_user = bin_dir, root, as_user
        self.data, self.log = root / "data", root / "server.log"
        self.port = 0
        self._databases = 0

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database (~0.1 s): tests never see each other's rows."""
        self._databases += 1
        name = f"{DATABASE}_{self._databases}"
        self.create_database(name)
        return self.url(name)

    def _run(self, *args: str, server: bool = True) -> None:
        command = [*(self.as_user if server else []), str(self.bin / args[0]), *args[1:]]
        env = os.environ | {"LC_ALL": "C", "LANG": "C"}
        done = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            log = self.log.read_text()[-1500:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
                  "--no-sync")  # fmt: skip

    def start(self) -> None:
        """Start on `self.port` (a free one the first time; the same one after `stop()`)."""
        for attempt in range(3):
            port = self.port or free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root} {SERVER_OPTIONS}"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
            except RuntimeError:
                if attempt == 2 or self.port:
                    raise
                continue  # someone took the free port between our check and the server's bind
            self.port = port
            return

    def create_database(self, name: str = DATABASE) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name, server=False)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def _as_user(root: Path) -> list[str] | None:
    """The prefix that runs server commands as a non-root user (and gives that user the temp dir)."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return None
    os.chown(root, user.pw_uid, user.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


class Unavailable(RuntimeError):
    """This machine cannot provide the real thing (here: no server binaries, no user to run it as, no
    start; the fault tests use it for a tmpfs too): say so, do not fake it."""


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[PostgresCluster]:
    """A running cluster in a temp dir on a free loopback port with an empty database; deleted after.
    Used by the `postgres` fixture and, outside pytest, by the fault and scale-out scripts."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise Unavailable("no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    remove_stale_clusters(bin_dir)
    root = Path(tempfile.mkdtemp(prefix=PREFIX))  # not pytest's tmp: it is private to root
    (root / "owner.pid").write_text(str(os.getpid()))
    as_user = _as_user(root)
    if as_user is None:
        shutil.rmtree(root, ignore_errors=True)
        raise Unavailable("running as root and there is no `postgres` user to run the server as")
    cluster = PostgresCluster(bin_dir, root, as_user)
    try:
        try:
            cluster.init()
            cluster.start()
            cluster.create_database()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            raise Unavailable(f"cannot start a cluster with {bin_dir}: {exc}") from exc
        yield cluster
    finally:
        _remove(cluster)


@pytest.fixture(scope="session", name="postgres")
def postgres_fixture() -> Iterator[PostgresCluster]:
    """A running throwaway cluster with an empty database; stopped and deleted after the session."""
    try:
        import psycopg  # noqa: F401  (the driver the store uses)
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(throwaway_cluster())
        except Unavailable as exc:
            unavailable(str(exc))
            return
        yield cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_clusters(bin_dir: Path) -> None:
    """Stop and delete clusters whose test session was killed before its teardown ran."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            _remove(PostgresCluster(bin_dir, root, _as_user(root) or []))


def _remove(cluster: PostgresCluster) -> None:
    if cluster.running():
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("immediate")
    shutil.rmtree(cluster.root, ignore_errors=True)
