"""What runs inside a pipeline step's container: write the params file, call the stage, log typed outputs.

A step (:mod:`pipelines.steps`) calls :func:`run_stage` with its stage's command line (artifact
paths in place of the ``dvc.yaml`` paths), its params section texts and its run parameters. The
stage itself is the very ``stages.<name>.main`` that ``dvc repro`` runs; this module only writes
its params file, keeps train's state off the model artifact, launches torchrun or a PyTorchJob
when asked, and turns the stage's JSON/CSV reports into kfp ``Metrics``, ``ClassificationMetrics``
and a Markdown report so the Kubeflow UI shows them (:func:`log_metrics`,
:func:`log_confusion_matrix`, :func:`write_report`).
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import itertools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pipelines.params import stage_params_text

log = logging.getLogger("pipelines.runtime")
STATE_DIR_ENV = "SIGNFLOW_STATE_DIR"
# Stage state that must not travel in an output artifact: flag -> folder. Checkpoints live per
# run key (a retried pod resumes from its last epoch); the frozen-backbone feature cache is keyed
# by content already, so every run shares one.
STATE_FLAGS = {"train": {"--checkpoints": ("checkpoints", True), "--feature-cache": ("feature_cache", False)}}
MAX_REPORT_ROWS = 60


class StageFailed(RuntimeError):
    """The stage exited non-zero; its own one-line error is in the step log above."""


def flatten_metrics(data: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a metrics JSON as ``a.b`` keys (kfp Metrics are flat name -> number)."""
    flat: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            flat.update(flatten_metrics(value, f"{prefix}{key}."))
    elif isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data):
        flat[prefix.rstrip(".")] = float(data)
    return flat


def _path(artifact: Any) -> Path:
    return Path(artifact.path)


def flag_values(argv: Sequence[str]) -> dict[str, str]:
    """``["--out", "x", "--no-progress"]`` -> ``{"--out": "x"}``: the flags of a command line that take a value."""
    return {flag: value for flag, value in itertools.pairwise(argv) if flag.startswith("--") and not value.startswith("--")}


def state_key(params_text: str, inputs: Sequence[Any]) -> str:
    """Same params and same input artifacts -> same key: a retried pod finds its own checkpoints.

    A new run of the same step (other upstream artifacts, other params) gets another key, and the
    checkpoint's own fingerprint still refuses anything that does not fit.
    """
    digest = hashlib.sha256(params_text.encode())
    for artifact in inputs:
        digest.update(f"{getattr(artifact, 'name', '')}={getattr(artifact, 'uri', '') or _path(artifact)}".encode())
    return digest.hexdigest()[:16]


def state_argv(stage: str, key: str, scratch: Path, environ: Mapping[str, str]) -> list[str]:
    """Flags that put a stage's state outside its output artifacts.

    With ``$SIGNFLOW_STATE_DIR`` (the PVC; set by the pipeline when ``kubeflow.pvc`` is given) the
    state outlives the pod; without it, it lives in the step's scratch and goes with the pod, so
    a Model artifact never carries ``checkpoints/last.pt``/``best.pt``.
    """
    flags = STATE_FLAGS.get(stage)
    if not flags:
        return []
    root = Path(environ[STATE_DIR_ENV]) / stage if environ.get(STATE_DIR_ENV) else scratch / "state"
    argv: list[str] = []
    for flag, (folder, per_run) in flags.items():
        path = root / folder / key if per_run else root / folder
        path.mkdir(parents=True, exist_ok=True)
        argv += [flag, str(path)]
    return argv


def _run(module: str, argv: list[str], nproc: int) -> int:
    if nproc > 1:
        # One pod, several GPUs: torchrun starts one worker per GPU (DDP in signflow.training).
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        command += ["-m", module, *argv]
        log.info("running %s", " ".join(command))
        return subprocess.run(command, check=False).returncode
    log.info("running python -m %s %s", module, " ".join(argv))
    return int(importlib.import_module(module).main(argv) or 0)


def run_stage(
    module: str,
    argv: Sequence[str],
    *,
    params: Mapping[str, str],
    run_values: Mapping[str, Any] | None = None,
    inputs: Sequence[Any] = (),
    nproc_per_node: int = 1,
    train_nodes: int = 1,
    pytorchjob: str = "",
) -> None:
    """Run ``python -m <module> --params <file> <argv>``; raise :class:`StageFailed` on a non-zero exit.

    ``params``: section name -> YAML text (the step's ``params_<section>`` inputs); ``run_values``:
    dotted key -> typed value (its run parameters), applied on top (:func:`stage_params_text`).
    ``inputs``: the input artifacts that, with the params, key the state of a stage that keeps one
    (train: checkpoints). ``nproc_per_node > 1``: torchrun; ``train_nodes > 1``: a PyTorchJob
    (:mod:`pipelines.multinode`; ``pytorchjob`` is YAML with its image and kubeflow section).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    stage = module.rsplit(".", 1)[-1]
    params_text = stage_params_text(params, dict(run_values or {}))
    with tempfile.TemporaryDirectory(prefix=f"signflow-{stage}-") as workdir:
        params_path = Path(workdir) / "params.yaml"
        params_path.write_text(params_text, encoding="utf-8")
        command = ["--params", str(params_path), *argv]
        key = state_key(params_text, inputs)
        nodes = int(train_nodes or 1)
        if nodes > 1:
            from pipelines.multinode import run_pytorchjob  # the Kubernetes client: only on this path

            run_pytorchjob(list(argv), params_text, key, nodes, yaml.safe_load(pytorchjob) if pytorchjob else None)
            code = 0
        else:
            command += state_argv(stage, key, Path(workdir), os.environ)
            code = _run(module, command, int(nproc_per_node or 1))
    if code != 0:
        raise StageFailed(f"stage {stage} exited with status {code}")


def log_metrics(artifact: Any, source: str | Path) -> None:
    """Log the numbers of the metrics JSON at ``source`` on a kfp ``Metrics`` artifact (the UI shows them).

    ``source`` is the artifact's own file (the stage wrote its report there) or a file inside
    another output, which is then copied into the artifact too.
    """
    source = Path(source)
    if not source.is_file():
        log.warning("no metrics file at %s: nothing logged", source)
        return
    data = json.loads(source.read_text(encoding="utf-8"))
    for key, value in flatten_metrics(data).items():
        artifact.log_metric(key, value)
    if source != _path(artifact):  # keep the JSON itself next to the logged values
        _path(artifact).parent.mkdir(parents=True, exist_ok=True)
        _path(artifact).write_text(json.dumps(data, indent=2), encoding="utf-8")


def log_confusion_matrix(artifact: Any, source: str | Path) -> None:
    """Log ``confusion.csv`` (:func:`read_confusion`) on a kfp ``ClassificationMetrics`` artifact."""
    source = Path(source)
    if not source.is_file():
        log.warning("no confusion file at %s: nothing logged", source)
        return
    categories, matrix = read_confusion(source)
    artifact.log_confusion_matrix(categories, matrix)


def write_report(artifact: Any, stage: str, folder: str | Path) -> None:
    """Write the Markdown report of an evaluation folder (:func:`markdown_report`) into a kfp ``Markdown`` artifact."""
    _path(artifact).parent.mkdir(parents=True, exist_ok=True)
    _path(artifact).write_text(markdown_report(stage, Path(folder)), encoding="utf-8")


def _ordered(labels: set[str]) -> list[str]:
    return sorted(labels, key=lambda text: (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text))


def read_confusion(path: Path) -> tuple[list[str], list[list[int]]]:
    """A confusion matrix from ``confusion.csv``: DVC's per-sample rows with ``actual`` and
    ``predicted`` columns, or a square table whose header names the predicted classes and whose
    first column names the actual ones."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path}: empty confusion file")
    header, body = rows[0], [row for row in rows[1:] if row]
    columns = [name.strip().lower() for name in header]
    if "actual" in columns and "predicted" in columns:
        actual, predicted = columns.index("actual"), columns.index("predicted")
        pairs = [(row[actual], row[predicted]) for row in body]
        categories = _ordered({label for pair in pairs for label in pair})
        index = {label: position for position, label in enumerate(categories)}
        matrix = [[0] * len(categories) for _ in categories]
        for actual, predicted in pairs:
            matrix[index[actual]][index[predicted]] += 1
        return categories, matrix
    categories = header[1:]
    if [row[0] for row in body] != categories:
        raise ValueError(f"{path}: neither actual/predicted columns nor a square table with matching labels")
    return categories, [[int(float(cell)) for cell in row[1:]] for row in body]


def _table(rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return lines


def markdown_report(stage: str, folder: Path) -> str:
    """A short evaluation report: headline metrics and the per-class table (the UI renders Markdown)."""
    lines = [f"# signflow {stage}", ""]
    metrics_file = folder / "metrics.json"
    if metrics_file.is_file():
        flat = flatten_metrics(json.loads(metrics_file.read_text(encoding="utf-8")))
        lines += ["## Metrics", ""] + _table([["metric", "value"]] + [[k, f"{v:.4g}"] for k, v in flat.items()]) + [""]
    per_class = folder / "per_class.csv"
    if per_class.is_file():
        with per_class.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row]
        if rows:
            shown = rows[: MAX_REPORT_ROWS + 1]
            lines += ["## Per class", ""] + _table(shown)
            if len(rows) > len(shown):
                lines.append(f"\n({len(rows) - len(shown)} more classes in per_class.csv)")
            lines.append("")
    files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    lines += ["## Files", "", ", ".join(files) or "(none)", ""]
    return "\n".join(lines)
