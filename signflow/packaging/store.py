"""The BentoML model store: save the winner with everything serving needs, export it as one file.

The store lives outside the repository (``$BENTOML_HOME``, default ``~/bentoml``); DVC tracks
the package record, not the store. A store entry needs nothing from this repo to be served.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from signflow import atomic
from signflow.config import PackageParams, Params
from signflow.feature_spec import load_spec, write_spec
from signflow.packaging.candidates import METRICS_FILE, MODEL_FILE, Candidate

log = logging.getLogger(__name__)

LABEL_MAP_FILE = "label_map.json"
PARAMS_FILE = "params.json"
DRIFT_REFERENCE_FILE = "drift_reference.json"
EXPORT_FILE = "model.bentomodel"  # package --export: the winner as one importable file
EXPORT_RECORD = "model.json"


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
    log.info("saved %s to the BentoML model store (%s)", tag, store_dir())
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


def store_dir() -> str:
    """Where the BentoML model store lives: ``$BENTOML_HOME``, default ``~/bentoml`` (outside the repo)."""
    return os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))
