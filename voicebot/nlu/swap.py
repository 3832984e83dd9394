"""Live model swap: a running gateway moves to a better NLU model without stopping a call.

Every brain holds the one `SwappableNLU`; each parse reads whichever model is current when it starts, so a
parse never mixes two models and the next one after a swap reads the new model: calls in progress move over
between parses (a turn's parses normally, though a turn that parses several hypotheses may straddle a swap).
`ModelWatcher` polls for the model that should serve (`pick`, e.g. the domain's better-scoring finished
model after `voicebot train` or the background fine-tune); a different one is loaded in the watcher's thread,
away from the calls, and swapped in only if its held-out score is at least the current one's. Each decision
is logged with both scores. `offer` is that decision for one candidate: the operator console's retrain
(telephony/console/retrain.py) makes it too, and shows its `Decision`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from voicebot.config import VoicebotConfig
from voicebot.nlu.model import Labels
from voicebot.nlu.parser import Parse, Parser

log = logging.getLogger(__name__)


def _pct(score: float | None) -> str:
    """A score as the log shows it (a long decimal would be masked as a possible card number)."""
    return "unknown" if score is None else f"{100 * score:.2f} %"


class SwappableNLU:
    """A `Parser` whose model can be replaced while calls use it."""

    def __init__(self, parser: Parser, source: Path, score: float | None) -> None:
        self._current: tuple[Parser, Path, float | None] = (parser, source, score)
        self.deciding = threading.Lock()  # held while a candidate is weighed and loaded (`offer`)

    @property
    def labels(self) -> Labels:
        return self._current[0].labels

    @property
    def source(self) -> Path:
        return self._current[1]

    @property
    def score(self) -> float | None:
        return self._current[2]

    def parse(self, text: str, today: date | None = None) -> Parse:
        parser = self._current[0]  # one read: this parse uses one model whatever happens meanwhile
        return parser.parse(text, today)

    def swap(self, parser: Parser, source: Path, score: float | None) -> None:
        self._current = (parser, source, score)  # a single reference assignment: atomic for readers


class ModelWatcher:
    """Every `interval_s`, ask `pick()` for the model that should serve; load and swap in a better one."""

    def __init__(
        self,
        nlu: SwappableNLU,
        pick: Callable[[], Path | None],
        load: Callable[[Path], Parser],
        score: Callable[[Path], float | None],
        interval_s: float,
    ) -> None:
        self.nlu, self.pick, self.load, self.score, self.interval_s = nlu, pick, load, score, interval_s
        self.rejected: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nlu-model-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a broken candidate must never take the serving model down
                log.exception("NLU model check failed; the current model keeps serving")

    def check(self) -> bool:
        """One poll; returns whether a new model was swapped in."""
        candidate = self.pick()
        if candidate is None or candidate == self.nlu.source or candidate in self.rejected:
            return False
        try:
            decision = offer(self.nlu, candidate, self.load, self.score)
        except Exception:
            self.rejected.add(candidate)  # tried once: a broken directory is not reloaded every poll
            raise
        if not decision.swapped:
            self.rejected.add(candidate)  # decided once, not every poll
        return decision.swapped


@dataclass(frozen=True)
class Decision:
    """A candidate model weighed against the serving one: both held-out scores, and whether it swapped."""

    before: Path
    before_score: float | None
    after: Path
    after_score: float | None
    swapped: bool

    def as_json(self) -> dict[str, Any]:
        return {"before": {"model": str(self.before), "score": self.before_score},
                "after": {"model": str(self.after), "score": self.after_score},
                "swapped": self.swapped}  # fmt: skip


def offer(
    nlu: SwappableNLU, candidate: Path, load: Callable[[Path], Parser], score: Callable[[Path], float | None]
) -> Decision:
    """Swap `candidate` in if its held-out score is known and at least the serving model's (a model
    without a known score yields to any scored one); load errors propagate with the old model serving.
    One decision at a time per `nlu` (the watcher's poll and an operator's retrain may meet)."""
    with nlu.deciding:
        new, old, previous = score(candidate), nlu.score, nlu.source
        if candidate == previous:
            return Decision(previous, old, candidate, new, False)
        if new is None or (old is not None and new < old):
            log.info("NLU model %s not swapped in: held-out %s < current %s", candidate, _pct(new), _pct(old))
            return Decision(previous, old, candidate, new, False)
        nlu.swap(load(candidate), candidate, new)
        log.info(
            "NLU model swapped: %s (held-out %s) -> %s (held-out %s)",
            previous,
            _pct(old),
            candidate,
            _pct(new),
        )
        return Decision(previous, old, candidate, new, True)


def watch_domain(nlu: Parser, domain: Path, config: VoicebotConfig) -> SwappableNLU:
    """`nlu` (the domain's served model) behind a `SwappableNLU`, with a started watcher that swaps in the
    domain's better-scoring finished model (models/first_start.py) every `nlu.swap_check_s`."""
    from models.first_start import best_model, candidates, model_score
    from voicebot.domain.reviewed import reviewed_path
    from voicebot.nlu.parser import NLU

    # Naming the candidates hashes the domain's data and parses its YAML (~0.7 s, much of it holding the
    # GIL the calls' event loop needs), so it is redone only when the domain's files change.
    known: dict[str, Any] = {"stamp": None, "paths": []}

    def pick() -> Path | None:
        files = [domain / "nlu.yaml", domain / "faq.yaml", reviewed_path(domain)]
        stamp = [(f.stat().st_mtime_ns, f.stat().st_size) if f.is_file() else None for f in files]
        if stamp != known["stamp"]:
            known["stamp"], known["paths"] = stamp, candidates(domain, config.cache_dir)
        return best_model(known["paths"])

    source = pick()
    if source is None:
        raise RuntimeError(f"{domain}: no finished NLU model to serve")
    live = SwappableNLU(nlu, source, model_score(source))
    ModelWatcher(
        live,
        pick=pick,
        load=lambda path: NLU(path, threads=config.nlu.threads, int8=config.nlu.int8),
        score=model_score,
        interval_s=float(config.nlu.swap_check_s or 0),
    ).start()
    return live
