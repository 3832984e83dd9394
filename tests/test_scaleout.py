"""Scale-out in `make test`: `scripts/scaleout.py`, smaller — two instances behind nginx on one PostgreSQL,
two calls spread over both, then four with one instance SIGKILLed mid-call and one call placed after it.

Runs the script itself (its checks are the test's), as a child process: it starts PostgreSQL, nginx and
the gateways as unprivileged users, which needs root or a user who may run them as itself. Without nginx
or PostgreSQL it is skipped locally and fails in CI (`.ci/run` installs both): a skipped check never runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.testing.pg import find_bin_dir, in_ci

ROOT = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"the scale-out test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"scale-out test: {reason}")


@pytest.mark.models
def test_two_instances_behind_nginx_lose_only_the_killed_instance_s_calls(tmp_path: Path) -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").is_file():
        unavailable("nginx is not installed (apt-get install nginx)")
    if find_bin_dir() is None:
        unavailable("no PostgreSQL server binaries (apt-get install postgresql)")
    out = tmp_path / "scaleout.json"
    sizes = ["--calls", "2", "--kill-calls", "4", "--after-kill", "1", "--short"]
    command = [sys.executable, "scripts/scaleout.py", *sizes, "--no-doc", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=480)
    assert out.is_file(), f"no result (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(out.read_text())
    failed = [name for name, ok in result["checks"].items() if not ok]
    assert failed == [], f"{failed}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert done.returncode == 0

    batch, kill = result["batch"], result["kill"]
    assert batch["completed"] == 2 and sorted(batch["by_instance"].values()) == [1, 1]
    assert kill["on_killed_instance"] + kill["on_survivor"] == 4 and kill["on_killed_instance"] > 0
    lost = [r for r in kill["records"].values() if r["end_reason"] == "gateway instance lost"]
    assert len(lost) == kill["on_killed_instance"] and len(kill["records"]) == 5  # 4 + 1 after the kill
    assert all(0 not in uids for uids in result["uids"].values())  # nginx and both gateways
    assert kill["survivor_log"], "the survivor logs the instance it found lost"
