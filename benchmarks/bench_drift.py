"""Drift monitor cost per request: what ``DriftMonitor.update`` adds to a prediction.

The service calls ``update`` once per prediction (a ``(1, C)`` row) under a lock, so its cost is
added to every request. Compared with a naive monitor that recomputes both histograms from the
whole window (``np.bincount`` over ``window`` stored predictions) at every update. Note: the
monitor pools classes into ``window // 10`` bins, the naive one compares every class.

Run:  ``python benchmarks/bench_drift.py [--repeats 2000]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections import deque

import numpy as np

from signflow.drift import DEFAULT_EPS, DriftMonitor, _proportions, _psi, build_reference


class NaiveMonitor:
    """Recount the whole window at every update (the obvious implementation)."""

    def __init__(self, reference: dict, window: int) -> None:
        # Same PSI arithmetic as DriftMonitor (reference normalised once): only the counting differs.
        self.ref_classes = _proportions(np.asarray(reference["class_counts"], dtype=float), DEFAULT_EPS)
        self.ref_conf = _proportions(np.asarray(reference["confidence_counts"], dtype=float), DEFAULT_EPS)
        self.edges = np.asarray(reference["confidence_edges"])
        self.recent: deque[tuple[int, float]] = deque(maxlen=window)

    def update(self, probs: np.ndarray) -> float | None:
        for row in probs:
            self.recent.append((int(row.argmax()), float(row.max())))
        if len(self.recent) < self.recent.maxlen:
            return None
        labels = np.array([label for label, _ in self.recent])
        conf = np.array([c for _, c in self.recent])
        classes = np.bincount(labels, minlength=self.ref_classes.size)
        hist = np.histogram(conf, bins=self.edges)[0]
        return max(_psi(self.ref_classes, classes, DEFAULT_EPS), _psi(self.ref_conf, hist, DEFAULT_EPS))


def _time_per_update(monitor, rows: np.ndarray, repeats: int) -> float:
    for row in rows[:200]:  # fill the window first
        monitor.update(row[None])
    start = time.perf_counter()
    for index in range(repeats):
        monitor.update(rows[index % len(rows)][None])
    return (time.perf_counter() - start) / repeats * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| classes | window | DriftMonitor (µs/update) | naive recount (µs/update) | naive / DriftMonitor |")
    print("|---:|---:|---:|---:|---:|")
    for num_classes, window in ((10, 200), (100, 200), (100, 1000), (2000, 1000)):
        reference = build_reference(rng.integers(0, num_classes, 5000), rng.uniform(0, 1, 5000), num_classes)
        rows = rng.dirichlet(np.full(num_classes, 0.3), size=1000)
        ours = _time_per_update(DriftMonitor(reference, window), rows, args.repeats)
        naive = _time_per_update(NaiveMonitor(reference, window), rows, args.repeats)
        print(f"| {num_classes} | {window} | {ours:.1f} | {naive:.1f} | {naive / ours:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
