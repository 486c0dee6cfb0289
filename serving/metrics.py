"""The service's Prometheus metrics (beside BentoML's ``bentoml_service_*`` built-ins).

Names and labels are a contract with ``monitoring/`` (Prometheus rules, Grafana panels):
change them together. Objects are created on first use inside a worker, not at import:
BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in the worker after importing the service, and
``prometheus_client`` decides single- vs multi-process mode when a metric is created
(the reason ``bentoml.metrics`` defers its import; it now re-exports ``prometheus_client``
and is deprecated, so we use ``prometheus_client`` directly, at the right moment).

Gauges in multi-process mode: ``livemax``/``livemin`` aggregate over live workers, so the
series carry no ``pid`` label (one series per label set, as the dashboards expect).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Seconds; spans a few ms (model on a GPU) to the request timeout.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
FRAME_BUCKETS = (8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 900, 1800)
DURATION_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0, 60.0)

STAGES = ("decode", "preprocess", "model")


@dataclass(frozen=True)
class ServiceMetrics:
    stage_latency: Any
    predictions: Any
    top1_confidence: Any
    confidence_by_gloss: Any
    low_confidence: Any
    input_frames: Any
    input_duration: Any
    rejected: Any
    model_info: Any
    model_ready: Any
    process_cpu: Any
    process_memory: Any


@functools.cache
def metrics() -> ServiceMetrics:
    """The process's metric objects (created once, on first call, inside the worker)."""
    from prometheus_client import Counter, Gauge, Histogram

    return ServiceMetrics(
        stage_latency=Histogram(
            "signflow_stage_latency_seconds",
            "Time per request stage: decode (container + frames), preprocess (frames -> stored clip), "
            "model (batched forward, queueing included)",
            ["endpoint", "stage"],
            buckets=LATENCY_BUCKETS,
        ),
        predictions=Counter("signflow_predictions_total", "Top-1 predictions by gloss", ["gloss"]),
        top1_confidence=Histogram(
            "signflow_top1_confidence", "Top-1 softmax probability per prediction", buckets=CONFIDENCE_BUCKETS
        ),
        confidence_by_gloss=Counter(
            "signflow_top1_confidence_by_gloss_total",
            "Sum of top-1 probabilities by predicted gloss: divided by signflow_predictions_total, the mean "
            "confidence per gloss (two series per gloss, unlike a per-gloss histogram)",
            ["gloss"],
        ),
        low_confidence=Counter(
            "signflow_low_confidence_total", "Predictions whose top-1 probability is below serve.low_confidence"
        ),
        input_frames=Histogram("signflow_input_frames", "Decoded frames per input clip", buckets=FRAME_BUCKETS),
        input_duration=Histogram(
            "signflow_input_duration_seconds", "Input clip duration (frames / fps)", buckets=DURATION_BUCKETS
        ),
        rejected=Counter(
            "signflow_rejected_requests_total", "Requests refused with a 4xx/503/504, by reason", ["endpoint", "reason"]
        ),
        model_info=Gauge(
            "signflow_model_info",
            "The served model (value 1)",
            ["model_tag", "arch", "metric", "metric_value"],
            multiprocess_mode="livemax",
        ),
        model_ready=Gauge(
            "signflow_model_ready", "1 once every live worker has loaded the model and warmed up",
            multiprocess_mode="livemin",
        ),
        # prometheus_client exports no process_* metrics in multi-process mode (BentoML's mode).
        process_cpu=Counter(
            "signflow_process_cpu_seconds_total", "CPU time of the server's worker processes", ["service"]
        ),
        process_memory=Gauge(
            "signflow_process_resident_memory_bytes", "Resident memory of the server's live worker processes",
            ["service"], multiprocess_mode="livesum",
        ),
    )


PROCESS_SAMPLE_S = 5.0


def start_process_sampler(service: str) -> None:
    """Sample this worker's CPU time and resident memory every few seconds (a daemon thread)."""
    import psutil

    process = psutil.Process()
    m = metrics()
    cpu, memory = m.process_cpu.labels(service=service), m.process_memory.labels(service=service)

    def sample() -> None:
        last = 0.0
        while True:
            times = process.cpu_times()
            used = times.user + times.system
            cpu.inc(max(0.0, used - last))
            last = used
            memory.set(process.memory_info().rss)
            time.sleep(PROCESS_SAMPLE_S)

    threading.Thread(target=sample, name=f"signflow-process-metrics-{service}", daemon=True).start()


@functools.cache
def drift_gauge() -> Any:
    """``signflow_prediction_drift_psi``, created at the first score: absent (not a fake 0) until a window fills."""
    from prometheus_client import Gauge

    return Gauge(
        "signflow_prediction_drift_psi",
        "PSI of recent predictions vs the evaluation reference (max over live workers)",
        multiprocess_mode="livemax",
    )


def start_series(endpoints: Sequence[str], glosses: Sequence[str]) -> None:
    """Create, at 0, every series the dashboards divide or take quantiles of, so the first requests
    show up as a rise (``rate()`` cannot see the increment that creates a series)."""
    m = metrics()
    for endpoint in endpoints:
        for stage in STAGES:
            m.stage_latency.labels(endpoint=endpoint, stage=stage)
    for gloss in glosses:
        m.predictions.labels(gloss=gloss)
        m.confidence_by_gloss.labels(gloss=gloss)


def observe_prediction(gloss: str, confidence: float, low_confidence: bool) -> None:
    """One answer's top-1 gloss and probability (per-gloss counts, confidence histogram, low-confidence count)."""
    m = metrics()
    m.predictions.labels(gloss=gloss).inc()
    m.confidence_by_gloss.labels(gloss=gloss).inc(confidence)
    m.top1_confidence.observe(confidence)
    if low_confidence:
        m.low_confidence.inc()
