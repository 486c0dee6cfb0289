"""DVC experiments as candidates: which exist, what they scored, and their model when one wins.

``dvc.api.exp_show`` lists the experiments (one flat row each). Its columns mix every metrics
file with the params and cannot say which file a bare name came from, so each experiment's
metrics are read from *the* metrics file at its revision (``dvc.api.read``): exact values, in
the file's own shape. An experiment's model is fetched from the DVC cache only if it wins.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from signflow.packaging.candidates import Candidate

log = logging.getLogger(__name__)

# ``typ`` of an experiment's row; the others are the workspace and baseline commits, not experiments.
EXPERIMENT_TYPES = ("branch_base", "branch_commit")
# ``State`` of a finished experiment: None when run in the workspace, "Success" from the queue.
FINISHED_STATES = (None, "Success")


def finished_experiments(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(name, rev)`` of each finished experiment among ``dvc.api.exp_show`` rows."""
    found = []
    for row in rows:
        if row.get("typ") not in EXPERIMENT_TYPES or not row.get("rev"):
            continue
        if row.get("State") not in FINISHED_STATES:
            log.info("experiment %s is %s: not a candidate", row.get("Experiment") or row["rev"], row["State"])
            continue
        found.append((str(row.get("Experiment") or row["rev"]), str(row["rev"])))
    return found


def experiment_candidates(repo: Path, metrics_file: str, model_dir: Path) -> list[Candidate]:
    """The finished DVC experiments of ``repo`` with their ``metrics_file``; empty (logged) when DVC cannot tell.

    ``model_dir`` stands in for an experiment's model folder until :func:`materialize_experiment`
    fetches the real one (only the winner's).
    """
    import dvc.api
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    if not (repo / ".dvc").is_dir():
        log.info("no DVC repo at %s: comparing the current run and listed runs only", repo)
        return []
    try:
        experiments = finished_experiments(dvc.api.exp_show(str(repo)))
    except (DvcException, SCMError, OSError) as error:
        log.warning("dvc.api.exp_show failed (%s): DVC experiments are not compared", error)
        return []
    candidates = []
    for name, rev in experiments:
        try:
            metrics = json.loads(dvc.api.read(metrics_file, repo=str(repo), rev=rev))
        except (DvcException, SCMError, OSError, json.JSONDecodeError) as error:
            log.info("experiment %s has no readable %s (%s): not a candidate", name, metrics_file, error)
            continue
        if not isinstance(metrics, dict):
            log.info("experiment %s: %s is not a JSON object: not a candidate", name, metrics_file)
            continue
        candidates.append(
            Candidate(name=f"exp:{name}", model_dir=model_dir, metrics=metrics, source="experiment", rev=rev)
        )
    return candidates


@contextmanager
def materialize_experiment(repo: Path, rev: str, model_dir: str) -> Iterator[tuple[Path, str]]:
    """Fetch an experiment's model folder from the DVC cache into a temporary folder; also its full commit."""
    from dvc.api import DVCFileSystem

    with tempfile.TemporaryDirectory(prefix="signflow-exp-") as tmp:
        fs = DVCFileSystem(str(repo), rev=rev)
        target = Path(tmp) / "models"
        fs.get(model_dir.rstrip("/") + "/", str(target), recursive=True)
        yield target, fs.repo.get_rev()
