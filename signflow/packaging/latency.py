"""Forward latency, the tie-breaker between candidates that score the same.

Read from the run's metrics (:data:`~signflow.packaging.metrics.LATENCY_METRIC`) when recorded,
otherwise measured here: the median of a few CPU forwards on a zero batch, which ranks models by
size and architecture without any data.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from signflow.packaging.candidates import Candidate
from signflow.packaging.metrics import LATENCY_METRIC, metric_value


def measure_latency_ms(model_dir: Path, batch_size: int = 1, repeats: int = 5) -> float:
    """Median forward latency (ms per clip) of the model in ``model_dir`` on a zero batch, CPU."""
    from signflow.inference import Predictor

    predictor = Predictor.load(model_dir, device="cpu")
    if predictor.stored_ndim == 3:  # landmark sequences (S, J, C)
        spec = predictor.meta["input"]
        shape: tuple[int, ...] = (predictor.seq_len, int(spec["num_joints"]), int(spec["channels"]))
        stored = np.zeros((batch_size, *shape), dtype=np.float32)
    else:
        stored = np.zeros((batch_size, *predictor.rgb_spec.stored_shape), dtype=np.uint8)
    predictor.logits(stored)  # warm-up: first call allocates and picks kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predictor.logits(stored)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0 / batch_size


def forward_latency(candidate: Candidate, measure: bool) -> float:
    """The candidate's latency (ms per clip), also set on it with its source; ``inf`` when unknown."""
    recorded = metric_value(candidate.metrics, LATENCY_METRIC)
    if recorded is not None:
        candidate.latency_ms, candidate.latency_source = recorded, f"metrics:{LATENCY_METRIC}"
        return recorded
    if not measure or candidate.source == "experiment":
        # An experiment's model is not on disk until it wins; unknown latency ranks last in a tie.
        return math.inf
    candidate.latency_ms = measure_latency_ms(candidate.model_dir)
    candidate.latency_source = "measured"
    return candidate.latency_ms
