"""Progress a person can watch: a live bar with ETA in a terminal, one plain line every ~10 s elsewhere.

Every long step (joining model parts, tokenising, training epochs, evaluation) goes through `progress()`.
In a terminal it is a tqdm bar redrawn a few times a second. When stderr is a log file or CI, a redrawn bar
would be one endless line of carriage returns (or, with tqdm's default of switching itself off there,
nothing at all for minutes), so it becomes a plain line at most every `LOG_INTERVAL_S` seconds, plus the
final one: `epoch 2/6: 48/120 steps (40 %), 0:31 elapsed, ETA 0:46, loss=0.31`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_INTERVAL_S = 10.0
TERMINAL_INTERVAL_S = 0.5
_PLAIN_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f} %), {elapsed} elapsed, ETA {remaining}{postfix}"
)
_PLAIN_NO_TOTAL = "{desc}: {n_fmt} {unit}, {elapsed} elapsed{postfix}"


class _Lines:
    """A stream for tqdm that turns each redraw (`\\r` + status) into one line of its own."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.last = stream, ""

    def write(self, text: str) -> int:
        line = text.strip("\r\n")
        if line and line != self.last:  # closing redraws the last line once more
            self.stream.write(line + "\n")
            self.last = line
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _PlainBar(tqdm):  # type: ignore[misc]
    """tqdm for logs: a new postfix (the loss, each step) waits for the next timed line instead of forcing
    one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
    unit_scale: bool = False,
) -> Any:
    """A tqdm bar (iterate it, or call `.update(n)`; `.set_postfix(...)`, `.close()`) as the module docstring
    says; `enabled=False` gives a silent one with the same methods."""
    out = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if is_terminal(out):
        return tqdm(
            iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, file=out,
            mininterval=TERMINAL_INTERVAL_S, dynamic_ncols=True,
        )  # fmt: skip
    known = total is not None or (iterable is not None and hasattr(iterable, "__len__"))
    return _PlainBar(
        iterable, desc=desc, total=total, unit=unit, unit_scale=unit_scale, file=_Lines(out),
        mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, miniters=1,
        bar_format=_PLAIN_FORMAT if known else _PLAIN_NO_TOTAL,
    )  # fmt: skip
