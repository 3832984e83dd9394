"""Progress output: plain timed lines with ETA when stderr is not a terminal, a live bar when it is."""

from __future__ import annotations

import io

import pytest

from voicebot import progress as progress_module
from voicebot.progress import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_with_eta_no_carriage_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 4))  # every update is 4 s after the last
    monkeypatch.setattr("tqdm.std.time", lambda: float(next(clock)))
    out = io.StringIO()
    bar = progress(range(10), desc="epoch 1/3", unit="steps", stream=out)
    for _ in bar:
        bar.set_postfix(loss="0.500")  # every step: must not force a line of its own
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert lines[0].startswith("epoch 1/3: 0/10 steps (0 %)")
    assert lines[-1].startswith("epoch 1/3: 10/10 steps (100 %)")
    assert all("ETA" in line for line in lines)
    # 10 steps 4 s apart = 40 s: a line at most every LOG_INTERVAL_S (10 s), plus the first and the last
    assert 3 <= len(lines) <= 2 + 40 / progress_module.LOG_INTERVAL_S


def test_a_terminal_gets_a_redrawn_bar() -> None:
    out = FakeTerminal()
    with progress(desc="joining Whisper base", total=100, unit="B", stream=out) as bar:
        bar.update(100)
    assert "\r" in out.getvalue() and "100/100" in out.getvalue()


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with progress(desc="validation", total=5, enabled=False, stream=out) as bar:
        bar.update(5)
    assert out.getvalue() == ""
