"""Prediction drift: how far the served model's recent outputs moved from evaluation time.

There are no labels in production, so we watch the model's *outputs*. At evaluation time
:func:`build_reference` records two distributions over the test predictions (a JSON file that
ships with the model):

* which class the model predicts (class frequencies), and
* how sure it is (a histogram of the top-1 softmax probability on ``[0, 1]``).

In serving, :class:`DriftMonitor` keeps the last ``window`` predictions and compares both
distributions with the reference through the population stability index (PSI)::

    PSI(e, a) = sum_i (a_i - e_i) * ln(a_i / e_i)

(``e``: reference proportions, ``a``: recent proportions). Rule of thumb: < 0.1 stable,
0.1-0.25 moderate shift, > 0.25 significant shift. The exported score is
``max(class_psi, confidence_psi)``: either kind of shift (the model now says "book" all the
time, or it became unsure because the cameras changed) should raise it on its own; averaging
would halve a real shift that shows in only one of them.

Sampling noise: with ``K`` bins and ``N`` recent samples PSI is about ``(K - 1) / N`` even without
any drift. With WLASL-100 and a window of 200 that would be 0.5 from classes alone, so the class
distribution is compared over at most ``window // MIN_EXPECTED_PER_BIN`` bins: the most frequent
reference classes each get a bin and the rest share one "other" bin (the chi-square rule of thumb
of enough expected samples per bin). Confidence uses the reference's histogram bins as they are.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

REFERENCE_KIND = "signflow.drift.reference"
REFERENCE_VERSION = 1
DEFAULT_EPS = 1e-4
# Expected recent samples per class bin (window // this = most class bins used).
MIN_EXPECTED_PER_BIN = 10


class DriftReferenceError(ValueError):
    """A drift reference that cannot be used (wrong kind/version, inconsistent counts)."""


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, eps: float = DEFAULT_EPS
) -> float:
    """Population stability index between two histograms over the same bins.

    Both inputs may be counts or proportions: each is normalised to sum to 1. Empty bins are
    floored at ``eps`` (after normalisation, without renormalising) because ``ln(0)`` is
    undefined; the floor bounds what one empty bin can add to ``(e - eps) * ln(e / eps)``.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.ndim != 1 or e.shape != a.shape or e.size == 0:
        raise ValueError(f"psi needs two 1-D histograms of the same length (got {e.shape} and {a.shape})")
    if not eps > 0:
        raise ValueError(f"psi eps must be > 0 (got {eps})")
    for name, hist in (("expected", e), ("actual", a)):
        if not np.all(np.isfinite(hist)) or np.any(hist < 0):
            raise ValueError(f"psi {name} histogram must be finite and non-negative")
        if hist.sum() <= 0:
            raise ValueError(f"psi {name} histogram is empty (sums to 0)")
    return _psi(_proportions(e, eps), a, eps)


def _proportions(hist: np.ndarray, eps: float) -> np.ndarray:
    return np.maximum(hist / hist.sum(), eps)


def _psi(expected_props: np.ndarray, actual: np.ndarray, eps: float) -> float:
    """PSI without input checks: the monitor's per-request path (its inputs are valid by construction)."""
    a = _proportions(actual, eps)
    return float(np.dot(a - expected_props, np.log(a / expected_props)))


def build_reference(
    predicted_labels: Sequence[int] | np.ndarray,
    confidences: Sequence[float] | np.ndarray,
    num_classes: int,
    confidence_bins: int = 10,
) -> dict[str, Any]:
    """The evaluation-time output distribution, as a JSON-serialisable dict.

    ``predicted_labels`` are the argmax classes and ``confidences`` the top-1 probabilities of
    the evaluation predictions (one per clip). Counts, not proportions, are stored so the file
    is exact and says how many samples it rests on.
    """
    labels = np.asarray(predicted_labels)
    conf = np.asarray(confidences, dtype=np.float64)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (got {num_classes})")
    if confidence_bins < 2:
        raise ValueError(f"confidence_bins must be >= 2 (got {confidence_bins})")
    if labels.ndim != 1 or conf.shape != labels.shape:
        raise ValueError(
            f"predicted_labels and confidences must be 1-D of equal length (got {labels.shape} and {conf.shape})"
        )
    if labels.size == 0:
        raise ValueError("cannot build a drift reference from zero predictions")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"predicted_labels must be integers (got dtype {labels.dtype})")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"predicted_labels must lie in [0, {num_classes}) (got {labels.min()}..{labels.max()})")
    if not np.all(np.isfinite(conf)) or conf.min() < 0 or conf.max() > 1:
        raise ValueError("confidences must be probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, confidence_bins + 1)
    return {
        "kind": REFERENCE_KIND,
        "version": REFERENCE_VERSION,
        "num_classes": int(num_classes),
        "samples": int(labels.size),
        "class_counts": np.bincount(labels, minlength=num_classes).astype(int).tolist(),
        "confidence_edges": [float(x) for x in edges],
        "confidence_counts": _confidence_histogram(conf, edges).astype(int).tolist(),
    }


def _confidence_histogram(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin; the last bin is closed so a confidence of exactly 1.0 is counted."""
    return np.bincount(_confidence_bin(conf, edges), minlength=len(edges) - 1)


def _confidence_bin(conf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # searchsorted on the inner edges: 0 for conf < edges[1], last bin for conf >= edges[-2] (1.0 included).
    return np.searchsorted(edges[1:-1], conf, side="right")


def validate_reference(reference: dict[str, Any]) -> None:
    """Raise :class:`DriftReferenceError` naming what is wrong with a loaded reference."""
    if not isinstance(reference, dict):
        raise DriftReferenceError(f"drift reference must be a JSON object (got {type(reference).__name__})")
    if reference.get("kind") != REFERENCE_KIND or reference.get("version") != REFERENCE_VERSION:
        raise DriftReferenceError(
            f"not a signflow drift reference v{REFERENCE_VERSION} "
            f"(kind={reference.get('kind')!r}, version={reference.get('version')!r})"
        )
    try:
        num_classes = int(reference["num_classes"])
        class_counts = np.asarray(reference["class_counts"], dtype=np.float64)
        edges = np.asarray(reference["confidence_edges"], dtype=np.float64)
        conf_counts = np.asarray(reference["confidence_counts"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise DriftReferenceError(f"drift reference is missing or has a malformed field: {error}") from None
    if class_counts.shape != (num_classes,) or class_counts.sum() <= 0 or np.any(class_counts < 0):
        raise DriftReferenceError(f"drift reference class_counts must be {num_classes} non-negative counts, not all 0")
    if edges.ndim != 1 or edges.size < 3 or np.any(np.diff(edges) <= 0):
        raise DriftReferenceError("drift reference confidence_edges must be >= 3 increasing values")
    if conf_counts.shape != (edges.size - 1,) or conf_counts.sum() <= 0 or np.any(conf_counts < 0):
        raise DriftReferenceError("drift reference confidence_counts must have one non-negative count per bin")


class DriftMonitor:
    """Sliding-window PSI of recent predictions against a :func:`build_reference` dict.

    Thread-safe: BentoML may call :meth:`update` from several threads of one worker.
    """

    def __init__(self, reference: dict[str, Any], window: int, *, eps: float = DEFAULT_EPS) -> None:
        validate_reference(reference)
        if window < 2:
            raise ValueError(f"drift window must be >= 2 (got {window})")
        self.window = int(window)
        self.eps = eps
        self.num_classes = int(reference["num_classes"])
        self._edges = np.asarray(reference["confidence_edges"], dtype=np.float64)
        ref_classes = np.asarray(reference["class_counts"], dtype=np.float64)

        # Class -> bin: the most frequent reference classes keep their own bin, the rest share
        # the last one (see the module docstring: sampling noise grows with the bin count).
        max_bins = max(2, self.window // MIN_EXPECTED_PER_BIN)
        if self.num_classes <= max_bins:
            self._class_to_bin = np.arange(self.num_classes)
        else:
            # Stable sort: ties (a balanced test set) keep class order, so the mapping is deterministic.
            order = np.argsort(-ref_classes, kind="stable")
            self._class_to_bin = np.full(self.num_classes, max_bins - 1)
            self._class_to_bin[order[: max_bins - 1]] = np.arange(max_bins - 1)
        num_class_bins = int(self._class_to_bin.max()) + 1
        ref_class_bins = np.bincount(self._class_to_bin, weights=ref_classes, minlength=num_class_bins)
        ref_conf = np.asarray(reference["confidence_counts"], dtype=np.float64)
        # Reference proportions are fixed: normalise (and floor) them once, not per request.
        self._ref_class = _proportions(ref_class_bins, eps)
        self._ref_conf = _proportions(ref_conf, eps)

        self._lock = threading.Lock()
        self._recent: deque[tuple[int, int]] = deque()
        self._class_counts = np.zeros(num_class_bins, dtype=np.int64)
        self._conf_counts = np.zeros(self._ref_conf.size, dtype=np.int64)
        self.last_components: dict[str, float] | None = None

    @property
    def samples(self) -> int:
        """Predictions currently in the window."""
        with self._lock:
            return len(self._recent)

    def update(self, probs: np.ndarray) -> float | None:
        """Add a batch of softmax rows ``(B, C)``; return the drift score, or None until the window is full.

        A partly filled window would compare a handful of samples with the reference and
        report noise as drift (right after every restart), so no score is given until then.
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim == 1:
            probs = probs[None, :]
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(f"drift update expects probabilities of shape (B, {self.num_classes}), got {probs.shape}")
        class_bins = self._class_to_bin[np.argmax(probs, axis=1)]
        conf_bins = _confidence_bin(np.max(probs, axis=1), self._edges)
        with self._lock:
            for class_bin, conf_bin in zip(class_bins.tolist(), conf_bins.tolist(), strict=True):
                self._recent.append((class_bin, conf_bin))
                self._class_counts[class_bin] += 1
                self._conf_counts[conf_bin] += 1
                if len(self._recent) > self.window:
                    old_class, old_conf = self._recent.popleft()
                    self._class_counts[old_class] -= 1
                    self._conf_counts[old_conf] -= 1
            if len(self._recent) < self.window:
                return None
            class_psi = _psi(self._ref_class, self._class_counts, self.eps)
            confidence_psi = _psi(self._ref_conf, self._conf_counts, self.eps)
            self.last_components = {"class_psi": class_psi, "confidence_psi": confidence_psi}
            return max(class_psi, confidence_psi)
