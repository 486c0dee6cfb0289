"""Choose the winning trained model and save it to the BentoML model store.

Candidates are the current run (``models/`` + ``reports/evaluate/metrics.json``), the
DVC experiments that ``dvc exp show --json`` lists, and any extra run folders named in
``package.candidates``. The best by ``package.metric`` (``package.mode``: max/min) wins;
candidates within ``package.tie_tolerance`` of the best are separated by the lower
forward latency (read from the metrics when recorded, otherwise measured here on a
zero batch). The choice and its reason are written to ``reports/package.json``, which is
also where the service finds the *pinned* model tag it serves.

The BentoML store lives outside the repository (``$BENTOML_HOME``, default
``~/bentoml``); DVC tracks the record file, not the store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from signflow import atomic
from signflow.config import PackageParams, Params
from signflow.feature_spec import load_spec, write_spec

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
LABEL_MAP_FILE = "label_map.json"
METRICS_FILE = "metrics.json"
PARAMS_FILE = "params.json"
DRIFT_REFERENCE_FILE = "drift_reference.json"
EXPORT_FILE = "model.bentomodel"  # package --export: the winner as one importable file
EXPORT_RECORD = "model.json"
# Metric keys a run may already carry its forward latency under (ms per clip).
LATENCY_KEYS = ("latency_ms", "forward_latency_ms", "latency_ms_per_clip", "test_latency_ms")


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


@dataclass
class Choice:
    winner: Candidate
    reason: str
    ranked: list[Candidate] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)


# --------------------------------------------------------------------------- metrics


def metric_value(metrics: dict[str, Any], key: str) -> float | None:
    """Find ``key`` in a metrics dict: flat (``test_top1``), dotted (``test.top1``) or nested by split.

    Evaluate may write ``{"test_top1": ...}`` or ``{"test": {"top1": ...}}``; both are accepted
    so that the package params name the metric the way a person reads ``dvc metrics show``.
    """
    if key in metrics and _is_number(metrics[key]):
        return float(metrics[key])
    node: Any = metrics
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            node = None
            break
        node = node[part]
    if _is_number(node):
        return float(node)
    if "_" in key:
        head, tail = key.split("_", 1)
        nested = metrics.get(head)
        if isinstance(nested, dict):
            return metric_value(nested, tail)
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def read_metrics(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackagingError(f"{path}: metrics file not found (run the evaluate stage first)") from None
    except json.JSONDecodeError as error:
        raise PackagingError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise PackagingError(f"{path}: expected a JSON object of metrics")
    return data


# --------------------------------------------------------------------------- candidates


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


def experiment_rows(exp_show: Any, metrics_file: str) -> list[dict[str, Any]]:
    """``[{"rev", "name", "metrics"}]`` for each DVC experiment in ``dvc exp show --json`` output.

    The workspace and the baseline commits are left out: the workspace is the current
    run (read from its files), a baseline commit is not an experiment.
    """
    rows: list[dict[str, Any]] = []

    def metrics_of(data: dict[str, Any]) -> dict[str, Any] | None:
        files = (data or {}).get("metrics") or {}
        for path, entry in files.items():
            if Path(path).as_posix() == Path(metrics_file).as_posix() and isinstance(entry, dict):
                return entry.get("data") or {}
        return None

    for baseline in exp_show if isinstance(exp_show, list) else []:
        for group in baseline.get("experiments") or []:
            for rev in group.get("revs") or []:
                metrics = metrics_of(rev.get("data") or {})
                if rev.get("error") or metrics is None:
                    continue
                rows.append({"rev": rev.get("rev"), "name": rev.get("name") or rev.get("rev"), "metrics": metrics})
    return rows


def dvc_experiments(repo: Path, metrics_file: str, timeout_s: float = 120.0) -> list[dict[str, Any]]:
    """Experiments of the DVC repo at ``repo``; empty (with a log line) when DVC cannot tell."""
    if not (repo / ".dvc").is_dir():
        log.info("no DVC repo at %s: comparing the current run and listed runs only", repo)
        return []
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dvc", "exp", "show", "--json"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("dvc exp show failed (%s): DVC experiments are not compared", error)
        return []
    if result.returncode != 0:
        # Inside `dvc repro` the repo lock may be held; the current run still competes.
        log.warning("dvc exp show exited %d: %s", result.returncode, result.stderr.strip()[-300:])
        return []
    try:
        return experiment_rows(json.loads(result.stdout or "[]"), metrics_file)
    except json.JSONDecodeError as error:
        log.warning("dvc exp show printed no JSON (%s)", error)
        return []


@contextmanager
def materialize_experiment(repo: Path, rev: str, model_dir: str) -> Iterator[Path]:
    """Fetch an experiment's model folder from the DVC cache into a temporary folder."""
    from dvc.api import DVCFileSystem

    with tempfile.TemporaryDirectory(prefix="signflow-exp-") as tmp:
        fs = DVCFileSystem(str(repo), rev=rev)
        target = Path(tmp) / "models"
        fs.get(model_dir.rstrip("/") + "/", str(target), recursive=True)
        yield target


# --------------------------------------------------------------------------- latency


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


def _latency(candidate: Candidate, measure: bool) -> float:
    for key in LATENCY_KEYS:
        value = metric_value(candidate.metrics, key)
        if value is not None:
            candidate.latency_ms, candidate.latency_source = value, f"metrics:{key}"
            return value
    if not measure or candidate.source == "experiment":
        # An experiment's model is not on disk until it wins; unknown latency ranks last in a tie.
        return math.inf
    candidate.latency_ms = measure_latency_ms(candidate.model_dir)
    candidate.latency_source = "measured"
    return candidate.latency_ms


# --------------------------------------------------------------------------- choice


def _ms(value: float | None) -> str:
    return "unknown latency" if value is None or math.isinf(value) else f"{value:.2f} ms"


def choose(
    candidates: Iterable[Candidate],
    metric: str,
    mode: str = "max",
    tie_tolerance: float = 0.0,
    measure_latency: bool = True,
) -> Choice:
    """Best candidate by ``metric``; near-ties (``<= tie_tolerance`` apart) go to the faster model."""
    usable: list[Candidate] = []
    skipped: list[Candidate] = []
    for candidate in candidates:
        candidate.value = metric_value(candidate.metrics, metric)
        if candidate.value is None:
            candidate.note = f"metric {metric!r} not in its metrics"
            skipped.append(candidate)
        else:
            usable.append(candidate)
    if not usable:
        names = ", ".join(c.name for c in skipped) or "none"
        raise PackagingError(f"no candidate has the metric {metric!r} (candidates: {names}); check package.metric")
    sign = 1.0 if mode == "max" else -1.0
    best_value = max(sign * c.value for c in usable)  # type: ignore[operator]
    tied = [c for c in usable if best_value - sign * c.value <= tie_tolerance]  # type: ignore[operator]
    if len(tied) > 1:
        for candidate in tied:
            _latency(candidate, measure_latency)
        tied.sort(key=lambda c: c.latency_ms if c.latency_ms is not None else math.inf)
        winner = tied[0]
        others = ", ".join(f"{c.name} {_ms(c.latency_ms)}" for c in tied[1:])
        reason = (
            f"{winner.name} tied on {metric}={winner.value:.6g} ({mode}, tolerance {tie_tolerance:g}) with "
            f"{len(tied) - 1} other(s) and has the lowest forward latency ({_ms(winner.latency_ms)} vs {others})"
        )
    else:
        winner = tied[0]
        runner_up = sorted(usable, key=lambda c: -sign * c.value)[1:2]  # type: ignore[operator]
        if runner_up:
            reason = (
                f"{winner.name} has the best {metric} ({mode}): {winner.value:.6g} vs "
                f"{runner_up[0].value:.6g} for the runner-up {runner_up[0].name} ({len(usable)} candidates)"
            )
        else:
            reason = f"{winner.name} is the only candidate with {metric} ({winner.value:.6g})"
    ranked = sorted(
        usable,
        key=lambda c: (-sign * c.value, c.latency_ms if c.latency_ms is not None else math.inf),  # type: ignore[operator]
    )
    ranked.remove(winner)
    ranked.insert(0, winner)
    return Choice(winner=winner, reason=reason, ranked=ranked, skipped=skipped)


# --------------------------------------------------------------------------- model store


def git_revision(repo: Path) -> str | None:
    """``HEAD``'s commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


def _read_model_meta(model_dir: Path) -> dict[str, Any]:
    from signflow.models import read_model_file

    payload = read_model_file(model_dir / MODEL_FILE)
    return {key: value for key, value in payload.items() if key != "state_dict"}


def save_to_store(
    candidate: Candidate,
    params: Params,
    *,
    reason: str,
    git_rev: str | None = None,
    drift_reference: Path | None = None,
) -> str:
    """Copy the winner's files into a new BentoML model; returns its tag (``name:version``).

    The model folder holds everything serving needs and nothing that needs this repo:
    ``model.pt``, ``preprocess.json``, ``label_map.json``, ``metrics.json``, ``params.json``
    and, when evaluate wrote one, the drift reference.
    """
    import bentoml

    package: PackageParams = params.package
    meta = _read_model_meta(candidate.model_dir)
    # The model file's own feature spec is what Predictor applies; shipping that one (not a
    # copy from elsewhere) keeps served inputs identical to evaluated ones. Refused if invalid.
    spec = load_spec(meta.get("feature_spec") or {}, origin=f"{candidate.model_dir / MODEL_FILE} (its feature_spec)")
    labels = {
        "arch": str(meta["arch"]),
        "metric": package.metric,
        "metric_value": f"{candidate.value:.6g}",
        "source": candidate.source,
        "git_rev": (git_rev or "unknown")[:40],
        "stage": "package",
    }
    metadata = {
        "arch": meta["arch"],
        "num_classes": int(meta["num_classes"]),
        "metric": package.metric,
        "metric_value": candidate.value,
        "mode": package.mode,
        "candidate": candidate.name,
        "candidate_rev": candidate.rev,
        "reason": reason,
        "git_rev": git_rev,
        "latency_ms": candidate.latency_ms,
        "input": meta.get("input"),
        "feature_spec": spec.to_json(),
    }
    with bentoml.models.create(package.model_name, labels=labels, metadata=_no_nones(metadata)) as bento_model:
        target = Path(bento_model.path)
        shutil.copy2(candidate.model_dir / MODEL_FILE, target / MODEL_FILE)
        write_spec(target, spec)
        atomic.write_json(target / LABEL_MAP_FILE, {"glosses": list(meta["label_map"])})
        atomic.write_json(target / METRICS_FILE, candidate.metrics)
        # What the service must reproduce beyond preprocess.json: evaluate's test-time clips. Serving
        # limits (`serve`) are read by the server itself, so changing one never makes a new model.
        atomic.write_json(target / PARAMS_FILE, {"evaluate": {"clips": params.evaluate.clips}})
        if drift_reference is not None and drift_reference.is_file():
            shutil.copy2(drift_reference, target / DRIFT_REFERENCE_FILE)
        tag = str(bento_model.tag)
    log.info("saved %s to the BentoML model store (%s)", tag, _store_dir())
    return tag


def export_model(tag: str, folder: Path) -> Path:
    """Write the store entry ``tag`` as ``folder/model.bentomodel`` (+ ``model.json``: tag, how to import).

    The one file a serving deployment needs when the store itself does not survive (a pipeline
    pod): ``bentoml models import model.bentomodel`` recreates the same tag elsewhere.
    """
    import bentoml

    folder = folder.resolve()  # BentoML reads a relative path against the filesystem root
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / EXPORT_FILE
    # Export next to the target, then rename: an interrupted export never looks like a model.
    # The name keeps the .bentomodel suffix, or BentoML appends one.
    partial = folder / f".partial-{EXPORT_FILE}"
    partial.unlink(missing_ok=True)
    bentoml.models.export_model(tag, str(partial), output_format="bentomodel")
    partial.replace(target)
    atomic.write_json(
        folder / EXPORT_RECORD,
        {"model_tag": tag, "file": EXPORT_FILE, "import_with": f"bentoml models import {EXPORT_FILE}"},
    )
    log.info("exported %s to %s", tag, target)
    return target


def _no_nones(value: Any) -> Any:
    """BentoML metadata takes basic types only (no None): drop unknowns rather than invent them."""
    if isinstance(value, dict):
        return {str(k): _no_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_no_nones(v) for v in value if v is not None]
    return value


def _store_dir() -> str:
    return os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))


# --------------------------------------------------------------------------- the stage


def package(
    params: Params,
    *,
    model_dir: Path,
    metrics_path: Path,
    out: Path,
    repo: Path = Path("."),
    drift_reference: Path | None = None,
    export: Path | None = None,
) -> dict[str, Any]:
    """Compare candidates, save the winner to the model store, write the record ``out``.

    ``export``: a folder that also gets the winner as an exported BentoML model (:func:`export_model`).
    """
    cfg = params.package
    current = Candidate(
        name="workspace", model_dir=model_dir, metrics=read_metrics(metrics_path), metrics_path=metrics_path
    )
    if not (model_dir / MODEL_FILE).is_file():
        raise PackagingError(f"{model_dir / MODEL_FILE}: model file not found (run the train stage first)")
    candidates = [current]
    for folder in cfg.candidates:
        try:
            candidates.append(run_folder_candidate(Path(folder)))
        except PackagingError as error:
            raise PackagingError(f"package.candidates: {error}") from None
    experiments = dvc_experiments(repo, os.path.relpath(metrics_path, repo)) if cfg.experiments else []
    for row in experiments:
        candidates.append(
            Candidate(
                name=f"exp:{row['name']}",
                model_dir=model_dir,  # placeholder: replaced by the fetched copy if it wins
                metrics=row["metrics"],
                source="experiment",
                rev=row["rev"],
            )
        )
    # Experiments have no files here until they win; latency ties among them are read from metrics only.
    choice = choose(candidates, cfg.metric, cfg.mode, cfg.tie_tolerance, measure_latency=cfg.measure_latency)
    winner = choice.winner
    git_rev = git_revision(repo)
    if winner.source == "experiment":
        with materialize_experiment(repo, winner.rev or "", os.path.relpath(model_dir, repo)) as fetched:
            winner.model_dir = fetched
            tag = save_to_store(winner, params, reason=choice.reason, git_rev=winner.rev, drift_reference=None)
            winner.model_dir = Path(f"{os.path.relpath(model_dir, repo)}@{winner.rev}")
    else:
        tag = save_to_store(winner, params, reason=choice.reason, git_rev=git_rev, drift_reference=drift_reference)
    exported = export_model(tag, export) if export is not None else None
    record = {
        "model_tag": tag,
        "model_name": cfg.model_name,
        "metric": cfg.metric,
        "mode": cfg.mode,
        "winner": winner.summary(),
        "reason": choice.reason,
        "candidates": [c.summary() for c in choice.ranked],
        "skipped": [c.summary() for c in choice.skipped],
        "git_rev": git_rev,
        "bentoml_home": _store_dir(),
        "serve_with": f"SIGNFLOW_MODEL_TAG={tag} python -m serving serving.service:Signflow",
    }
    if exported is not None:
        record["export"] = str(exported)
    atomic.write_json(out, record)
    return record


def candidate_table(record: dict[str, Any]) -> str:
    """The ranking as a small text table for the CLI summary."""
    rows = [("", "candidate", "value", "latency_ms")]
    for index, entry in enumerate(record["candidates"]):
        latency = "-" if entry["latency_ms"] is None else f"{entry['latency_ms']:.2f}"
        rows.append(("*" if index == 0 else "", entry["name"], f"{entry['value']:.6g}", latency))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows)


__all__ = [
    "Candidate",
    "Choice",
    "PackagingError",
    "candidate_table",
    "choose",
    "experiment_rows",
    "metric_value",
    "package",
    "run_folder_candidate",
    "save_to_store",
]
