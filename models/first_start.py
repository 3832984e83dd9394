"""Which model serves a domain, and the first start: a first model in minutes, the full one in the background.

`voicebot train` (and `serve`, `shell`, `call`, `test` when no model exists yet) trains the first model
(train_first.py, ~2 minutes) and returns, after starting the full fine-tune (~20 minutes on 2 cores) as a
separate low-priority process (`nice`), so calls are answered while it runs. `served_model` picks, among the
finished models of the domain's current data, the one with the better held-out score: the domain's
validation split, never trained on (`metrics.json` `validation`, the mean of intent accuracy and entity
F1). The full model replaces the first only if it scores at least as well. Operators' reviews
(reviewed.jsonl, the console) are part of the data, but the models trained before them stay candidates
until one trained with them scores at least as well.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from models.train_domain import lock_path, model_dir, served_candidates, train_domain
from models.train_first import FirstModelConfig

BACKGROUND_NICE = 10


def model_score(model: Path) -> float | None:
    """A finished model's held-out (validation) score; None while it is not finished."""
    try:
        return float(json.loads((model / "metrics.json").read_text())["validation"])
    except (OSError, ValueError, KeyError):
        return None


def served_model(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> Path | None:
    """The finished model that serves: the full one unless the first scores better on validation."""
    return best_model(candidates(domain, cache_dir, data_dir))


def current_models(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """The full and first model directories of the domain's current data, reviews included (each may not
    exist yet): what `voicebot train` makes."""
    return [model_dir(domain, cache_dir, data_dir), model_dir(domain, cache_dir, data_dir, first=True)]


def candidates(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """The domain's full and first model directories for its current data (each may not exist yet), then,
    once operators' reviews (reviewed.jsonl) are part of the data, those of the data without them. The
    reviews only add training examples, so all of them are scored on the same validation split: a model
    trained with the reviews serves once it scores at least as well as the one before (on a restart as in
    the console's retrain), and a review alone never sends a restart into training."""
    return served_candidates(domain, cache_dir, data_dir)


def best_model(paths: list[Path]) -> Path | None:
    """The finished one with the best validation score; on a tie the earlier in `paths`."""
    scored = [
        (-score, rank, path) for rank, path in enumerate(paths) if (score := model_score(path)) is not None
    ]
    return min(scored)[2] if scored else None


def full_training_log(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> Path:
    return model_dir(domain, cache_dir, data_dir).with_suffix(".log")


def full_training_running(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> bool:
    """Whether a background full fine-tune of this data holds its lock."""
    lock = lock_path(model_dir(domain, cache_dir, data_dir))
    if not lock.is_file():
        return False
    with open(lock) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def train_full_locked(domain: Path, cache_dir: Path, data_dir: Path | None, progress: bool) -> Path:
    """The full fine-tune. `train_domain` holds the model's lock (`one_trainer`) while it trains: that is
    what `full_training_running` sees, so one runs per domain data at a time (the background one)."""
    out, _ = train_domain(domain, cache_dir, data_dir, progress=progress)
    return out


def start_full_training(domain: Path, cache_dir: Path, data_dir: Path | None = None) -> Path | None:
    """Start the full fine-tune as a detached `nice` process; returns its log file, or None when one is
    already running or the full model is already there."""
    if model_score(model_dir(domain, cache_dir, data_dir)) is not None or full_training_running(
        domain, cache_dir, data_dir
    ):
        return None
    log = full_training_log(domain, cache_dir, data_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "voicebot.cli", "train", "--domain", str(domain), "--full"]
    command += ["--data-dir", str(data_dir)] if data_dir is not None else []
    env = os.environ | {"VOICEBOT_CACHE": str(cache_dir)}
    with open(log, "ab") as out:
        subprocess.Popen(  # our own CLI, no shell
            ["nice", "-n", str(BACKGROUND_NICE), *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # outlives the command that started it, and its Ctrl-C
        )
    return log


def ensure_model(
    domain: Path,
    cache_dir: Path,
    data_dir: Path | None = None,
    progress: bool = True,
    background: bool = True,
    fresh: bool = False,
) -> tuple[Path, bool]:
    """The model to serve now, training the first model if none is finished; `background`: also start
    the full fine-tune if it is missing. `fresh` (`voicebot train`, the console's retrain): train the first
    model when none of the current data is finished, operators' reviews included, even where an older one
    would serve; the model returned is then the one trained. Returns the model and whether it was trained
    now."""
    found = (
        best_model(current_models(domain, cache_dir, data_dir))
        if fresh
        else served_model(domain, cache_dir, data_dir)
    )
    trained = None
    if found is None:
        trained, _ = train_domain(domain, cache_dir, data_dir, progress=progress, first=FirstModelConfig())
    if background:
        start_full_training(domain, cache_dir, data_dir)
    model = (trained if fresh else None) or served_model(domain, cache_dir, data_dir)
    assert model is not None
    return model, trained is not None
