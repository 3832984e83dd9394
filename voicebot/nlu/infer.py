"""Batched forward passes of the joint model: one code path for validation, evaluation and live parsing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from voicebot.nlu.model import JointNLU
from voicebot.nlu.tokens import encode, first_subtokens
from voicebot.nlu.viterbi import decoder_for

F32 = npt.NDArray[np.float32]


@dataclass
class Outputs:
    """Per-utterance head outputs; probabilities already temperature-calibrated."""

    intent_probs: F32  # (n, intents)
    tags: list[list[int]]  # per word
    sentiment_probs: F32  # (n, 3)
    frustration: F32  # (n,)
    match: F32  # (n, d) unit vectors


@torch.inference_mode()
def run(
    model: JointNLU,
    tokenizer: object,
    batch_words: list[list[str]],
    batch_size: int = 64,
    done: Callable[[int], object] | None = None,
) -> Outputs:
    """`done(n)` is called after each batch with its size (a progress bar's `update`)."""
    model.eval()
    t = model.labels.temperature
    parts: dict[str, list[F32]] = {"intent": [], "sentiment": [], "frustration": [], "match": []}
    tags: list[list[int]] = []
    decoder = decoder_for(tuple(model.labels.tags))
    for start in range(0, len(batch_words), batch_size):
        chunk = batch_words[start : start + batch_size]
        batch = encode(tokenizer, chunk, model.labels.max_length)  # type: ignore[arg-type]
        out = model(batch.input_ids, batch.attention_mask)
        parts["intent"].append(torch.softmax(out["intent"] / t, -1).numpy())
        parts["sentiment"].append(torch.softmax(out["sentiment"], -1).numpy())
        parts["frustration"].append(torch.sigmoid(out["frustration"]).numpy())
        parts["match"].append(out["match"].numpy())
        logp = torch.log_softmax(out["tags"], -1).numpy()
        for i, w in enumerate(chunk):
            seen = first_subtokens(batch.word_ids[i], len(w))
            word_tags = [0] * len(w)  # words cut off by truncation: 'O'
            best = decoder.decode(logp[i, [col for _, col in seen]])
            for (word, _), tag in zip(seen, best, strict=True):
                word_tags[word] = tag
            tags.append(word_tags)
        if done is not None:
            done(len(chunk))
    empty = np.zeros((0, 1), np.float32)
    stacked = {k: np.concatenate(v) if v else empty for k, v in parts.items()}
    return Outputs(stacked["intent"], tags, stacked["sentiment"], stacked["frustration"], stacked["match"])


def logits_for_calibration(model: JointNLU, tokenizer: object, batch_words: list[list[str]]) -> F32:
    """Raw intent logits (temperature 1), for fitting the temperature on validation."""
    saved = model.labels.temperature
    model.labels.temperature = 1.0
    try:
        probs = run(model, tokenizer, batch_words).intent_probs
    finally:
        model.labels.temperature = saved
    return np.log(np.clip(probs, 1e-12, 1.0)).astype(np.float32)
