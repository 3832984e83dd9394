"""The packet side of a line: 20 ms frames lost or arriving too late, and how the receiver hides the gaps.

**Loss** follows a two-state Gilbert model per 20 ms frame: a frame is lost while the channel is in its bad
state, which lasts `loss_burst` frames on average; the chance of entering it is set so that `loss_pct` of
the frames are lost in the long run. `loss_burst` 1 (the default) loses each frame independently instead.

**Jitter**: every frame gets an extra network delay drawn from an exponential distribution with mean
`jitter_ms`, and a fixed jitter buffer plays it out `playout_ms` after it was due; a frame later than that
misses its slot, is dropped and concealed like a lost one (a fraction exp(-playout/jitter) of the frames).
A fixed buffer keeps the line's timeline, so the output stays sample-aligned with the input and can be
compared with it; an adaptive buffer would time-warp the speech instead (stretch it while the buffer
refills, squeeze it after), which changes durations and makes the line harder to measure, so it is not
modelled.

**Concealment** (`plc`) follows ITU-T G.711 Appendix I (packet loss concealment for G.711): at a loss the
pitch period of the last 20 ms is found by normalised autocorrelation (5-15 ms, 66-200 Hz), the last pitch
period is repeated (the last two after 10 ms, three after 20 ms, so long gaps do not buzz), with a quarter
period of overlap-add at every joint; after the first 10 ms the synthetic signal fades by 20 % per 10 ms, so
a gap over 60 ms ends in silence; the first good frame after a gap is cross-faded with the synthetic
signal's continuation over a quarter period plus 1 ms per 10 ms of gap (at most 10 ms). Appendix I works
on a delayed output (3.75 ms) to have room for the first overlap-add; offline, the same cross-fade is done on
the samples before the gap instead. `zero` fills lost frames with silence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.line.channel import FRAME, RATE, Signal

_MS10 = RATE // 100
_PITCH_MIN, _PITCH_MAX, _CORR = 40, 120, 160  # 5-15 ms lags over a 20 ms window (Appendix I)
_HISTORY = 390  # Appendix I keeps 48.75 ms: three of the longest pitch periods and a quarter


def lost_frames(frames: int, loss_pct: float, burst: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean per frame: lost on the way (Gilbert model; see the module docstring)."""
    loss = loss_pct / 100
    if frames == 0 or loss <= 0:
        return np.zeros(frames, dtype=bool)
    if burst <= 1:
        return np.asarray(rng.random(frames) < loss)
    leave = 1 / burst  # bad -> good
    enter = min(1.0, leave * loss / (1 - loss))  # good -> bad: the stationary share of bad is `loss`
    draws = rng.random(frames)
    lost = np.zeros(frames, dtype=bool)
    bad = draws[0] < loss
    for i in range(frames):
        lost[i] = bad
        bad = draws[i] >= leave if bad else draws[i] < enter
    return lost


def late_frames(frames: int, jitter_ms: float, playout_ms: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean per frame: its extra delay (exponential, mean `jitter_ms`) is past the playout deadline."""
    if frames == 0 or jitter_ms <= 0:
        return np.zeros(frames, dtype=bool)
    return np.asarray(rng.exponential(jitter_ms, frames) > playout_ms)


def _pitch(history: Signal) -> int:
    """The lag (in samples) that best predicts the last 20 ms of `history` from earlier samples."""
    target = history[-_CORR:]
    best, best_score = _PITCH_MAX, -np.inf
    for lag in range(_PITCH_MIN, _PITCH_MAX + 1):
        past = history[-_CORR - lag : -lag]
        energy = float(past @ past)
        score = float(target @ past) / np.sqrt(energy) if energy > 0 else -np.inf
        if score > best_score:
            best, best_score = lag, score
    return best


def _synthesise(history: Signal, pitch: int, n: int) -> Signal:
    """`n` samples continuing `history` by repeating its last 1, 2, then 3 pitch periods (one more every
    10 ms), overlap-added over a quarter period at each change, faded 20 % per 10 ms after the first 10 ms."""
    quarter = max(1, pitch // 4)
    out = np.zeros(n)
    pos = 0  # phase within the repeated periods
    previous: Signal | None = None
    for start in range(0, n, _MS10):
        periods = min(3, start // _MS10 + 1)
        cycle = history[-periods * pitch :]
        count = min(_MS10, n - start) + quarter
        idx = (pos + np.arange(count)) % cycle.size
        segment = cycle[idx]
        if previous is not None:  # blend in from where the previous cycle would have gone on
            ramp = np.linspace(0, 1, quarter + 2)[1:-1]
            segment[:quarter] = previous[:quarter] * (1 - ramp) + segment[:quarter] * ramp
        stop = min(start + count - quarter, n)
        out[start:stop] = segment[: stop - start]
        previous = segment[stop - start :]
        pos = (pos + stop - start) % (3 * pitch)
    fade = np.clip(1 - 0.2 * (np.arange(n) - _MS10) / _MS10, 0, 1)
    return out * np.where(np.arange(n) < _MS10, 1.0, fade)


def conceal(x: npt.NDArray[np.floating[Any]], missing: np.ndarray, method: str) -> Signal:
    """`x` with every frame marked `missing` replaced: by silence (`zero`) or G.711 Appendix I PLC (`plc`)."""
    y = np.array(x, dtype=np.float64)
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    for first, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        a, b = int(first) * FRAME, min(int(end) * FRAME, y.size)
        if method == "zero" or a < _HISTORY:  # not enough heard yet to repeat
            y[a:b] = 0.0
            continue
        history = y[a - _HISTORY : a]
        pitch = _pitch(history)
        quarter = max(1, pitch // 4)
        tail = min(_MS10, quarter + (b - a) // _MS10 * 8 - 8, y.size - b)  # 1 ms a 10 ms
        synth = _synthesise(history, pitch, b - a + tail)
        ramp = np.linspace(0, 1, quarter + 2)[1:-1]  # into the gap: real fades out, the period's repeat in
        y[a - quarter : a] = y[a - quarter : a] * (1 - ramp) + y[a - quarter - pitch : a - pitch] * ramp
        y[a:b] = synth[: b - a]
        if tail > 0:  # out of the gap: the synthetic continuation fades out, the real signal in
            ramp = np.linspace(0, 1, tail + 2)[1:-1]
            y[b : b + tail] = synth[b - a :] * (1 - ramp) + y[b : b + tail] * ramp
    return y
