"""The console's "retrain": train the domain's model again with the operators' reviews, and swap it into the
running gateway only if it scores at least as well on held-out data; the console shows both scores.

Without `console.retrain_command`, a gateway that serves a domain runs `voicebot train --domain D` as a
`nice` subprocess (models/first_start.py): a first model on the domain's data plus its reviewed.jsonl
(models/train_domain.py takes the reviews into the training split only, so the held-out split is the one
the serving model was scored on), minutes on CPU, and the full fine-tune started in the background as any
`voicebot train` does. Once the command has finished, the best finished model of the domain's data with
its reviews is offered to the live swap (voicebot/nlu/swap.py, `offer`): it serves from the next parse if
its validation score is at least the serving model's, else the serving model stays; `status` gives the
decision with both scores, and the model serving now (the model watcher may swap the background fine-tune
in later). On a restart the same rule holds: the models of the data without the reviews stay candidates
(models/first_start.py, `candidates`).

A configured `console.retrain_command` runs instead (VOICEBOT_REVIEWED names the reviewed file, e.g. for
a recipe of one's own), and its result is offered the same way when the gateway serves a domain. One run at
a time; its output's tail is kept for the console.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.nlu.parser import Parser
from voicebot.nlu.swap import SwappableNLU, offer

log = logging.getLogger(__name__)
OUTPUT_CHARS = 4000  # the tail of the retraining command's output a console shows
TRAIN_NICE = 10  # the calls keep the CPU: training yields to them


@dataclass
class LiveModel:
    """What a retrain needs of the serving gateway: its domain, its cache, the swappable model and how to
    load another."""

    domain: Path
    cache_dir: Path
    nlu: SwappableNLU
    load: Callable[[Path], Parser]


def default_command(domain: Path) -> list[str]:
    """`voicebot train` of the domain, niced: the real recipe, reviews included."""
    return ["nice", "-n", str(TRAIN_NICE), sys.executable, "-m", "voicebot.cli", "train", "--domain",
            str(domain), "--quiet"]  # fmt: skip


class Retrain:
    """One retraining run at a time: the command, then the swap decision."""

    def __init__(self, command: list[str] | None, reviews: Path, live: LiveModel | None) -> None:
        self.live = live
        self.command = command if command is not None or live is None else default_command(live.domain)
        self.reviews = reviews
        self.started: float | None = None
        self.returncode: int | None = None
        self.output = ""
        self.decision: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def status(self) -> dict[str, Any]:
        serving = None
        if self.live is not None:
            serving = {"model": str(self.live.nlu.source), "score": self.live.nlu.score}
        return {"configured": self.command is not None, "command": self.command, "running": self.running,
                "started": self.started, "returncode": self.returncode, "output": self.output[-OUTPUT_CHARS:],
                "decision": self.decision, "serving": serving}  # fmt: skip

    def start(self) -> None:
        """Start a run; ValueError when there is no command or one is running."""
        if self.command is None:
            raise ValueError("no console.retrain_command configured, and the gateway serves no domain")
        if self.running:
            raise ValueError("a retraining run is already going")
        self.started, self.returncode, self.output, self.decision = time.time(), None, "", None
        self._task = asyncio.create_task(self._run(self.command), name="console-retrain")

    async def _run(self, command: list[str]) -> None:
        env = os.environ | {"VOICEBOT_REVIEWED": str(self.reviews)}
        if self.live is not None:
            env["VOICEBOT_CACHE"] = str(self.live.cache_dir)  # where the gateway looks for its models
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
            )
        except OSError as exc:
            self.output, self.returncode = f"cannot start {command[0]}: {exc.strerror or exc}", 127
            return
        assert process.stdout is not None
        while chunk := await process.stdout.read(4096):
            self.output = (self.output + chunk.decode(errors="replace"))[-4 * OUTPUT_CHARS :]
        self.returncode = await process.wait()
        if self.returncode == 0 and self.live is not None:
            self.decision = await asyncio.to_thread(self._decide, self.live)

    @staticmethod
    def _decide(live: LiveModel) -> dict[str, Any]:
        """Offer the best finished model of the data with the reviews to the live swap (blocking: loading
        takes seconds)."""
        from models.first_start import best_model, current_models, model_score

        candidate = best_model(current_models(live.domain, live.cache_dir))  # trained with the reviews
        if candidate is None:
            return {"swapped": False, "error": "the training left no finished model"}
        try:
            return offer(live.nlu, candidate, live.load, model_score).as_json()
        except Exception as exc:  # a model that does not load leaves the serving one in place
            log.exception("retrained model %s did not load", candidate)
            return {"swapped": False, "error": f"{candidate} did not load: {exc}"}
