"""The package stage's work: gather the candidates, choose, save the winner, write the record.

Candidates are the current run (``models/`` + ``reports/evaluate/metrics.json``), the run
folders in ``package.candidates`` and, with ``package.experiments``, the DVC experiments. The
choice and its reason go to ``reports/package.json``, which is also where the service finds
the *pinned* model tag it serves (:mod:`serving.config`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from signflow import atomic
from signflow.config import Params
from signflow.packaging.candidates import MODEL_FILE, Candidate, PackagingError, read_metrics, run_folder_candidate
from signflow.packaging.choice import choose
from signflow.packaging.experiments import experiment_candidates, materialize_experiment
from signflow.packaging.store import export_model, save_to_store, store_dir


def git_revision(repo: Path) -> str | None:
    """``HEAD``'s commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}-dirty" if dirty else rev


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
    if cfg.experiments:
        candidates += experiment_candidates(repo, os.path.relpath(metrics_path, repo), model_dir)
    # Experiments have no files here until they win; latency ties among them are read from metrics only.
    choice = choose(candidates, cfg.metric, cfg.mode, cfg.tie_tolerance, measure_latency=cfg.measure_latency)
    winner = choice.winner
    git_rev = git_revision(repo)
    if winner.source == "experiment":
        with materialize_experiment(repo, winner.rev or "", os.path.relpath(model_dir, repo)) as (fetched, commit):
            winner.model_dir = fetched
            tag = save_to_store(winner, params, reason=choice.reason, git_rev=commit, drift_reference=None)
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
        "bentoml_home": store_dir(),
        "serve_with": f"SIGNFLOW_MODEL_TAG={tag} python -m serving serving.service:Signflow",
    }
    if exported is not None:
        record["export"] = str(exported)
    atomic.write_json(out, record)
    return record
