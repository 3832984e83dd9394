"""Tests for voicebot.audio: G.711 against a scalar g711.c reference, resampling, framing, real files."""

from __future__ import annotations

import subprocess
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest
from pydub import AudioSegment

from voicebot.audio import (
    AudioError,
    Framer,
    StreamResampler,
    Upsampler,
    alaw_decode,
    alaw_encode,
    duration_ms,
    frame_samples,
    from_float,
    live_resampler,
    read_audio,
    resample,
    split_frames,
    to_float,
    ulaw_decode,
    ulaw_encode,
    write_stereo_wav,
    write_wav,
)
from voicebot.frames import PCM

# ---------------------------------------------------------------- scalar reference: Sun g711.c logic

SEG_END = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF]
SEG_AEND = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]


def search(val: int, table: list[int]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2ulaw(pcm_val: int) -> int:
    bias, clip = 0x84, 32635
    if pcm_val < 0:
        pcm_val, mask = -pcm_val, 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, clip) + bias
    seg = search(pcm_val, SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm_val >> (seg + 3)) & 0xF)) ^ mask


def ref_ulaw2linear(u_val: int) -> int:
    u_val = ~u_val & 0xFF
    t = (((u_val & 0x0F) << 3) + 0x84) << ((u_val & 0x70) >> 4)
    return 0x84 - t if u_val & 0x80 else t - 0x84


def ref_linear2alaw(pcm_val: int) -> int:
    pcm_val >>= 3
    if pcm_val >= 0:
        mask = 0xD5
    else:
        mask, pcm_val = 0x55, -pcm_val - 1
    seg = search(pcm_val, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm_val >> 1) if seg < 2 else (pcm_val >> seg)) & 0x0F
    return aval ^ mask


def ref_alaw2linear(a_val: int) -> int:
    a_val ^= 0x55
    t = (a_val & 0x0F) << 4
    seg = (a_val & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a_val & 0x80 else -t


SWEEP = np.array([*range(-32768, 32768, 7), 32767], dtype=np.int16)
ALL_CODES = bytes(range(256))


def test_ulaw_known_values() -> None:
    assert ulaw_encode(np.array([0], dtype=np.int16)) == b"\xff"
    assert ulaw_decode(b"\xff\x00\x80\x7f").tolist() == [0, -32124, 32124, 0]
    assert ulaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\x80\x00"


def test_alaw_known_values() -> None:
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert alaw_encode(np.array([0], dtype=np.int16)) == b"\xd5"
    assert alaw_encode(np.array([32767, -32768], dtype=np.int16)) == b"\xaa\x2a"


def test_decoders_match_reference_for_all_codes() -> None:
    assert ulaw_decode(ALL_CODES).tolist() == [ref_ulaw2linear(c) for c in range(256)]
    assert alaw_decode(ALL_CODES).tolist() == [ref_alaw2linear(c) for c in range(256)]
    assert ulaw_decode(ALL_CODES).dtype == np.int16 and alaw_decode(ALL_CODES).dtype == np.int16


def test_all_256_codes_round_trip() -> None:
    expected_ulaw = bytes(0xFF if c == 0x7F else c for c in range(256))  # 0x7F is "-0", decodes to 0
    assert ulaw_encode(ulaw_decode(ALL_CODES)) == expected_ulaw
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


def test_encoders_match_reference_sweep() -> None:
    values = SWEEP.tolist()
    assert ulaw_encode(SWEEP) == bytes(ref_linear2ulaw(v) for v in values)
    assert alaw_encode(SWEEP) == bytes(ref_linear2alaw(v) for v in values)


def test_codecs_on_empty_input() -> None:
    empty = np.zeros(0, dtype=np.int16)
    assert ulaw_encode(empty) == b"" and alaw_encode(empty) == b""
    assert len(ulaw_decode(b"")) == 0 and len(alaw_decode(b"")) == 0


# ---------------------------------------------------------------- helpers


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> PCM:
    t = np.arange(int(rate * seconds)) / rate
    return from_float(amp * np.sin(2 * np.pi * freq * t))


def peak_hz(pcm: PCM, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def rms(pcm: PCM) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def make_wav(path: Path, data: np.ndarray, width: int, channels: int, rate: int = 44100) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


# ---------------------------------------------------------------- float conversion and resampling


def test_float_conversion_round_trips_every_int16() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    x = to_float(every)
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() < 1.0
    assert np.array_equal(from_float(x), every)
    assert from_float(np.array([2.0, -2.0, 0.49 / 32768], dtype=np.float32)).tolist() == [32767, -32768, 0]


@pytest.mark.parametrize("src", [8000, 16000, 22050, 48000])
@pytest.mark.parametrize("dst", [8000, 16000, 22050, 48000])
def test_resample_lengths(src: int, dst: int) -> None:
    out = resample(sine(440, src, 0.5), src, dst)
    assert out.dtype == np.int16
    assert abs(len(out) - dst // 2) <= 1


def test_resample_same_rate_is_a_no_op() -> None:
    pcm = sine(440, 16000, 0.1)
    assert resample(pcm, 16000, 16000) is pcm


def test_sine_survives_8k_to_16k() -> None:
    src = sine(1000, 8000, 1.0)
    out = resample(src, 8000, 16000)
    assert abs(peak_hz(out, 16000) - 1000) <= 2
    middle = out[1600:-1600]
    assert abs(20 * np.log10(rms(middle) / rms(src))) < 1.0


def test_resample_clips_instead_of_wrapping() -> None:
    square = np.tile(np.array([32767] * 20 + [-32768] * 20, dtype=np.int16), 50)
    out = resample(square, 8000, 16000)  # Gibbs overshoot would wrap around without clipping
    assert out.max() == 32767 and out.min() == -32768
    assert np.all(out[100:-100:80] > 0)


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (48000, 16000), (22050, 16000)])
def test_stream_resampler_matches_one_shot(src: int, dst: int) -> None:
    pcm = from_float(np.random.default_rng(1).standard_normal(src) * 0.1)
    one_shot = resample(pcm, src, dst)
    stream = StreamResampler(src, dst)
    for _ in range(2):  # `last=True` readies it for a second stream
        chunks = split_frames(pcm, src, 20, pad=False)
        parts = [stream.process(c, last=i == len(chunks) - 1) for i, c in enumerate(chunks)]
        out = np.concatenate(parts)
        assert abs(len(out) - len(one_shot)) <= 1
        n = min(len(out), len(one_shot))
        assert np.abs(out[:n].astype(np.int32) - one_shot[:n]).max() <= 3


def test_stream_resampler_same_rate_passes_through() -> None:
    pcm = sine(440, 16000, 0.02)
    assert StreamResampler(16000, 16000).process(pcm) is pcm


def test_bad_rates_raise() -> None:
    with pytest.raises(ValueError):
        resample(sine(440, 8000, 0.1), 0, 16000)
    with pytest.raises(ValueError):
        frame_samples(11025, 20)


# ---------------------------------------------------------------- framing


def test_frame_samples() -> None:
    assert [frame_samples(r) for r in (8000, 16000, 22050, 48000)] == [160, 320, 441, 960]
    assert frame_samples(16000, 30) == 480


def test_split_frames_pads_or_drops_the_tail() -> None:
    pcm = np.arange(1, 801, dtype=np.int16)  # 2.5 frames at 16 kHz
    padded = split_frames(pcm, 16000)
    assert [len(f) for f in padded] == [320, 320, 320]
    assert padded[2][:160].tolist() == list(range(641, 801)) and not padded[2][160:].any()
    assert [len(f) for f in split_frames(pcm, 16000, pad=False)] == [320, 320]
    assert split_frames(np.zeros(0, dtype=np.int16), 16000) == []


def test_framer_reassembles_arbitrary_chunks() -> None:
    pcm = np.arange(1000, dtype=np.int16)
    framer = Framer(8000)
    frames: list[PCM] = []
    pos = 0
    for size in (1, 159, 7, 300, 33, 500):  # sums to 1000
        frames += framer.push(pcm[pos : pos + size])
        pos += size
    assert all(len(f) == 160 for f in frames)
    tail = framer.flush()
    assert tail is not None and len(tail) == 160
    joined = np.concatenate([*frames, tail])
    assert np.array_equal(joined[:1000], pcm) and not joined[1000:].any()
    assert framer.flush() is None
    assert framer.push(np.zeros(0, dtype=np.int16)) == []


def test_duration_ms() -> None:
    assert duration_ms(np.zeros(320, dtype=np.int16), 16000) == 20.0
    assert duration_ms(np.zeros(441, dtype=np.int16), 22050) == 20.0


# ---------------------------------------------------------------- reading files


def test_read_wav_mono_16bit_44k(tmp_path: Path) -> None:
    path = make_wav(tmp_path / "mono.wav", sine(1000, 44100, 1.0).astype("<i2"), 2, 1)
    out = read_audio(path)
    assert out.dtype == np.int16 and abs(len(out) - 16000) <= 1
    assert abs(peak_hz(out, 16000) - 1000) <= 2
    assert abs(rms(out[800:-800]) - 16384 / np.sqrt(2)) < 300


def test_read_wav_stereo_is_averaged(tmp_path: Path) -> None:
    left = sine(1000, 44100, 1.0)
    both = np.stack([left, np.zeros_like(left)], axis=1).astype("<i2")  # speech only on the left
    out = read_audio(make_wav(tmp_path / "stereo.wav", both, 2, 2), rate=44100)
    assert np.abs(out.astype(np.int32) - left // 2).max() <= 1


def test_read_wav_8bit(tmp_path: Path) -> None:
    u8 = (np.round(sine(1000, 44100, 1.0) / 256) + 128).astype(np.uint8)
    out = read_audio(make_wav(tmp_path / "u8.wav", u8, 1, 1), rate=44100)
    assert np.abs(out.astype(np.int32) - (u8.astype(np.int32) - 128) * 256).max() == 0
    assert abs(rms(out) - 16384 / np.sqrt(2)) < 300


@pytest.mark.parametrize("width", [3, 4])
def test_read_wav_24_and_32_bit(tmp_path: Path, width: int) -> None:
    ref = sine(1000, 44100, 1.0)
    wide = ref.astype(np.int32) << (8 * width - 16)
    raw = wide.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :width].copy()  # little-endian: keep low bytes
    out = read_audio(make_wav(tmp_path / f"w{width}.wav", raw, width, 1), rate=44100)
    assert np.array_equal(out, ref)


def test_read_float_wav_through_ffmpeg(tmp_path: Path) -> None:
    src = make_wav(tmp_path / "s16.wav", sine(1000, 44100, 1.0).astype("<i2"), 2, 1)
    flt = tmp_path / "float.wav"  # ffmpeg writes WAVE_FORMAT_EXTENSIBLE float, which stdlib wave refuses
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c:a", "pcm_f32le", str(flt)], check=True)
    out = read_audio(flt)
    assert abs(len(out) - 16000) <= 1
    assert abs(rms(out[800:-800]) - 16384 / np.sqrt(2)) < 300


def test_read_mp3(tmp_path: Path) -> None:
    pcm = sine(1000, 44100, 1.0)
    path = tmp_path / "tone.mp3"
    AudioSegment(data=pcm.tobytes(), sample_width=2, frame_rate=44100, channels=1).export(path, format="mp3")
    out = read_audio(path)
    assert abs(len(out) - 16000) < 1600  # MP3 adds encoder delay and padding
    assert abs(peak_hz(out, 16000) - 1000) <= 2


def test_write_read_round_trip(tmp_path: Path) -> None:
    pcm = from_float(np.random.default_rng(2).standard_normal(16000) * 0.2)
    path = tmp_path / "nested" / "dir" / "out.wav"
    write_wav(path, pcm, 16000)
    assert np.array_equal(read_audio(path), pcm)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)


def test_write_stereo_pads_shorter_channel(tmp_path: Path) -> None:
    left, right = sine(440, 8000, 0.5), sine(880, 8000, 0.25)
    path = tmp_path / "calls" / "stereo.wav"
    write_stereo_wav(path, left, right, 8000)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getnframes(), w.getframerate()) == (2, 4000, 8000)
        frames = np.frombuffer(w.readframes(4000), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(frames[:, 0], left)
    assert np.array_equal(frames[:2000, 1], right) and not frames[2000:, 1].any()


def test_long_file_memory_stays_bounded(tmp_path: Path) -> None:
    pcm = np.tile(sine(300, 8000, 1.0), 600)  # 10 minutes of telephone audio
    path = tmp_path / "long.wav"
    write_wav(path, pcm, 8000)
    tracemalloc.start()
    try:
        out = read_audio(path, rate=16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(out) == 2 * len(pcm)
    assert peak < 10 * pcm.nbytes  # output alone is 2x the input; no needless full-length copies


# ---------------------------------------------------------------- reading errors


def assert_audio_error(path: Path, words: str) -> None:
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert str(path) in str(info.value) and words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    assert_audio_error(tmp_path / "nope.wav", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_audio_error(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert_audio_error(path, "empty")


@pytest.mark.parametrize("name", ["notes.wav", "notes.mp3", "notes.txt"])
def test_text_file_is_not_audio(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("hello, this is not audio\n" * 20)
    assert_audio_error(path, "not an audio file")


def test_riff_header_with_garbage(tmp_path: Path) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(100))
    assert_audio_error(path, "not an audio file")


def test_wav_with_no_samples(tmp_path: Path) -> None:
    path = make_wav(tmp_path / "silent.wav", np.zeros(0, dtype="<i2"), 2, 1)
    assert_audio_error(path, "no audio samples")


def test_upsampler_is_immediate_and_keeps_the_telephone_band() -> None:
    """The live 8 -> 16 kHz path: every 20 ms chunk comes out at once (soxr HQ holds ~100 ms back),
    tones inside the telephone band keep their level, and the image above 4 kHz is suppressed."""
    up = Upsampler(8000, 16000)
    assert live_resampler(8000, 16000, low_delay=True).__class__ is Upsampler
    assert isinstance(live_resampler(8000, 16000), StreamResampler)  # opt-in
    assert isinstance(live_resampler(48000, 16000, low_delay=True), StreamResampler)
    with pytest.raises(ValueError, match="whole-factor"):
        Upsampler(22050, 16000)
    assert up.delay_ms == 2.0
    for hz in (300, 1000, 3000, 3400):
        src = sine(hz, 8000, 0.5)
        parts = [up.process(c) for c in split_frames(src, 8000, 20, pad=False)]
        assert [p.size for p in parts] == [320] * len(parts)
        out = np.concatenate(parts)[800:-800]  # no edges
        assert abs(peak_hz(out, 16000) - hz) <= 2
        assert abs(20 * np.log10(rms(out) / rms(src[400:-400]))) < 0.5, hz
        spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
        freqs = np.fft.rfftfreq(out.size, 1 / 16000)
        image = spectrum[np.abs(freqs - (8000 - hz)) < 20].max()  # the mirror zero-stuffing creates
        assert 20 * np.log10(image / spectrum.max()) < -40, hz
    silent = Upsampler(8000, 16000)
    pcm = sine(1000, 8000, 0.1)
    once = silent.process(pcm, last=True)
    assert np.array_equal(silent.process(pcm), once)  # `last` starts a fresh stream
