"""Which model serves a domain (models/first_start.py), on a tiny domain without training anything."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.first_start import full_training_running, model_score, served_model, start_full_training
from models.train_domain import lock_path, model_dir, train_domain

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
    with holding(lock_path(model_dir(domain, cache)), "time.sleep(60)"):
        assert full_training_running(domain, cache)
        assert start_full_training(domain, cache) is None
    assert not full_training_running(domain, cache)


def test_no_background_training_once_the_full_model_is_there(domain: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    finished(model_dir(domain, cache), 0.9)
    assert start_full_training(domain, cache) is None


@pytest.mark.models
def test_voicebot_train_makes_the_first_model_then_the_full_one_in_the_background(tmp_path: Path) -> None:
    """The whole first start on a tiny domain whose encoder is a tiny random BERT (seconds, not minutes)."""
    from tests.tiny import tiny_encoder

    encoder = tiny_encoder(tmp_path / "encoder", layers=2)
    folder = tmp_path / "tiny-domain"
    folder.mkdir()
    examples = {"greet": ["hello", "hi there", "good morning", "hey"], "goodbye": ["bye", "see you", "ciao"]}
    spec = {"training": {"sentiment": False, "epochs": 1, "encoder": str(encoder)}, "intents": examples}
    (folder / "nlu.yaml").write_text(json.dumps(spec))
    cache = tmp_path / "cache"
    env = {**os.environ, "VOICEBOT_CACHE": str(cache)}

    def train(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "voicebot.cli", "train", "--domain", str(folder), *extra]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)

    done = train("--no-background")
    assert done.returncode == 0, done.stderr
    assert "NLU model trained in" in done.stdout and "background" not in done.stdout
    assert served_model(folder, cache) == model_dir(folder, cache, first=True)
    assert "epoch 1/1" in done.stderr  # progress lines reach a log

    again = train()
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout and "started in the background" in again.stdout
    full = model_dir(folder, cache)
    for _ in range(600):  # the background run: a tiny model, seconds
        if (full / "metrics.json").is_file() and not full_training_running(folder, cache):
            break
        time.sleep(0.1)
    assert (full / "metrics.json").is_file(), full.with_suffix(".log").read_text()
    first_score = model_score(model_dir(folder, cache, first=True))
    full_score = model_score(full)
    assert first_score is not None and full_score is not None
    expected = full if full_score >= first_score else model_dir(folder, cache, first=True)
    assert served_model(folder, cache) == expected


def test_a_second_trainer_waits_and_reuses_the_model(domain: Path, tmp_path: Path) -> None:
    """Two processes asking for the same model (two test workers, serve beside train): the second waits on the
    lock and takes what the first wrote instead of training into the same folder."""
    cache = tmp_path / "cache"
    out = model_dir(domain, cache, quick=True)
    written = f"p = pathlib.Path({str(out)!r}); p.mkdir(); (p / 'metrics.json').write_text('{{}}')"
    then = f"time.sleep(1); {written}"
    with holding(lock_path(out), then):
        assert train_domain(domain, cache, quick=True, progress=False) == (out, False)


@contextlib.contextmanager
def holding(lock: Path, then: str) -> Iterator[None]:
    """Another process holds `lock` (as a trainer would) and then runs the Python statements `then`."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    script = (
        f"import fcntl, pathlib, time; f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        f"print('held', flush=True); {then}"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
