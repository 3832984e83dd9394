"""Background noise made procedurally at 8 kHz, the same for the same seed: nothing is downloaded.

- `white`: Gaussian white noise.
- `babble`: a crowd, six talkers at once. Each talker is a voiced source (a pulse train at a wandering
  pitch, 90-240 Hz) plus some breath noise, given vowel-like formants that change every syllable, shaped to
  the long-term average speech spectrum and switched on and off by a syllabic envelope (~4 syllables a
  second, phrases with pauses between them).
- `office`: a fan's low hum and mains buzz, bursts of keyboard typing, and distant (muffled) babble.
- `street`: a low-frequency traffic rumble, cars passing by (engine and tyre noise swelling and fading over
  a few seconds), and a little wind.

Levels inside a kind are fixed ratios; `simulate` scales the whole noise to the line's SNR.
"""

from __future__ import annotations

import numpy as np

from voicebot.line.channel import RATE, Signal

_WIN, _HOP = 256, 128  # 32 ms frames, 50 % overlap (sqrt-Hann analysis and synthesis: perfect rebuild)


def _shaped(x: Signal, gain: Signal) -> Signal:
    """`x` filtered by a zero-phase magnitude response given per rfft bin (`gain` = f(freqs))."""
    return np.asarray(np.fft.irfft(np.fft.rfft(x) * gain, n=x.size), dtype=np.float64)


def _freqs(n: int) -> Signal:
    return np.asarray(np.maximum(np.fft.rfftfreq(n, 1 / RATE), 1.0), dtype=np.float64)


def speech_shape(f: Signal) -> Signal:
    """Magnitude of the long-term average speech spectrum, roughly (Byrne et al. 1994): rising to 500 Hz,
    then falling about 7.5 dB per octave."""
    return np.asarray(1 / np.sqrt(1 + (120 / f) ** 4) / (1 + (f / 500) ** 2) ** 0.625, dtype=np.float64)


def _normalised(x: Signal) -> Signal:
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return x / rms if rms > 0 else x


def _syllables(n: int, rng: np.random.Generator) -> Signal:
    """A talker's loudness over time: raised-cosine syllables of 120-300 ms in phrases of 3-12, with pauses
    of 0.2-0.8 s; starting at a random point of a phrase."""
    env = np.zeros(n + RATE)
    pos = -int(rng.uniform(0, 2.0) * RATE)
    while pos < n:
        for _ in range(int(rng.integers(3, 13))):
            if pos >= n:
                break
            length = int(rng.uniform(0.12, 0.30) * RATE)
            start = max(pos, 0)
            shape = np.sin(np.linspace(0, np.pi, length)) ** 2 * rng.lognormal(0, 0.4)
            if pos + length > 0:
                env[start : pos + length] += shape[start - pos :]
            pos += length
        pos += int(rng.uniform(0.2, 0.8) * RATE)
    return env[:n]


def _formants(frames: int, bins: Signal, rng: np.random.Generator) -> Signal:
    """Per STFT frame, a spectral envelope with three formants that glide to new vowel targets every
    syllable (~200 ms): F1 300-800, F2 900-2300, F3 2400-3200 Hz."""
    per_target = max(1, int(0.2 * RATE / _HOP))
    targets = np.stack(
        [rng.uniform(lo, hi, frames // per_target + 2) for lo, hi in ((300, 800), (900, 2300), (2400, 3200))]
    )
    at = np.arange(frames) / per_target
    tracks = np.stack([np.interp(at, np.arange(t.size), t) for t in targets])  # (3, frames)
    env = np.full((frames, bins.size), 0.05)
    for k, bandwidth in enumerate((90.0, 110.0, 160.0)):
        env += (0.8**k) / (1 + ((bins[None, :] - tracks[k][:, None]) / bandwidth) ** 2)
    return env


def _stft_filter(x: Signal, env: Signal) -> Signal:
    """Overlap-add filtering of `x` by a magnitude envelope per frame (sqrt-Hann, 50 % overlap)."""
    window = np.sqrt(np.hanning(_WIN + 1)[:_WIN])
    frames = env.shape[0]
    padded = np.concatenate([x, np.zeros(frames * _HOP + _WIN - x.size)])
    idx = np.arange(frames)[:, None] * _HOP + np.arange(_WIN)[None, :]
    spec = np.fft.rfft(padded[idx] * window, axis=1) * env
    out = np.zeros(padded.size)
    np.add.at(out, idx, np.fft.irfft(spec, n=_WIN, axis=1) * window)
    return out[: x.size]


def talker(n: int, rng: np.random.Generator) -> Signal:
    """One speech-like talker (see the module docstring), unit RMS."""
    base = rng.uniform(90, 240)
    t = np.arange(n) / RATE
    f0 = base * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi)))
    phase = np.cumsum(f0 / RATE) + rng.uniform()
    pulses = np.diff(np.floor(phase), prepend=np.floor(phase[0])) * 1.0
    source = _normalised(pulses) + 0.3 * rng.standard_normal(n)
    frames = (n + _HOP - 1) // _HOP + 1
    bins = np.asarray(np.fft.rfftfreq(_WIN, 1 / RATE), dtype=np.float64)
    voiced = _stft_filter(source, _formants(frames, bins, rng) * speech_shape(np.maximum(bins, 1.0)))
    return _normalised(voiced * _syllables(n, rng))


def babble(n: int, rng: np.random.Generator, talkers: int = 6) -> Signal:
    """Several talkers at once, each within ±3 dB of the others."""
    out = np.zeros(n)
    for _ in range(talkers):
        out += talker(n, rng) * 10 ** (rng.uniform(-3, 3) / 20)
    return _normalised(out)


def _hum(n: int, rng: np.random.Generator) -> Signal:
    """A fan's rumble (low-passed noise) and mains buzz (100 Hz and its harmonics, falling off)."""
    t = np.arange(n) / RATE
    mains = rng.choice([50.0, 60.0])
    buzz = sum(np.sin(2 * np.pi * 2 * mains * k * t + rng.uniform(0, 6.3)) / k**1.5 for k in range(1, 16))
    fan = _shaped(rng.standard_normal(n), 1 / (1 + (_freqs(n) / 200) ** 2))
    return _normalised(_normalised(fan) + 0.5 * _normalised(np.asarray(buzz, dtype=np.float64)))


def _typing(n: int, rng: np.random.Generator) -> Signal:
    """Keyboard clicks: 6-9 keys a second in bursts of 1-4 s, 1-5 s apart; each a 4 ms decaying click."""
    out = np.zeros(n + RATE)
    click_len = int(0.004 * RATE)
    decay = np.exp(-np.arange(click_len) / (0.0008 * RATE))
    pos = int(rng.uniform(0, 2) * RATE)
    while pos < n:
        end = pos + int(rng.uniform(1, 4) * RATE)
        while pos < min(end, n):
            out[pos : pos + click_len] += rng.standard_normal(click_len) * decay * rng.uniform(0.5, 1.0)
            pos += int(RATE / rng.uniform(6, 9))
        pos = end + int(rng.uniform(1, 5) * RATE)
    high = 1 / np.sqrt(1 + (1000 / _freqs(n + RATE)) ** 4)  # a click is mostly high frequencies
    return _normalised(_shaped(out, high)[:n])


def office(n: int, rng: np.random.Generator) -> Signal:
    far = _shaped(babble(n, rng, talkers=4), 1 / (1 + (_freqs(n) / 1500) ** 2))  # muffled by distance
    return _normalised(_normalised(far) + 0.6 * _hum(n, rng) + 0.5 * _typing(n, rng))


def street(n: int, rng: np.random.Generator) -> Signal:
    f = _freqs(n)
    rumble = _normalised(_shaped(rng.standard_normal(n), 1 / f / np.sqrt(1 + (20 / f) ** 4)))
    cars = np.zeros(n)
    t = np.arange(n) / RATE
    centre = rng.uniform(-3, 0)
    while centre < n / RATE + 3:
        width = rng.uniform(1.0, 2.5)
        swell = np.exp(-0.5 * ((t - centre) / width) ** 2) * rng.uniform(0.5, 2.0)
        low, high = rng.uniform(60, 150), rng.uniform(500, 1200)
        tone = 1 / np.sqrt((1 + (low / f) ** 4) * (1 + (f / high) ** 4))
        cars += _shaped(rng.standard_normal(n), tone) * swell
        centre += rng.exponential(4.0) + 1.0
    wind = _shaped(rng.standard_normal(n), 1 / np.sqrt(f) / (1 + (f / 800) ** 2))
    return _normalised(rumble + _normalised(cars) + 0.2 * _normalised(wind))


def white(n: int, rng: np.random.Generator) -> Signal:
    return rng.standard_normal(n)


KINDS = {"white": white, "babble": babble, "office": office, "street": street}


def make_noise(kind: str, n: int, rng: np.random.Generator) -> Signal:
    """`n` samples of `kind` noise at 8 kHz, unit RMS."""
    return _normalised(KINDS[kind](n, rng)) if n else np.zeros(0)
