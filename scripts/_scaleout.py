"""The processes of the scale-out check: PostgreSQL, nginx and gateway instances, none of them as root.

PostgreSQL is the throwaway cluster of `voicebot/testing/pg.py` (run as `postgres` under root). nginx and
the gateway instances run as an unprivileged user (`nobody` under root, else the caller), as a deployment
should. That user needs to read the venv and the models: where the Python runtime sits somewhere it cannot
reach (pyenv under a 0700 /root), the runtime is hard-linked into a temp dir (no copy of the data, ~1 s)
and a venv whose site-packages is the real one is made around it; the Whisper files are hard-linked into a
temp model cache the user owns (it also holds the records spool). Nothing is installed or changed outside it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voicebot.config import VoicebotConfig

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "scripts" / "deploy" / "nginx.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uid of a running process (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise RuntimeError(f"no Uid line for pid {pid}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


# --- the unprivileged user and what it can read ------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """Who the services run as, and the interpreter, cache and home they use."""

    uid: int
    gid: int
    name: str
    python: Path
    cache: Path
    home: Path
    env: dict[str, str]

    @property
    def switch(self) -> bool:
        """Whether processes must switch to the user (we are root), else they run as we do."""
        return os.geteuid() == 0

    def popen(self, command: list[str], out: IO[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `command` as the user (no supplementary groups), in its own session, output to `out`."""
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            user=self.uid if self.switch else None, group=self.gid if self.switch else None,
            extra_groups=[] if self.switch else None, **kwargs,
        )  # fmt: skip


def reachable(path: Path) -> bool:
    """Whether any user may read `path`: every folder above it searchable by others, the file readable."""
    path = path.absolute()
    for folder in path.parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return bool(path.stat().st_mode & stat.S_IROTH)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links where possible (same filesystem: no data copied), copies otherwise."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    ignore = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "ensurepip")
    shutil.copytree(src, dst, symlinks=True, copy_function=link, ignore=ignore)


def _venv_for(work: Path, switch: bool) -> tuple[Path, dict[str, str]]:
    """This venv's interpreter, or, when another user is to run it and its runtime is out of that user's
    reach, a venv around a hard-linked copy of the runtime that uses the real venv's site-packages."""
    venv_python = Path(sys.prefix) / "bin" / Path(sys.executable).name
    runtime = Path(os.path.realpath(venv_python))
    site = Path(sysconfig.get_paths()["purelib"])
    if not switch:
        return venv_python, {}
    if not reachable(site) or not reachable(ROOT):
        raise RuntimeError(f"{site} or {ROOT} is not readable by other users: put the project elsewhere")
    if reachable(runtime):
        return venv_python, {}
    base = Path(sys.base_prefix)
    _link_tree(base, work / "python")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = work / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / version).mkdir(parents=True)
    (venv / "lib" / version / "site-packages").symlink_to(site)
    python = venv / "bin" / version
    python.symlink_to(work / "python" / "bin" / version)
    home, release = work / "python" / "bin", sys.version.split()[0]
    (venv / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = {release}\n"
    )
    return python, {"LD_LIBRARY_PATH": str(work / "python" / "lib")}  # libpython's RUNPATH points at base


def run_as(work: Path, user: str = "nobody") -> RunAs:
    """Prepare `work` for the unprivileged user: interpreter, model cache (hard links), home."""
    entry = pwd.getpwnam(user) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    python, env = _venv_for(work, os.geteuid() == 0)
    cache, home = work / "cache", work / "home"
    whisper = VoicebotConfig().cache_dir / "whisper-base-ct2"
    if not (whisper / "model.bin").is_file():
        raise RuntimeError(f"no Whisper base model at {whisper}: run `voicebot models`")
    _link_tree(whisper, cache / "whisper-base-ct2")
    home.mkdir()
    for path in (work, cache, cache / "whisper-base-ct2", home):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    env |= {"HOME": str(home), "VOICEBOT_CACHE": str(cache), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name, python, cache, home, env)


# --- nginx ------------------------------------------------------------------------------------------------


def nginx_config(listen: int, upstreams: list[int], run_dir: Path) -> str:
    """The deployment template with loopback ports and a private run dir filled in."""
    servers = "\n        ".join(
        f"server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" for port in upstreams
    )
    text = TEMPLATE.read_text()
    return (
        text.replace("@LISTEN@", f"127.0.0.1:{listen}")
        .replace("@SERVERS@", servers)
        .replace("@RUN_DIR@", str(run_dir))
    )


class Nginx:
    def __init__(self, work: Path, user: RunAs, upstreams: list[int]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).is_file():
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.run_dir = work / "nginx"
        self.run_dir.mkdir()
        os.chown(self.run_dir, user.uid, user.gid)
        self.port = free_port()
        conf = self.run_dir / "nginx.conf"
        conf.write_text(nginx_config(self.port, upstreams, self.run_dir))
        self.log = self.run_dir / "stderr.log"
        with self.log.open("w") as out:
            command = [binary, "-c", str(conf), "-p", str(self.run_dir), "-e", "stderr", "-g", "daemon off;"]
            self.proc = user.popen(command, out)
        deadline = time.monotonic() + 20
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish open connections, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- gateway instances ------------------------------------------------------------------------------------


class Instance:
    """`voicebot serve` (echo brain) as the unprivileged user, records in the shared database."""

    def __init__(self, name: str, work: Path, user: RunAs, records_url: str, max_calls: int = 32) -> None:
        self.name, self.port = name, free_port()
        self.log_path = work / f"{name}.log"
        code = "import sys; from voicebot.cli import main; sys.exit(main(sys.argv[1:]))"
        env = os.environ | user.env | {
            "VOICEBOT__SERVER__HOST": "127.0.0.1",
            "VOICEBOT__SERVER__PORT": str(self.port),
            "VOICEBOT__SERVER__RECORDS_URL": records_url,
            "VOICEBOT__SERVER__AUDIOSOCKET_PORT": "null",
            "VOICEBOT__SERVER__TOKEN": "null",
            "VOICEBOT__SERVER__MAX_CALLS": str(max_calls),
        }  # fmt: skip
        with self.log_path.open("w") as out:
            self.proc = user.popen([str(user.python), "-c", code, "serve"], out, cwd=ROOT, env=env)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return b'"ok"' in r.read()
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no drain, no flush, no last words — a crash, an OOM kill, a pulled plug."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM: drain, write the records, leave the database."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_healthy(instances: list[Instance], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(instances)
    while pending:
        pending = [i for i in pending if not i.healthy()]
        if pending and time.monotonic() > deadline:
            raise RuntimeError(
                f"{pending[0].name} not healthy after {timeout:.0f} s:\n{pending[0].log_tail()}"
            )
        time.sleep(0.3)
