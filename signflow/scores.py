"""Logits to probabilities and ranked classes: one definition for evaluation, ``Predictor`` and the service.

Served probabilities must equal evaluated ones, so every caller goes through the same float64
softmax and the same stable ordering (ties keep the lower class index first).
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, C)`` (or ``(C,)``) logits, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_classes(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` most probable class indices of each ``(C,)`` row (or of ``(N, C)`` rows), best first,
    stable on ties."""
    return np.argsort(-np.asarray(probabilities), axis=-1, kind="stable")[..., : max(1, k)]
