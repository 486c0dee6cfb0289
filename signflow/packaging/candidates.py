"""The trained models that compete to be served, and the files each must have.

A candidate is the current run (``models/`` + ``reports/evaluate/metrics.json``), a run folder
named in ``package.candidates``, or a DVC experiment (:mod:`signflow.packaging.experiments`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.json"


class PackagingError(RuntimeError):
    """Nothing usable to package (no candidate, metric missing everywhere...)."""


@dataclass
class Candidate:
    """One trained model that may be served."""

    name: str  # "workspace", "exp:<name>", "run:<folder>"
    model_dir: Path
    metrics: dict[str, Any]
    metrics_path: Path | None = None
    source: str = "workspace"
    rev: str | None = None
    value: float | None = None
    latency_ms: float | None = None
    latency_source: str | None = None
    note: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "rev": self.rev,
            "model_dir": str(self.model_dir),
            "value": self.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "latency_source": self.latency_source,
            "note": self.note,
        }


def read_metrics(path: Path) -> dict[str, Any]:
    """A metrics JSON object, or a :class:`PackagingError` naming the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackagingError(f"{path}: metrics file not found (run the evaluate stage first)") from None
    except json.JSONDecodeError as error:
        raise PackagingError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PackagingError(f"{path}: expected a JSON object of metrics")
    return data


def run_folder_candidate(folder: Path) -> Candidate:
    """A run folder: ``<folder>/models/model.pt`` + ``<folder>/reports/evaluate/metrics.json``, or flat."""
    layouts = [
        (folder / "models", folder / "reports" / "evaluate" / METRICS_FILE),
        (folder, folder / METRICS_FILE),
    ]
    for model_dir, metrics_path in layouts:
        if (model_dir / MODEL_FILE).is_file() and metrics_path.is_file():
            return Candidate(
                name=f"run:{folder}",
                model_dir=model_dir,
                metrics=read_metrics(metrics_path),
                metrics_path=metrics_path,
                source="run",
            )
    raise PackagingError(
        f"{folder}: not a run folder (expected models/{MODEL_FILE} + reports/evaluate/{METRICS_FILE}, "
        f"or {MODEL_FILE} + {METRICS_FILE})"
    )
