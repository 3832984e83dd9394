"""Live model swap (voicebot/nlu/swap.py) with scripted parsers: better models come in, worse ones never,
and a parse under way finishes on the model it started with."""

from __future__ import annotations

import logging
import threading
from datetime import date
from pathlib import Path

import pytest

from voicebot.nlu.model import Labels
from voicebot.nlu.parser import Parse
from voicebot.nlu.swap import ModelWatcher, SwappableNLU
from voicebot.pii import mask_text


class Named:
    """A parser whose every parse says which model made it; `gate` holds a parse until released."""

    def __init__(self, name: str, gate: threading.Event | None = None) -> None:
        self.name, self.gate, self.labels = name, gate, Labels(intents=["greet"])
        self.started = threading.Event()

    def parse(self, text: str, today: date | None = None) -> Parse:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        return Parse(text=text, intent=self.name, confidence=1.0)


def watcher(nlu: SwappableNLU, pick: list[Path | None], scores: dict[Path, float]) -> ModelWatcher:
    return ModelWatcher(
        nlu, pick=lambda: pick[0], load=lambda p: Named(p.name), score=scores.get, interval_s=3600
    )


def test_a_better_model_is_swapped_in_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first, full = Path("shop-first"), Path("shop-full")
    nlu = SwappableNLU(Named("shop-first"), first, 0.962)
    pick: list[Path | None] = [first]
    w = watcher(nlu, pick, {first: 0.962, full: 0.971})
    assert not w.check() and nlu.parse("hi").intent == "shop-first"
    pick[0] = full
    assert w.check()
    assert nlu.parse("hi").intent == "shop-full" and nlu.source == full and nlu.score == 0.971
    assert "held-out 96.20 %" in caplog.text and "held-out 97.10 %" in caplog.text
    assert "97.10 %" in mask_text(caplog.text)  # the server's log masking keeps the scores readable


def test_a_worse_model_is_not_swapped_in(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    first, worse = Path("shop-first"), Path("shop-worse")
    nlu = SwappableNLU(Named("shop-first"), first, 0.962)
    loads: list[Path] = []

    def load(path: Path) -> Named:
        loads.append(path)
        return Named(path.name)

    w = ModelWatcher(nlu, pick=lambda: worse, load=load, score={worse: 0.95}.get, interval_s=3600)
    assert not w.check() and not w.check()
    assert loads == [] and nlu.parse("hi").intent == "shop-first"
    assert caplog.text.count("not swapped in") == 1  # decided once, not every poll


def test_a_parse_under_way_finishes_on_its_model() -> None:
    gate = threading.Event()
    old = Named("old", gate)
    nlu = SwappableNLU(old, Path("old"), 0.9)
    result: list[Parse] = []
    turn = threading.Thread(target=lambda: result.append(nlu.parse("hi")))
    turn.start()
    assert old.started.wait(10)
    nlu.swap(Named("new"), Path("new"), 0.95)  # mid-parse
    gate.set()
    turn.join(10)
    assert result[0].intent == "old"  # the turn under way: the model it began with
    assert nlu.parse("hi").intent == "new"  # the next turn: the new one


def test_a_broken_candidate_leaves_the_model_serving(caplog: pytest.LogCaptureFixture) -> None:
    nlu = SwappableNLU(Named("first"), Path("first"), 0.9)

    def broken(path: Path) -> Named:
        raise OSError(f"{path}: missing heads.pt")

    w = ModelWatcher(nlu, pick=lambda: Path("full"), load=broken, score=lambda p: 0.99, interval_s=0.01)
    w.start()
    try:
        for _ in range(200):
            if "check failed" in caplog.text:
                break
            threading.Event().wait(0.01)
    finally:
        w.stop()
    assert "check failed" in caplog.text and nlu.parse("hi").intent == "first"
    assert caplog.text.count("check failed") == 1  # not retried every poll
