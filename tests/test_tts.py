"""TTS backends against the real Piper voice and the real espeak-ng / flite binaries (no mocks)."""

from __future__ import annotations

import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from voicebot.config import TTSConfig
from voicebot.dialogue.nlg import fixed_phrases
from voicebot.domain.loader import load_domain
from voicebot.frames import PCM
from voicebot.tts import (
    CachedTTS,
    EspeakTTS,
    FliteTTS,
    PiperTTS,
    TTSBackend,
    TTSError,
    make_tts,
    split_sentences,
)
from voicebot.tts.base import MAX_WORDS
from voicebot.tts.cache import BackgroundWarm

SIX_WORDS = "Your order has shipped this morning."
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite binary not installed")


@pytest.fixture(scope="module")
def piper() -> PiperTTS:
    return PiperTTS()


def rms(pcm: PCM) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def assert_speech(pcm: PCM, rate: int, lo_s: float = 0.8, hi_s: float = 4.0) -> None:
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert lo_s <= len(pcm) / rate <= hi_s, f"{len(pcm) / rate:.2f} s"
    assert rms(pcm) > 300, "audio is (near) silent"


# ---------------------------------------------------------------- backends


def test_piper_speaks_six_words(piper: PiperTTS) -> None:
    assert piper.sample_rate == 22050 and piper.name == "piper"
    assert isinstance(piper, TTSBackend)
    assert_speech(piper.synthesize(SIX_WORDS), piper.sample_rate)


def test_piper_length_scale_slows_speech(piper: PiperTTS) -> None:
    slow = PiperTTS(length_scale=1.6)
    # Piper's duration predictor is stochastic (noise_w), so compare averages with a wide margin.
    normal = statistics.mean(len(piper.synthesize(SIX_WORDS)) for _ in range(2))
    slower = statistics.mean(len(slow.synthesize(SIX_WORDS)) for _ in range(2))
    assert slower > 1.25 * normal


def test_piper_variation_zero_is_deterministic(piper: PiperTTS) -> None:
    still = PiperTTS(variation=0.0)
    first, second = still.synthesize(SIX_WORDS), still.synthesize(SIX_WORDS)
    assert np.array_equal(first, second)
    assert_speech(first, still.sample_rate)
    # The default voice draws fresh noise each time (lengths differ by whole duration frames).
    takes = [piper.synthesize(SIX_WORDS) for _ in range(3)]
    assert not all(np.array_equal(takes[0], t) for t in takes[1:])


@pytest.mark.models
def test_make_tts_passes_variation() -> None:
    tts = make_tts(TTSConfig.model_validate({"variation": 0.0, "cache_size": 0}))
    assert isinstance(tts.backend, PiperTTS) and tts.backend.variation == 0.0
    with pytest.raises(ValueError, match="variation"):
        TTSConfig.model_validate({"variation": -1})


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_piper_empty_text_is_empty_audio(piper: PiperTTS, text: str) -> None:
    out = piper.synthesize(text)
    assert out.dtype == np.int16 and len(out) == 0


def test_piper_missing_voice_file(tmp_path: Path) -> None:
    with pytest.raises(TTSError, match="not found"):
        PiperTTS(tmp_path / "no-such-voice.onnx")


def test_piper_runs_without_onnxruntime_arena(piper: PiperTTS) -> None:
    """The arena would keep every concurrent synthesis's buffers for good (see voicebot.memory)."""
    assert piper.voice.session.get_session_options().enable_cpu_mem_arena is False
    assert_speech(piper.synthesize("Checking the arena."), piper.sample_rate, lo_s=0.3)


def test_piper_is_thread_safe(piper: PiperTTS) -> None:
    texts = ["Hello there.", "Your parcel is on its way.", "Thank you for calling.", "Goodbye for now."]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(piper.synthesize, texts * 2))
    for out in outs:
        assert_speech(out, piper.sample_rate, lo_s=0.3)


@needs_espeak
def test_espeak_speaks() -> None:
    tts = EspeakTTS()
    assert tts.name == "espeak-ng" and tts.sample_rate == 22050
    assert isinstance(tts, TTSBackend)
    assert_speech(tts.synthesize(SIX_WORDS), tts.sample_rate)
    assert len(tts.synthesize("  ")) == 0
    # Text that looks like an option is spoken, not parsed.
    assert_speech(tts.synthesize("-v is not an option here."), tts.sample_rate, lo_s=0.5)


@needs_espeak
def test_espeak_bad_voice() -> None:
    with pytest.raises(TTSError, match="voice"):
        EspeakTTS(voice="xx-no-such-voice")


@needs_flite
def test_flite_speaks() -> None:
    tts = FliteTTS()
    assert tts.name == "flite" and tts.sample_rate == 16000
    assert_speech(tts.synthesize(SIX_WORDS), tts.sample_rate)
    assert len(tts.synthesize("")) == 0
    assert FliteTTS(voice="kal").sample_rate == 8000


@needs_flite
def test_flite_unknown_voice_is_an_error_not_a_silent_fallback() -> None:
    with pytest.raises(TTSError, match="no voice"):
        FliteTTS(voice="no-such-voice")


@pytest.mark.parametrize("cls", [EspeakTTS, FliteTTS])
def test_missing_binary(
    cls: type[EspeakTTS] | type[FliteTTS], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: the binary really is not there
    with pytest.raises(TTSError, match="not found on PATH"):
        cls()


# ---------------------------------------------------------------- sentence splitting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello. How are you? Great!", ["Hello.", "How are you?", "Great!"]),
        ("Mr. Smith will call Dr. Jones.", ["Mr. Smith will call Dr. Jones."]),
        (
            "Use a code, e.g. SAVE10, at checkout. Thanks.",
            ["Use a code, e.g. SAVE10, at checkout.", "Thanks."],
        ),
        ("Your total is $49.99. Shall I charge it?", ["Your total is $49.99.", "Shall I charge it?"]),
        (
            "Order No. 12345 shipped. Tracking is A-1042.7 now.",
            ["Order No. 12345 shipped.", "Tracking is A-1042.7 now."],
        ),
        ("No. That is not right.", ["No.", "That is not right."]),
        ("Really?! Yes... okay.", ["Really?!", "Yes...", "okay."]),
        ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
        ("We are Acme Inc. How can I help?", ["We are Acme Inc.", "How can I help?"]),
        ("Call J. R. Smith at 9 a.m. tomorrow.", ["Call J. R. Smith at 9 a.m. tomorrow."]),
        ("Steps:\n1. Open the app.\n2. Tap Orders.", ["Steps:", "1. Open the app.", "2. Tap Orders."]),
        ("  no   final   stop  ", ["no final stop"]),
        ("", []),
        ("  ...  ! ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_long_sentence_at_commas() -> None:
    text = (
        "Your order, which was placed on Monday, has been packed, labelled and handed to the courier, "
        "who will deliver it to your door on Tuesday between nine and five, unless you ask us to hold it "
        "at the depot instead, in which case you can collect it any day this week."
    )
    chunks = split_sentences(text)
    assert len(chunks) >= 2
    assert len(chunks[0].split()) <= 8, chunks[0]  # the first chunk is short: quick first audio
    assert all(len(c.split()) <= MAX_WORDS for c in chunks), chunks
    assert " ".join(chunks) == text
    # Short sentences are never cut at commas, and "1,299" is not a clause break.
    assert split_sentences("Yes, it costs 1,299 dollars, sir.") == ["Yes, it costs 1,299 dollars, sir."]


# ---------------------------------------------------------------- cache


def test_cache_hit_is_identical_read_only_and_fast(piper: PiperTTS) -> None:
    cache = CachedTTS(piper, size=8)
    first = cache.synthesize_at("Thanks for calling Acme.", 16000)
    again = cache.synthesize_at("  Thanks for calling   Acme. ", 16000)  # whitespace-normalised key
    assert again is first
    assert cache.hits == 1 and cache.misses == 1
    with pytest.raises(ValueError):
        first[0] = 1
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        cache.synthesize_at("Thanks for calling Acme.", 16000)
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.005  # typically ~1 µs; no max: a loaded CI box can stall any call


def test_cache_resamples_to_channel_rate(piper: PiperTTS) -> None:
    cache = CachedTTS(piper, size=8)
    phone = cache.synthesize_at(SIX_WORDS, 8000)
    assert_speech(phone, 8000)
    assert ("Your order has shipped this morning.", 8000) in cache
    assert (SIX_WORDS, 16000) not in cache  # each rate is its own entry
    assert isinstance(cache, TTSBackend) and cache.sample_rate == 22050


@needs_espeak
def test_resampled_length_matches_rate_ratio() -> None:
    cache = CachedTTS(EspeakTTS(), size=8)  # espeak-ng is deterministic, so lengths compare exactly
    native = cache.synthesize_at(SIX_WORDS, 22050)
    for rate in (8000, 16000, 48000):
        out = cache.synthesize_at(SIX_WORDS, rate)
        assert abs(len(out) - len(native) * rate / 22050) <= 1
        assert out.dtype == np.int16


def test_cache_warm_lru_and_empty(piper: PiperTTS) -> None:
    cache = CachedTTS(piper, size=2)
    cache.warm(["Hello.", "Goodbye."], 8000)
    assert len(cache) == 2 and cache.misses == 2
    cache.synthesize_at("Hello.", 8000)
    assert cache.hits == 1
    cache.synthesize_at("Sorry?", 8000)  # evicts the least recently used: "Goodbye."
    assert ("Hello.", 8000) in cache and ("Goodbye.", 8000) not in cache and len(cache) == 2
    empty = cache.synthesize_at("   ", 8000)
    assert empty.dtype == np.int16 and len(empty) == 0


def test_cache_size_zero_still_speaks(piper: PiperTTS) -> None:
    cache = CachedTTS(piper, size=0)
    assert len(cache.synthesize_at("Hello.", 16000)) > 0
    assert len(cache) == 0


def test_cache_concurrent_misses_share_one_synthesis(piper: PiperTTS) -> None:
    cache = CachedTTS(piper, size=8)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: cache.synthesize_at("Please hold the line.", 16000), range(8)))
    assert all(o is outs[0] for o in outs)


# ---------------------------------------------------------------- factory


@pytest.mark.models
def test_make_tts_piper_default() -> None:
    tts = make_tts(TTSConfig.model_validate({"cache_size": 3}))
    assert isinstance(tts, CachedTTS) and isinstance(tts.backend, PiperTTS)
    assert tts.name == "piper" and tts.size == 3 and tts.sample_rate == 22050


@pytest.mark.parametrize(
    ("backend", "cls"),
    [
        pytest.param("espeak-ng", EspeakTTS, marks=needs_espeak),
        pytest.param("flite", FliteTTS, marks=needs_flite),
    ],
)
def test_make_tts_fallbacks(backend: str, cls: type[TTSBackend]) -> None:
    tts = make_tts(TTSConfig.model_validate({"backend": backend}))
    assert isinstance(tts.backend, cls) and tts.name == backend
    assert_speech(tts.synthesize_at(SIX_WORDS, 8000), 8000)


def test_make_tts_missing_voice(tmp_path: Path) -> None:
    with pytest.raises(TTSError, match="not found"):
        make_tts(TTSConfig.model_validate({"voice": tmp_path / "missing.onnx"}))


def test_quick_start_cuts_only_the_first_sentence_at_a_clause() -> None:
    text = (
        "Good news, order 8 3 0 1 1 2, a pair of running shoes, has shipped. It should arrive soon, I think."
    )
    assert split_sentences(text, quick_start=True) == [
        "Good news, order 8 3 0 1 1 2,",
        "a pair of running shoes, has shipped.",
        "It should arrive soon, I think.",
    ]
    assert split_sentences("Yes, it's done.", quick_start=True) == ["Yes, it's done."]
    assert split_sentences("Sure thing, one moment, ok.", quick_start=True) == ["Sure thing, one moment, ok."]


# ---------------------------------------------------------------- warming the fixed replies


@needs_espeak
def test_warm_phrases_caches_fixed_chunks_as_the_speak_stage_asks_for_them() -> None:
    cache = CachedTTS(EspeakTTS(), size=16)
    texts = [
        "I am sorry about that, let me check what went wrong with your order. One moment.",
        "Good news, order {order_id} has shipped. Anything else?",
        "What's your order number?",
    ]
    made = cache.warm_phrases(texts, 8000)
    # the first sentence both whole (later in a reply) and cut at its clause break (a reply's start)
    wanted = [
        "I am sorry about that,",
        "let me check what went wrong with your order.",
        "I am sorry about that, let me check what went wrong with your order.",
        "One moment.",
        "Anything else?",
        "What's your order number?",
    ]
    assert made == len(wanted) == len(cache)
    assert all((w, 8000) in cache for w in wanted)
    assert not any(("{" in key[1]) for key in cache._lru)  # a chunk with a placeholder is never made

    small = CachedTTS(EspeakTTS(), size=4)  # at most half the cache: calls keep room for their own
    assert small.warm_phrases(texts, 8000) == 2 and len(small) == 2


@needs_espeak
def test_background_warm_fills_the_cache_and_stops() -> None:
    cache = CachedTTS(EspeakTTS(), size=32)
    warm = BackgroundWarm(cache, ["Thanks for calling.", "Goodbye!"], [8000, 16000])
    warm.start()
    deadline = time.monotonic() + 30
    while warm.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not warm.running and warm.done == 4
    assert ("Goodbye!", 16000) in cache and ("Thanks for calling.", 8000) in cache

    stopped = BackgroundWarm(cache, [f"Number {n}." for n in range(20)], [8000])
    stopped.stop()  # before it started: nothing to join
    stopped.start()  # its stop flag is set: it ends at once
    stopped.stop()
    assert not stopped.running and stopped.done == 0


def test_shop_fixed_phrases_cover_prompts_and_faq_answers() -> None:
    domain = load_domain(Path(__file__).resolve().parents[1] / "domains" / "shop")
    phrases = fixed_phrases(domain)
    assert domain.responses["greeting"][0] in phrases
    assert all(answer in phrases for answer in domain.faq.values()) and domain.faq
    assert any("{" in p for p in phrases)  # templates come as written; warm_phrases skips their slots
