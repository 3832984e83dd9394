"""The analogue part of a line, on float signals at 8 kHz: the telephone band filter, levels, clipping."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Signal = npt.NDArray[np.float64]
RATE = 8_000
FRAME = RATE // 50  # 20 ms: a G.711 RTP packet, a GSM or AMR frame


def band_filter(x: npt.NDArray[np.floating[Any]], band: str, rate: int = RATE) -> Signal:
    """The telephone channel as an FFT mask over the whole signal (zero phase).

    `phone` is shaped like a PCM codec's channel filter (ITU-T G.712): -3 dB at 300 and 3400 Hz, 24 dB/octave
    below, 48 dB/octave above (so 100 Hz is 38 dB down, 3.8 kHz 8 dB, 4 kHz 12 dB). `brickwall` passes
    300-3400 Hz and nothing else, a stress case harsher than real lines that removes a low male voice's
    fundamental entirely. `none` returns the signal as float64.
    """
    y = np.asarray(x, dtype=np.float64)
    if band == "none" or y.size == 0:
        return y
    spec = np.fft.rfft(y)
    f = np.maximum(np.fft.rfftfreq(y.size, 1 / rate), 1e-3)
    if band == "brickwall":
        spec[(f < 300) | (f > 3400)] = 0
    else:
        spec *= 1 / np.sqrt((1 + (300 / f) ** 8) * (1 + (f / 3400) ** 16))
    return np.asarray(np.fft.irfft(spec, n=y.size), dtype=np.float64)


def frame_powers(x: npt.NDArray[np.floating[Any]], frame: int = FRAME) -> Signal:
    """Mean power of each whole `frame` of `x` (the tail shorter than a frame is left out)."""
    n = x.size // frame * frame
    return np.asarray(np.mean(np.asarray(x[:n], dtype=np.float64).reshape(-1, frame) ** 2, axis=1))


def active_power(x: npt.NDArray[np.floating[Any]], floor_db: float = 35.0) -> float:
    """The talker's level: mean power over the 20 ms frames within `floor_db` of the loudest frames (their
    95th percentile), so pauses and leading silence do not count, as in ITU-T P.56's active speech level
    (a simpler threshold than P.56's). Zero for silence."""
    powers = frame_powers(x)
    if powers.size == 0:
        return float(np.mean(np.asarray(x, dtype=np.float64) ** 2)) if x.size else 0.0
    top = float(np.percentile(powers, 95))
    if top <= 0.0:
        return 0.0
    return float(np.mean(powers[powers >= top * 10 ** (-floor_db / 10)]))


def level_db(power: float) -> float:
    return float(10 * np.log10(max(power, 1e-20)))


def drift_gain(n: int, drift_db: float, period_s: float, phase: float) -> Signal:
    """A slow sinusoidal level wander of ±`drift_db` (the talker moving the phone), as a gain per sample."""
    t = np.arange(n) / RATE
    return np.asarray(10 ** (drift_db * np.sin(2 * np.pi * t / period_s + phase) / 20), dtype=np.float64)


def clip(x: Signal, clip_dbfs: float) -> Signal:
    """Hard clipping at a peak of `clip_dbfs` (0 dBFS = int16 full scale), as an overdriven input does."""
    peak = 10 ** (clip_dbfs / 20)
    return np.clip(x, -peak, peak)
