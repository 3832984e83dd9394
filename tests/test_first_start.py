"""Which model serves a domain (models/first_start.py), on a tiny domain without training anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.first_start import full_training_running, served_model, start_full_training
from models.train_domain import model_dir

NLU_YAML = """\
training:
  sentiment: false
intents:
  greet: [hello, hi there]
  goodbye: [bye, see you]
"""


@pytest.fixture
def domain(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-domain"
    folder.mkdir()
    (folder / "nlu.yaml").write_text(NLU_YAML)
    return folder


def finished(path: Path, validation: float) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"validation": validation, "train_seconds": 1.0}))
    return path


def test_no_model_then_the_first_then_the_better_one(domain: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert served_model(domain, cache) is None
    first = finished(model_dir(domain, cache, first=True), 0.97)
    assert served_model(domain, cache) == first
    full = finished(model_dir(domain, cache), 0.96)
    assert served_model(domain, cache) == first  # the full model scores worse: not swapped in
    (full / "metrics.json").write_text(json.dumps({"validation": 0.97}))
    assert served_model(domain, cache) == full  # as good: the full model serves


def test_a_half_written_model_never_serves(domain: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    model_dir(domain, cache, first=True).mkdir(parents=True)  # no metrics.json yet
    assert served_model(domain, cache) is None


def test_one_background_training_at_a_time(domain: Path, tmp_path: Path) -> None:
    """While a process holds the full training's lock, no second one starts."""
    cache = tmp_path / "cache"
    lock = model_dir(domain, cache).with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    script = (
        f"import fcntl, time; f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert full_training_running(domain, cache)
        assert start_full_training(domain, cache) is None
    finally:
        holder.kill()
        holder.wait()
    assert not full_training_running(domain, cache)


def test_no_background_training_once_the_full_model_is_there(domain: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    finished(model_dir(domain, cache), 0.9)
    assert start_full_training(domain, cache) is None
