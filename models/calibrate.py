"""Choosing thresholds on validation data, never on test: softmax temperature, out-of-scope cut-off,
and the answer matcher's "no answer" cut-off."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def softmax(logits: F32, temperature: float) -> F32:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F32 = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def fit_temperature(logits: F32, gold: I64) -> float:
    """Temperature minimising validation negative log-likelihood (Guo et al. 2017), by grid search."""
    if len(gold) == 0:
        return 1.0
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 60))
    nll = [-np.log(softmax(logits, float(t))[np.arange(len(gold)), gold] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def oos_threshold(
    confidence: F32, predicted: I64, gold: I64, oos_index: int | None, keep: float = 0.98
) -> float:
    """Confidence below which a prediction becomes out-of-scope.

    With out-of-scope examples in validation: the cut-off maximising validation accuracy over all examples
    (in-scope and out-of-scope alike, the usual CLINC150 operating point). Without them: the cut-off that
    keeps `keep` of the correct in-scope predictions.
    """
    if len(gold) == 0:
        return 0.0
    correct = predicted == gold
    if oos_index is None or not (gold == oos_index).any():
        kept = np.sort(confidence[correct]) if correct.any() else np.sort(confidence)
        return float(kept[int((1.0 - keep) * len(kept))]) if len(kept) else 0.0
    best, best_t = -1.0, 0.0
    for t in np.unique(np.round(confidence, 3)):
        accuracy = float((np.where(confidence < t, oos_index, predicted) == gold).mean())
        if accuracy > best:
            best, best_t = accuracy, float(t)
    return best_t


def answer_threshold(pos_scores: F32, neg_scores: F32) -> float:
    """Matcher cut-off maximising balanced accuracy between questions with an answer and without one."""
    if len(pos_scores) == 0:
        return 0.5
    if len(neg_scores) == 0:
        return float(np.quantile(pos_scores, 0.05))
    candidates = np.unique(np.round(np.concatenate([pos_scores, neg_scores]), 3))
    scores = [0.5 * ((pos_scores >= t).mean() + (neg_scores < t).mean()) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def best_f1_threshold(scores: F32, positive: npt.NDArray[np.bool_]) -> float:
    """Cut-off maximising F1 for a rare positive class (frustration), instead of a blind 0.5."""
    if not positive.any():
        return 0.5
    best, best_t = -1.0, 0.5
    for t in np.unique(np.round(scores, 3)):
        flagged = scores >= t
        tp = float((flagged & positive).sum())
        f1 = 2 * tp / (flagged.sum() + positive.sum())
        if f1 > best:
            best, best_t = f1, float(t)
    return best_t
