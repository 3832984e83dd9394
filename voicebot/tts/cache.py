"""Synthesised sentences kept at the channel rate, so fixed prompts and repeated phrases cost nothing.

Greetings, reprompts and "Is there anything else?" recur in every call; after the first synthesis they are a
dict lookup, already resampled to the caller's channel rate (8 kHz phone, 16 kHz browser).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future

from voicebot.audio import resample
from voicebot.frames import PCM
from voicebot.tts.base import TTSBackend, split_sentences

_Key = tuple[str, str, int]
log = logging.getLogger(__name__)


class CachedTTS:
    """An LRU of (backend name, text, output rate) → read-only PCM in front of any backend.

    Thread-safe with the lock held only around the dict: synthesis runs outside it, so different sentences
    synthesise in parallel; concurrent misses on the *same* sentence wait for the one synthesis in flight.
    Returned arrays are shared between callers and marked read-only; copy before mutating.
    """

    def __init__(self, backend: TTSBackend, size: int = 256) -> None:
        self.backend = backend
        self.name = backend.name
        self.sample_rate = backend.sample_rate
        self.size = size
        self.hits = 0
        self.misses = 0
        self._lru: OrderedDict[_Key, PCM] = OrderedDict()
        self._inflight: dict[_Key, Future[PCM]] = {}
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> PCM:
        """`TTSBackend` compatible: the sentence at the backend's own rate (cached too)."""
        return self.synthesize_at(text, self.sample_rate)

    def synthesize_at(self, text: str, rate: int) -> PCM:
        """One sentence → read-only int16 at `rate`, from cache when possible."""
        text = " ".join(text.split())
        key = (self.name, text, rate)
        with self._lock:
            pcm = self._lru.get(key)
            if pcm is not None:
                self._lru.move_to_end(key)
                self.hits += 1
                return pcm
            self.misses += 1
            pending = self._inflight.get(key)
            if pending is None:
                future: Future[PCM] = Future()
                self._inflight[key] = future
        if pending is not None:
            return pending.result()
        try:
            pcm = resample(self.backend.synthesize(text), self.sample_rate, rate)
            pcm.setflags(write=False)
        except BaseException as exc:
            with self._lock:
                del self._inflight[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._inflight[key]
            if self.size > 0:
                self._lru[key] = pcm
                while len(self._lru) > self.size:
                    self._lru.popitem(last=False)
        future.set_result(pcm)
        return pcm

    def warm(self, texts: Iterable[str], rate: int) -> None:
        """Pre-synthesise fixed prompts (greeting, reprompts) so the first caller never waits for them."""
        for text in texts:
            self.synthesize_at(text, rate)

    def warm_phrases(self, texts: Iterable[str], rate: int, stop: threading.Event | None = None) -> int:
        """Pre-synthesise the fixed chunks of reply templates, split as the speak stage splits a reply (its
        first sentence cut at a clause break, or whole further in); chunks with a `{placeholder}` are
        skipped. At most half the cache, so calls keep room. Returns how many were made or found."""
        chunks = dict.fromkeys(
            chunk
            for text in texts
            for quick in (True, False)
            for chunk in split_sentences(text, quick_start=quick)
            if "{" not in chunk
        )
        done = 0
        for chunk in list(chunks)[: self.size // 2]:
            if stop is not None and stop.is_set():
                break
            self.synthesize_at(chunk, rate)
            done += 1
        return done

    def __contains__(self, item: tuple[str, int]) -> bool:
        """`(text, rate) in cache`: whether that sentence is cached (does not touch the LRU order)."""
        text, rate = item
        with self._lock:
            return (self.name, " ".join(text.split()), rate) in self._lru

    def __len__(self) -> int:
        with self._lock:
            return len(self._lru)

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()


class BackgroundWarm:
    """`warm_phrases` in a daemon thread: the gateway answers at once, and the fixed replies become cache
    hits within seconds (~0.15 s of CPU each) instead of on their first use in some caller's turn."""

    def __init__(self, cache: CachedTTS, texts: Iterable[str], rates: Iterable[int]) -> None:
        self.cache, self.texts, self.rates = cache, list(texts), list(rates)
        self.done = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tts-warm", daemon=True)

    def _run(self) -> None:
        try:
            for rate in self.rates:
                self.done += self.cache.warm_phrases(self.texts, rate, self._stop)
        except Exception:  # a phrase the voice cannot say must not take the gateway down
            log.exception("warming the TTS cache failed after %d phrases", self.done)
        else:
            log.info("TTS cache warmed with %d fixed phrases", self.done)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
