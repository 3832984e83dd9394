"""The frame base classes: a frame's category says how stages schedule it (voicebot/frames/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


class Category(Enum):
    SYSTEM = "system"
    DATA = "data"
    CONTROL = "control"


class Direction(Enum):
    DOWNSTREAM = "downstream"  # caller → bot: audio in, transcripts, replies, audio out
    UPSTREAM = "upstream"  # bot → caller side: playback reports, listening contexts


@dataclass(frozen=True)
class Frame:
    """Base class. Class attributes say how stages treat a frame without naming its type:
    `category` schedules it; `ends_input` makes the VAD close an open utterance before it (everything the
    caller said so far is in); `from_caller` marks caller activity (it stops the no-input clock)."""

    category: ClassVar[Category] = Category.CONTROL
    ends_input: ClassVar[bool] = False
    from_caller: ClassVar[bool] = False

    @property
    def interrupts(self) -> bool:
        """Whether this frame cuts the bot off (drops queued speech, stops the reply playing)."""
        return False


@dataclass(frozen=True)
class SystemFrame(Frame):
    category: ClassVar[Category] = Category.SYSTEM


@dataclass(frozen=True)
class DataFrame(Frame):
    category: ClassVar[Category] = Category.DATA


@dataclass(frozen=True)
class ControlFrame(Frame):
    category: ClassVar[Category] = Category.CONTROL
