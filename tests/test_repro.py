"""The README's run command, for real: ``dvc repro`` of the default params in a fresh git+DVC repo,
then ``dvc exp run -S model.arch=...`` for every RGB architecture and ``dvc exp show`` comparing them.

Slow (about 2 minutes for the default run on 2 idle cores, plus a minute of tiny experiments). The
wall time is printed by ``make run`` / reported in the README, never asserted here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

# Tiny frames and one epoch: the experiments prove that every arch runs through every stage
# from `dvc exp run -S`, not what it scores.
EXPERIMENT_OVERRIDES = ["extract.frame_size=32", "extract.seq_len=8", "extract.stored_frames=8", "train.epochs=1"]
RGB_ARCHS = {
    "cnn-mobilenet": ["model.arch=cnn_lstm", "model.cnn_lstm.backbone=mobilenet_v2", "model.cnn_lstm.spatial_grid=1"],
    "r3d": ["model.arch=r3d_18"],
    "r2plus1d": ["model.arch=r2plus1d_18"],
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh repository holding exactly what the pipeline needs, with the default params."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = tmp_path_factory.mktemp("repro")
    for name in ("signflow", "stages", "serving"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, root / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "BENTOML_HOME": str(root.parent / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    # dvclive (train) reads the baseline commit, which an empty repository does not have.
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "config", "core.analytics", "false"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "project"]):  # fmt: skip
        _run(cmd, root, env)
    return root, env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.mark.timeout(1200)
def test_default_repro_reaches_95_percent_test_top1(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    output = _run(["dvc", "repro"], root, env)
    for stage in ("download", "split", "crop", "extract", "train", "evaluate", "package"):
        assert f"Running stage '{stage}'" in output

    metrics = json.loads((root / "reports/evaluate/metrics.json").read_text())
    print(f"default dvc repro: test_top1={metrics['test_top1']:.3f} val_top1={metrics['val_top1']:.3f}")
    assert metrics["test_top1"] >= 0.95, metrics
    assert metrics["test_samples"] == 30  # one held-out signer x 10 glosses x 3 repetitions

    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], root, env))
    assert json.dumps(shown).count("test_top1") >= 1
    plots = json.loads(_run(["dvc", "plots", "show", "--json"], root, env))
    plotted = json.dumps(plots)
    assert "confusion" in plotted and "val/top1.tsv" in plotted  # dvclive curves + the confusion matrix

    again = _run(["dvc", "repro"], root, env)
    assert "Running stage" not in again  # everything cached

    package = json.loads((root / "reports/package.json").read_text())
    # The served model is chosen on val (package.metric), never on test.
    assert package["metric"] == "val_top1" and package["winner"]["value"] == pytest.approx(metrics["val_top1"])


@pytest.mark.timeout(1500)
def test_exp_run_every_arch_and_exp_show_compares_them(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    if not (root / "dvc.lock").exists():
        _run(["dvc", "repro"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "baseline"], root, env)
    for name, overrides in RGB_ARCHS.items():
        sets = [arg for item in EXPERIMENT_OVERRIDES + overrides for arg in ("-S", item)]
        _run(["dvc", "exp", "run", "--name", name, *sets], root, env)

    rows = json.loads(_run(["dvc", "exp", "show", "--json"], root, env))
    found: dict[str, dict] = {}
    for commit in rows:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                data = revision.get("data") or {}
                if revision.get("name") in RGB_ARCHS:
                    found[revision["name"]] = data
    assert set(found) == set(RGB_ARCHS), f"dvc exp show lists {sorted(found)}"
    for name, data in found.items():
        params = data["params"]["params.yaml"]["data"]
        metrics = data["metrics"]["reports/evaluate/metrics.json"]["data"]
        assert params["model"]["arch"] == RGB_ARCHS[name][0].split("=")[1]
        assert 0.0 <= metrics["test_top1"] <= 1.0 and metrics["test_samples"] == 30
    table = _run(["dvc", "exp", "show", "--no-pager", "--md", "--only-changed"], root, env)
    assert all(name in table for name in RGB_ARCHS) and "test_top1" in table
