"""Audio plumbing: G.711 codecs, resampling, 20 ms framing, and file I/O.

Everything inside the pipeline is mono int16 (`PCM`); this module is the one place that turns other
encodings, rates and file formats into that, so the rest of the code never has to care.
G.711 is written in numpy rather than `audioop`, which is removed in Python 3.13.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicebot.frames import PCM

FloatAudio = npt.NDArray[np.float32]


class AudioError(ValueError):
    """A file could not be used as audio; the message names the file and says why, for the user."""


_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635
_ULAW_SEG_END = np.array([0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _build_ulaw_table() -> PCM:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_table() -> PCM:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_TABLE = _build_ulaw_table()
_ALAW_TABLE = _build_alaw_table()


def ulaw_decode(data: bytes) -> PCM:
    """μ-law bytes (telephony wire format) to linear PCM through a 256-entry table."""
    return _ULAW_TABLE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> PCM:
    """A-law bytes (European telephony) to linear PCM through a 256-entry table."""
    return _ALAW_TABLE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(pcm: PCM) -> bytes:
    """Linear PCM to μ-law; bit-exact with g711.c so carriers and our decoder agree."""
    x = np.asarray(pcm, dtype=np.int32)
    mask = np.where(x < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    seg = np.searchsorted(_ULAW_SEG_END, mag).astype(np.int32)
    code = (seg << 4) | ((mag >> (seg + 3)) & 0x0F)
    return (code ^ mask).astype(np.uint8).tobytes()


def alaw_encode(pcm: PCM) -> bytes:
    """Linear PCM to A-law; bit-exact with g711.c (13-bit magnitude, one's complement for negatives)."""
    v = np.asarray(pcm, dtype=np.int32) >> 3
    negative = v < 0
    v = np.where(negative, ~v, v)
    seg = np.searchsorted(_ALAW_SEG_END, v).astype(np.int32)
    code = (seg << 4) | ((v >> np.maximum(seg, 1)) & 0x0F)
    return (code ^ np.where(negative, 0x55, 0xD5)).astype(np.uint8).tobytes()


def to_float(pcm: PCM) -> FloatAudio:
    """int16 to float32 in [-1, 1): what soxr and the models want."""
    x = pcm.astype(np.float32)
    x *= np.float32(1 / 32768)
    return x


def from_float(x: npt.NDArray[np.floating[Any]]) -> PCM:
    """float to int16, rounded and clipped, so overshoot after filtering saturates instead of wrapping."""
    y: FloatAudio = np.multiply(x, 32768, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -32768, 32767, out=y)
    return y.astype(np.int16)


def _check_rates(*rates: int) -> None:
    for rate in rates:
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")


def resample(pcm: PCM, src_rate: int, dst_rate: int) -> PCM:
    """Whole-buffer resampling (soxr HQ); returns `pcm` itself when the rates already match."""
    _check_rates(src_rate, dst_rate)
    if src_rate == dst_rate:
        return pcm
    return from_float(soxr.resample(to_float(pcm), src_rate, dst_rate, quality="HQ"))


class StreamResampler:
    """Resamples a live stream chunk by chunk; the filter state carries over, so there are no clicks
    at chunk borders and the concatenated output equals one-shot `resample`.

    soxr works in blocks: at HQ, 8 -> 16 kHz emits nothing for ~100 ms, then ~100 ms bursts.
    Re-frame the output with `Framer` when a steady 20 ms cadence is needed.
    """

    def __init__(self, src_rate: int, dst_rate: int, quality: str = "HQ") -> None:
        _check_rates(src_rate, dst_rate)
        self.src_rate, self.dst_rate, self.quality = src_rate, dst_rate, quality
        self._stream: Any = None
        if src_rate != dst_rate:
            self._stream = soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality=quality)

    def process(self, pcm: PCM, last: bool = False) -> PCM:
        """Feed one chunk; `last=True` flushes the tail and readies the resampler for a new stream."""
        if self._stream is None:
            return pcm
        out = from_float(self._stream.resample_chunk(to_float(pcm), last=last))
        if last:
            self._stream.clear()
        return out


class Upsampler:
    """Live upsampling by a whole factor (8 -> 16 kHz) with a short windowed-sinc filter: ~1 ms of delay.

    soxr's HQ stream holds back ~100 ms and then emits in bursts; on a live call that is 100 ms added to
    every turn's end and to every barge-in. Telephone audio carries nothing above 3.4 kHz: a 65-tap filter
    (2 ms) is flat to there (-0.3 dB at 3.4 kHz from 8 kHz) and puts the zero-stuffing images 80 dB down.
    """

    def __init__(self, src_rate: int, dst_rate: int, taps_per_phase: int = 32, beta: float = 8.0) -> None:
        _check_rates(src_rate, dst_rate)
        if dst_rate % src_rate:
            raise ValueError(f"{src_rate} -> {dst_rate} Hz is not a whole-factor upsampling")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self.factor = dst_rate // src_rate
        taps = self.factor * taps_per_phase + 1  # odd: a whole-sample delay
        t = (np.arange(taps) - (taps - 1) / 2) / self.factor  # in source samples
        kernel = 0.95 * np.sinc(0.95 * t) * np.kaiser(taps, beta)  # cut-off: 0.95 of the source Nyquist
        self.kernel = (kernel * self.factor / kernel.sum()).astype(np.float32)  # zero-stuffing loses 1/factor
        self._tail = np.zeros(taps - 1, np.float32)

    @property
    def delay_ms(self) -> float:
        return float((self.kernel.size - 1) / 2 * 1000.0 / self.dst_rate)

    def process(self, pcm: PCM, last: bool = False) -> PCM:
        """One chunk in, `factor` times as many samples out, at once; `last` starts a new stream after."""
        stuffed = np.zeros(pcm.size * self.factor, np.float32)
        stuffed[:: self.factor] = pcm
        signal = np.concatenate([self._tail, stuffed])
        out = np.convolve(signal, self.kernel, mode="valid")
        self._tail = signal[signal.size - self._tail.size :] if not last else np.zeros_like(self._tail)
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def live_resampler(src_rate: int, dst_rate: int, low_delay: bool = False) -> Upsampler | StreamResampler:
    """The resampler for a live stream: with `low_delay`, the short filter for whole-factor upsampling
    (telephony into the 16 kHz models); soxr otherwise."""
    if low_delay and dst_rate > src_rate and dst_rate % src_rate == 0:
        return Upsampler(src_rate, dst_rate)
    return StreamResampler(src_rate, dst_rate)


def frame_samples(rate: int, frame_ms: int = 20) -> int:
    """Samples per frame; refuses rates that do not divide evenly, since drifting frames skew timing."""
    _check_rates(rate)
    if frame_ms <= 0 or (rate * frame_ms) % 1000:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {rate} Hz")
    return rate * frame_ms // 1000


def split_frames(pcm: PCM, rate: int, frame_ms: int = 20, pad: bool = True) -> list[PCM]:
    """Cut a buffer into equal frames (views, no copy); the tail is zero-padded or dropped."""
    n = frame_samples(rate, frame_ms)
    whole = len(pcm) // n * n
    frames = [pcm[i : i + n] for i in range(0, whole, n)]
    if pad and whole < len(pcm):
        tail = np.zeros(n, dtype=np.int16)
        tail[: len(pcm) - whole] = pcm[whole:]
        frames.append(tail)
    return frames


class Framer:
    """Turns chunks of any length (network packets, soxr bursts) into fixed-size frames."""

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        self.frame_len = frame_samples(rate, frame_ms)
        self._rest: PCM = np.zeros(0, dtype=np.int16)

    def push(self, pcm: PCM) -> list[PCM]:
        """Add a chunk; returns the frames it completed (possibly none)."""
        buf = np.concatenate([self._rest, pcm]).astype(np.int16, copy=False)
        whole = len(buf) // self.frame_len * self.frame_len
        self._rest = buf[whole:].copy()
        return [buf[i : i + self.frame_len] for i in range(0, whole, self.frame_len)]

    def flush(self) -> PCM | None:
        """The leftover samples as one zero-padded frame, or None if nothing is pending."""
        if not len(self._rest):
            return None
        frame = np.zeros(self.frame_len, dtype=np.int16)
        frame[: len(self._rest)] = self._rest
        self._rest = np.zeros(0, dtype=np.int16)
        return frame


def _to_mono16(raw: bytes, width: int, channels: int, unsigned8: bool) -> PCM:
    """Interleaved little-endian PCM of any width to mono int16, keeping only the top 16 bits."""
    usable = len(raw) - len(raw) % (width * channels)
    buf = memoryview(raw)[:usable]
    if width == 1:
        s = np.frombuffer(buf, dtype=np.uint8 if unsigned8 else np.int8).astype(np.int16)
        s = ((s - 128) if unsigned8 else s) << 8
    elif width == 2:
        s = np.frombuffer(buf, dtype="<i2")
    elif 3 <= width <= 8:  # the two high bytes of each little-endian sample are its int16 value
        s = np.ascontiguousarray(np.frombuffer(buf, dtype=np.uint8).reshape(-1, width)[:, -2:])
        s = s.view("<i2").reshape(-1)
    else:
        raise ValueError(f"unsupported sample width {width}")
    if channels > 1:  # average all channels: a caller on the right channel only must not vanish
        mono = s.reshape(-1, channels).sum(axis=1, dtype=np.int32)
        mono //= channels
        s = mono.astype(np.int16)
    return s.astype(np.int16, copy=False)


def _read_wav(path: Path) -> tuple[PCM, int] | None:
    """Integer PCM WAV through the stdlib (fast, no ffmpeg); None for anything it cannot parse."""
    try:
        with wave.open(str(path), "rb") as w:
            raw = w.readframes(w.getnframes())
            return _to_mono16(raw, w.getsampwidth(), w.getnchannels(), True), w.getframerate()
    except (wave.Error, EOFError, ValueError):
        return None


def _read_any(path: Path, is_wav: bool) -> tuple[PCM, int]:
    """Anything ffmpeg decodes, through pydub; pydub's own errors are many and cryptic, so map them all.

    WAVs the stdlib refused (float, WAVE_FORMAT_EXTENSIBLE) go in as a file object: given a *.wav name, pydub
    parses the header itself and reads extensible float samples as int32 noise instead of asking ffmpeg.
    """
    from pydub import AudioSegment  # imported late: it probes for ffmpeg at import time

    try:
        if is_wav:
            with path.open("rb") as f:
                seg = AudioSegment.from_file(f)
        else:
            seg = AudioSegment.from_file(str(path))
        return _to_mono16(seg.raw_data, seg.sample_width, seg.channels, False), int(seg.frame_rate)
    except Exception as exc:
        raise AudioError(f"{path}: not an audio file, or a format ffmpeg cannot decode") from exc


def read_audio(path: str | Path, rate: int = 16000) -> PCM:
    """Any audio file as mono int16 at `rate`; problems come back as one clear AudioError."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: file is empty (0 bytes)")
        with path.open("rb") as f:
            head = f.read(12)
        is_wav = head[:4] == b"RIFF" and head[8:12] == b"WAVE"
        got = (_read_wav(path) if is_wav else None) or _read_any(path, is_wav)
    except OSError as exc:
        raise AudioError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    pcm, src_rate = got
    if len(pcm) == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return resample(pcm, src_rate, rate)


def _write(path: str | Path, interleaved: PCM, channels: int, rate: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(interleaved, dtype="<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.data.cast("B"))


def write_wav(path: str | Path, pcm: PCM, rate: int) -> None:
    """Mono 16-bit WAV; parent directories are created so callers can write straight into out/."""
    _write(path, pcm, 1, rate)


def write_stereo_wav(path: str | Path, left: PCM, right: PCM, rate: int) -> None:
    """Two-channel WAV (e.g. caller left, bot right); the shorter side is padded with silence."""
    both = np.zeros((max(len(left), len(right)), 2), dtype=np.int16)
    both[: len(left), 0] = left
    both[: len(right), 1] = right
    _write(path, both.reshape(-1), 2, rate)


def duration_ms(pcm: PCM, rate: int) -> float:
    """Length of a buffer in milliseconds."""
    return len(pcm) * 1000 / rate
