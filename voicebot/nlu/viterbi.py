"""BIO-constrained decoding of the tag head: the best tag sequence in which every I-x follows B-x or I-x.

Why: a per-word argmax can emit "O I-city" or "B-city I-state", which span readers can only guess at (a
stray I- starts a new entity, a type switch splits one). Viterbi over the head's log-probabilities with
those transitions forbidden picks the best *valid* sequence instead: a CRF's decoding without its learned
transition scores, so it needs no training change.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]


class BIODecoder:
    """Built once per tag set; `decode` takes one utterance's per-word log-probabilities (words × tags)."""

    def __init__(self, tags: list[str]) -> None:
        inside = [t[2:] if t.startswith("I-") else None for t in tags]
        kind = [t[2:] if t[:2] in ("B-", "I-") else None for t in tags]
        # allowed[prev, next]: an I-x needs a B-x or I-x right before it; everything else may follow anything.
        self.allowed: Bools = np.array(
            [[inside[n] is None or kind[p] == inside[n] for n in range(len(tags))] for p in range(len(tags))],
            dtype=bool,
        )
        self.start: Bools = np.array([i is None for i in inside], dtype=bool)
        self._penalty = np.where(self.allowed, 0.0, -np.inf).astype(np.float32)

    def decode(self, logp: F32) -> list[int]:
        n = logp.shape[0]
        if n == 0:
            return []
        score = np.where(self.start, logp[0], -np.inf)
        back = np.zeros((n, logp.shape[1]), dtype=np.int64)
        for i in range(1, n):
            total = score[:, None] + self._penalty  # (prev, next)
            back[i] = total.argmax(0)
            score = total.max(0) + logp[i]
        best = [int(score.argmax())]
        for i in range(n - 1, 0, -1):
            best.append(int(back[i, best[-1]]))
        return best[::-1]


@lru_cache(maxsize=8)
def decoder_for(tags: tuple[str, ...]) -> BIODecoder:
    """One decoder per tag set, so a live parse does not rebuild the transition table."""
    return BIODecoder(list(tags))
