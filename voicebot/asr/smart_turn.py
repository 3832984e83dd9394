"""smart-turn v3.2: an audio end-of-turn classifier (Daily, BSD-2-Clause), run with onnxruntime.

It hears what a transcript cannot: a falling pitch at the end of "…my order." against the level, drawn-out
"and…" of a caller who is still going. The model takes the last 8 s of 16 kHz speech (zero-padded in front)
as Whisper-style 80-bin log-mel features of a mean/variance-normalised waveform and returns the probability
that the turn is complete. The features come from faster-whisper's own Whisper feature extractor (same
filters and log scale; checked against the reference to 4e-7). The file comes out of the pipecat-ai wheel at
install time (`voicebot.assets.fetch_smart_turn`); pipecat itself is never imported.

Its cost matters: ~150 ms of one core per call on this 2-core box, as much as a Whisper base decode of a
short utterance, so the listener runs it only once a pause is long enough to be a candidate turn end, beside
the speculative decode (`voicebot.stages.listen`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from faster_whisper.feature_extractor import FeatureExtractor

RATE = 16_000
WINDOW_S = 8  # the model's input: the last 8 s of the turn


class SmartTurn:
    """One shared ONNX session (thread-safe); `probability` is pure, so calls may share it freely."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"], sess_options=opts)
        self.features = FeatureExtractor(feature_size=80, sampling_rate=RATE, chunk_length=WINDOW_S)

    def probability(self, audio: npt.NDArray[np.float32]) -> float:
        """P(turn complete) for float 16 kHz audio of the turn so far (its end is what matters)."""
        n = RATE * WINDOW_S
        x = np.asarray(audio, np.float32)[-n:]
        x = np.pad(x, (n - x.size, 0)) if x.size < n else x
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        mel = self.features(x, padding=0)[:, : n // 160]
        (out,) = self.session.run(None, {"input_features": mel[None].astype(np.float32)})
        return float(np.asarray(out).reshape(-1)[0])
