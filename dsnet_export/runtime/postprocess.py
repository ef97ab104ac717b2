"""Turning logits into answers."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis (float32, numerically stable)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` most probable classes of one sample's logits, as (class, probability), best first."""
    probs = softmax(np.asarray(logits, np.float32))
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(c), float(probs[c])) for c in order]
