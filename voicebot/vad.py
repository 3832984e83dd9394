"""Silero VAD (ONNX) and the endpointer that turns speech probabilities into utterances.

One ONNX session is shared by every call (onnxruntime sessions are thread-safe); the recurrent state lives
in each call's `Endpointer`. Silero works on 512-sample windows at 16 kHz, so 8 kHz phone audio is upsampled
before it gets here. Speech-start is what later drives barge-in, so it fires as soon as `min_speech_ms` of
speech is heard, while speech-end waits for `end_silence_ms` of silence.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from voicebot.assets import silero_vad_path
from voicebot.config import VADConfig
from voicebot.frames import PCM, BargeIn, Frame, ListeningContext, SpeechAudio, SpeechEnded, SpeechStarted

RATE = 16_000
WINDOW = 512  # samples per Silero step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window the v5/v6 model expects in front
WINDOW_MS = WINDOW * 1000 / RATE
SETTLE_WINDOWS = 16  # silence a fresh VAD state hears before it waits for the next utterance (512 ms)
RESET_AFTER_MS = 2_000  # silence after an utterance before the VAD state starts over
# Silero can sit between the thresholds for a whole first word or two ("I'd like…" at 0.37-0.45 on phone
# audio, one dip under) before it is sure. An utterance therefore starts `pre_roll_ms` of *silence* before
# the onset (up to this much further back), not a fixed `pre_roll_ms` before it: else Whisper hears only
# "…to cancel order" and guesses at the rest.
LEAD_IN_MAX_MS = 1_500


@dataclass
class VADState:
    """One call's recurrent state: the model's state inputs by name (`h`, `c` for faster-whisper's export,
    `state` for the silero-vad package's), empty until the first window."""

    rnn: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    context: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))


class VADModel(Protocol):
    """What the endpointer asks of a VAD model (Silero here; `voicebot.testing.fakes.EnergyVAD` in tests)."""

    def probability(self, window: PCM, state: VADState) -> float: ...

    def settled_state(self) -> VADState: ...


class SileroVAD:
    """Stateless wrapper around the shared ONNX session; callers own a `VADState`. Reads either export of
    Silero (state inputs named `h`/`c`, or `state` plus a sample-rate input `sr`)."""

    def __init__(self, path: Path | None = None) -> None:
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.path = path or silero_vad_path()
        self.session = ort.InferenceSession(
            str(self.path), providers=["CPUExecutionProvider"], sess_options=opts
        )
        inputs = self.session.get_inputs()
        self._fixed: dict[str, npt.NDArray[np.int64]] = (
            {"sr": np.array(RATE, np.int64)} if any(i.name == "sr" for i in inputs) else {}
        )
        self._rnn_shapes = {
            i.name: tuple(d if isinstance(d, int) else 1 for d in i.shape)
            for i in inputs
            if i.name not in ("input", "sr")
        }
        self._settled: VADState | None = None

    def probability(self, window: PCM, state: VADState) -> float:
        """Speech probability of one 512-sample 16 kHz window; updates `state`."""
        if not state.rnn:
            state.rnn = {k: np.zeros(shape, np.float32) for k, shape in self._rnn_shapes.items()}
        x = window.astype(np.float32) / 32768.0
        batch = np.concatenate([state.context, x])[None, :]
        out, *rnn = self.session.run(None, {"input": batch, **state.rnn, **self._fixed})
        state.rnn = dict(zip(state.rnn, rnn, strict=True))
        state.context = x[-CONTEXT:]
        return float(np.asarray(out).reshape(-1)[0])

    def settled_state(self) -> VADState:
        """A fresh state that has heard half a second of silence (made once, then copied: every call's
        endpointer resets to it after each utterance, see `RESET_AFTER_MS`).

        The state an utterance leaves behind made a short "Yes." said seconds later (after the bot's
        question) stay under `min_speech_ms` in about half the frame alignments, so after `RESET_AFTER_MS`
        of silence the state starts over; not sooner, since a caller who goes on after a short pause is
        heard better by the state that just heard them, and a brand-new state needs context first."""
        if self._settled is None:
            state, silence = VADState(), np.zeros(WINDOW, np.int16)
            for _ in range(SETTLE_WINDOWS):
                self.probability(silence, state)
            self._settled = state
        s = self._settled
        return VADState(rnn={k: v.copy() for k, v in s.rnn.items()}, context=s.context.copy())


class Endpointer:
    """Feeds 16 kHz audio of any chunk size; returns SpeechStarted / SpeechAudio / SpeechEnded frames."""

    def __init__(self, vad: VADModel, config: VADConfig, hold_ms: float | None = None) -> None:
        """`hold_ms`: a longer pause before an utterance ends, for when the listener decides the end of
        the turn itself (`turn.decide`) and needs the utterance kept open that long at most."""
        self.vad = vad
        self.config = config
        self.hold_ms = hold_ms
        self.state = VADState()
        self._pending = np.zeros(0, np.int16)
        self._samples = 0  # audio consumed, defines the clock
        self._preroll_windows = max(1, round(config.pre_roll_ms / WINDOW_MS))
        # Windows before any utterance, each with "was it silence" (p under end_threshold); see `_lead_in`.
        self._recent: deque[tuple[PCM, bool]] = deque(
            maxlen=self._preroll_windows + round(LEAD_IN_MAX_MS / WINDOW_MS)
        )
        self._onset: list[PCM] = []
        self._onset_ms = 0.0
        self._voiced_ms = 0.0  # the run of windows over end_threshold so far (idle), see `_is_short_word`
        self._dipped = False  # that run has bridged one window under end_threshold since its last voiced one
        self._utterance: list[PCM] = []
        self._in_speech = False
        self._barged = False  # the utterance in progress has cut the bot off (or was long enough to)
        self._speech_ms = 0.0
        self._silence_ms = 0.0
        self._start_t = 0.0
        self._quiet_ms: float | None = None  # silence since the last utterance, until the state reset
        self._end_silence_ms: float | None = None  # a listening context's pause, for one utterance
        self.last_probability = 0.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def time(self) -> float:
        return self._samples / RATE

    def listen(self, context: ListeningContext) -> None:
        """The dialogue's expectation for the next utterance (or the one under way): how long a pause ends
        it. Back to `end_silence_ms` once that utterance is over."""
        self._end_silence_ms = context.end_silence_ms

    @property
    def end_silence_ms(self) -> float:
        return max(self._end_silence_ms or self.config.end_silence_ms, self.hold_ms or 0)

    def process(self, pcm: PCM) -> list[Frame]:
        self._pending = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        out: list[Frame] = []
        usable = self._pending.size - self._pending.size % WINDOW
        for start in range(0, usable, WINDOW):
            out.extend(self._step(self._pending[start : start + WINDOW]))
        self._pending = self._pending[usable:]
        return out

    def flush(self) -> list[Frame]:
        """End of stream: close an open utterance (a hang-up mid-sentence still yields its words)."""
        if self._pending.size:
            window = np.zeros(WINDOW, np.int16)
            window[: self._pending.size] = self._pending
            self._pending = np.zeros(0, np.int16)
            if self._in_speech:
                self._utterance.append(window)
                self._samples += WINDOW
        return [self._end(forced=True)] if self._in_speech else []

    def _step(self, window: PCM) -> list[Frame]:
        cfg = self.config
        p = self.last_probability = self.vad.probability(window, self.state)
        self._samples += WINDOW
        if not self._in_speech:
            return self._step_idle(window, p)
        self._utterance.append(window)
        if p >= cfg.start_threshold:
            self._speech_ms += WINDOW_MS
        self._silence_ms = self._silence_ms + WINDOW_MS if p < cfg.end_threshold else 0.0
        frames: list[Frame] = [SpeechAudio(pcm=window, t=self.time, speech=p >= cfg.end_threshold)]
        if not self._barged and self._speech_ms >= max(cfg.min_speech_ms, WINDOW_MS):
            self._barged = True  # a short word, then more words: a barge-in after all
            frames.append(BargeIn(t=self.time))
        if self._silence_ms >= self.end_silence_ms:
            frames.append(self._end(forced=False))
        elif len(self._utterance) * WINDOW_MS >= cfg.max_utterance_ms:
            frames.append(self._end(forced=True))
        return frames

    def _step_idle(self, window: PCM, p: float) -> list[Frame]:
        cfg = self.config
        if self._quiet_ms is not None and p < cfg.end_threshold and not self._onset:
            self._quiet_ms += WINDOW_MS
            if self._quiet_ms >= RESET_AFTER_MS:
                self.state, self._quiet_ms = self.vad.settled_state(), None
        if p < cfg.end_threshold:
            return self._silent_idle(window)
        self._voiced_ms += WINDOW_MS
        self._dipped = False
        if p >= cfg.start_threshold:
            self._onset.append(window)
            self._onset_ms += WINDOW_MS
        elif self._onset:  # between thresholds: keeps, but does not grow, a started onset (hysteresis)
            self._onset.append(window)
        else:  # between thresholds, no onset yet: maybe speech
            self._recent.append((window, False))
        if not self._onset or self._onset_ms < max(cfg.min_speech_ms, WINDOW_MS):
            return []
        return self._start(barge_in=True, silence_ms=0.0)

    def _silent_idle(self, window: PCM) -> list[Frame]:
        """A window under `end_threshold` before an utterance: the end of a short word ("Yes."), one dip
        inside a word (bridged once: Silero dips under for a window in "Yes" on phone audio), or silence."""
        if self._is_short_word(self._voiced_ms):
            self._onset.append(window)
            return self._start(barge_in=False, silence_ms=WINDOW_MS, speech_ms=self._voiced_ms)
        if self._onset and not self._dipped:
            self._dipped = True
            self._onset.append(window)
            return []
        self._recent.extend([(w, False) for w in self._onset])  # too short for a word: maybe speech
        self._recent.append((window, True))
        self._onset, self._onset_ms, self._voiced_ms, self._dipped = [], 0.0, 0.0, False
        return []

    def _is_short_word(self, voiced_ms: float) -> bool:
        """`short_speech_ms` over `start_threshold`; or, on phone audio where Silero is less sure ("Yes." at
        0.27, 0.58, 0.49, 0.37, 0.39, 0.39, 0.49, 0.39, 0.27), `min_speech_ms` over `end_threshold` that
        crossed `start_threshold` at least once (the onset)."""
        cfg = self.config
        return bool(self._onset) and (self._onset_ms >= cfg.short_speech_ms or voiced_ms >= cfg.min_speech_ms)

    def _start(self, barge_in: bool, silence_ms: float, speech_ms: float = 0.0) -> list[Frame]:
        """An utterance begins with the onset heard so far; a short word that is already over starts one
        too, but does not cut the bot off (a cough is as short) unless more speech follows (`BargeIn`);
        its speech counts as long as it was voiced (`speech_ms`), so the ASR does not skip it."""
        self._in_speech, self._barged = True, barge_in
        self._utterance = [*self._lead_in(), *self._onset]
        self._start_t = self.time - len(self._onset) * WINDOW / RATE
        self._speech_ms, self._silence_ms = max(self._onset_ms, speech_ms), silence_ms
        self._voiced_ms, self._dipped = 0.0, False
        self._recent.clear()
        self._onset, self._onset_ms = [], 0.0
        return [SpeechStarted(t=self._start_t, audio=np.concatenate(self._utterance), barge_in=barge_in)]

    def _lead_in(self) -> list[PCM]:
        """What goes in front of the onset: back to where `pre_roll_ms` of unbroken silence ends, and that
        silence too (word onsets); so maybe-speech just before the onset is never cut off."""
        lead: list[PCM] = []
        quiet = 0
        for window, silent in reversed(self._recent):
            lead.append(window)
            quiet = quiet + 1 if silent else 0
            if quiet >= self._preroll_windows:
                break
        return lead[::-1]

    def _end(self, forced: bool) -> SpeechEnded:
        keep_tail = min(self._silence_ms, 250.0)  # trailing silence beyond this only costs decode time
        drop = int((self._silence_ms - keep_tail) / WINDOW_MS)
        windows = self._utterance[: len(self._utterance) - drop] if drop else self._utterance
        audio = np.concatenate(windows) if windows else np.zeros(0, np.int16)
        speech_end_t = self.time - self._silence_ms / 1000.0
        frame = SpeechEnded(
            t=self.time, speech_end_t=speech_end_t, audio=audio, speech_ms=self._speech_ms, forced=forced
        )
        self._in_speech = False
        self._utterance, self._speech_ms, self._silence_ms = [], 0.0, 0.0
        self._quiet_ms = 0.0  # counts up to the state reset while the caller is silent
        self._end_silence_ms = None
        return frame
