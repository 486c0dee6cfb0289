"""Packaging: metric lookup, choosing the winner (ties by latency), the stage CLI and the BentoML store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving.config import RECORD_ENV, TAG_ENV, load_config
from signflow import packaging
from signflow.packaging import Candidate, PackagingError, choose, finished_experiments, metric_value
from tiny_model import GLOSSES, make_model_dir, make_run

REPO_ROOT = Path(__file__).resolve().parents[1]


def _candidate(name: str, value: float | None, latency: float | None = None, model_dir: Path = Path(".")) -> Candidate:
    metrics: dict = {} if value is None else {"test_top1": value}
    if latency is not None:
        metrics["latency_ms"] = latency
    return Candidate(name=name, model_dir=model_dir, metrics=metrics)


def test_metric_value_accepts_flat_dotted_and_nested_keys() -> None:
    assert metric_value({"test_top1": 0.5}, "test_top1") == 0.5
    assert metric_value({"test": {"top1": 0.25}}, "test_top1") == 0.25
    assert metric_value({"test": {"top1": 0.25}}, "test.top1") == 0.25
    assert metric_value({"test": {"top1": "n/a"}}, "test_top1") is None
    assert metric_value({"test_top1": True}, "test_top1") is None  # a bool is not a score
    assert metric_value({"test_top1": float("nan")}, "test_top1") is None


def test_best_metric_wins_and_the_reason_names_the_runner_up() -> None:
    choice = choose([_candidate("a", 0.6), _candidate("b", 0.8), _candidate("c", 0.7)], "test_top1", "max")
    assert choice.winner.name == "b"
    assert "0.8" in choice.reason and "runner-up c" in choice.reason
    assert [c.name for c in choice.ranked] == ["b", "c", "a"]

    low = choose([_candidate("a", 0.6), _candidate("b", 0.8)], "test_top1", "min")
    assert low.winner.name == "a"


def test_tie_goes_to_the_lower_latency_from_metrics() -> None:
    choice = choose(
        [_candidate("slow", 0.8, latency=9.0), _candidate("fast", 0.8, latency=3.0), _candidate("worse", 0.5, 1.0)],
        "test_top1",
        "max",
        measure_latency=False,
    )
    assert choice.winner.name == "fast"
    assert "tied" in choice.reason and "lowest forward latency" in choice.reason
    assert choice.winner.latency_source == "metrics:latency_ms"


def test_tie_tolerance_widens_the_tie() -> None:
    candidates = [_candidate("a", 0.801, latency=9.0), _candidate("b", 0.800, latency=3.0)]
    assert choose(candidates, "test_top1", tie_tolerance=0.0, measure_latency=False).winner.name == "a"
    assert choose(candidates, "test_top1", tie_tolerance=0.01, measure_latency=False).winner.name == "b"


def test_tie_without_recorded_latency_measures_a_forward_pass(tmp_path: Path) -> None:
    small = make_model_dir(tmp_path / "small", hidden=4)
    big = make_model_dir(tmp_path / "big", hidden=64)
    choice = choose(
        [_candidate("big", 0.9, model_dir=big), _candidate("small", 0.9, model_dir=small)], "test_top1", "max"
    )
    for candidate in choice.ranked:
        assert candidate.latency_source == "measured" and candidate.latency_ms > 0
    assert choice.winner.latency_ms == min(c.latency_ms for c in choice.ranked)


def test_candidates_without_the_metric_are_skipped_and_none_left_is_an_error() -> None:
    choice = choose([_candidate("a", None), _candidate("b", 0.3)], "test_top1")
    assert choice.winner.name == "b" and [c.name for c in choice.skipped] == ["a"]
    with pytest.raises(PackagingError, match="test_top1"):
        choose([_candidate("a", None)], "test_top1")


def test_finished_experiments_reads_dvc_api_exp_show_rows() -> None:
    # The rows `dvc.api.exp_show` returns (dvc 3): each baseline (and the workspace), then its experiments.
    rows = [
        {"Experiment": None, "rev": "workspace", "typ": "baseline", "State": None, "test_top1": 0.5},
        {"Experiment": None, "rev": "main", "typ": "baseline", "State": None, "test_top1": 0.4},
        {"Experiment": "tidy-lamb", "rev": "e1e1e1e", "typ": "branch_commit", "State": None, "test_top1": 0.9},
        {"Experiment": "broken", "rev": "e2e2e2e", "typ": "branch_commit", "State": "Failed", "test_top1": None},
        {"Experiment": "waiting", "rev": "e3e3e3e", "typ": "branch_commit", "State": "Queued", "test_top1": None},
        {"Experiment": "from-queue", "rev": "e4e4e4e", "typ": "branch_base", "State": "Success", "test_top1": 0.7},
    ]
    assert finished_experiments(rows) == [("tidy-lamb", "e1e1e1e"), ("from-queue", "e4e4e4e")]


def test_a_flat_metric_name_wins_over_the_same_name_nested() -> None:
    assert metric_value({"test_top1": 0.5, "test": {"top1": 0.25}}, "test.top1") == 0.5
    assert metric_value({"test": {"top1": 0.25, "top5": 0.5}}, "test_top5") == 0.5
    assert metric_value({"test": {"top1": 0.25}}, "val_top1") is None


def _git_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
            "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'tests'}",
            "PATH": f"{bin_dir}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip


@pytest.mark.slow  # real git + dvc exp run: ~8 s
@pytest.mark.timeout(120)
def test_experiment_candidates_carry_each_experiments_own_metrics_file(tmp_path: Path) -> None:
    """A real DVC repo: another metrics file with the same name must not leak into the candidate."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = _git_env(tmp_path)

    def run(*args: str) -> None:
        result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{args}: {result.stdout[-1500:]}{result.stderr[-1500:]}"

    (repo / "params.yaml").write_text("train:\n  seed: 1\n")
    (repo / "make.py").write_text(
        "import json, yaml\n"
        "seed = yaml.safe_load(open('params.yaml'))['train']['seed']\n"
        "json.dump({'test': {'top1': seed / 10}, 'samples': 3}, open('metrics.json', 'w'))\n"
        "json.dump({'test_top1': 7}, open('other.json', 'w'))\n"
    )
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": {
        "cmd": "python make.py", "deps": ["make.py"], "params": ["train.seed"],
        "metrics": [{"metrics.json": {"cache": False}}, {"other.json": {"cache": False}}],
    }}}))  # fmt: skip
    assert packaging.experiment_candidates(repo, "metrics.json", repo / "models") == []  # not a DVC repo yet
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    assert packaging.experiment_candidates(repo, "metrics.json", repo / "models") == []  # no experiment yet
    run("dvc", "exp", "run", "-q", "-S", "train.seed=9", "--name", "seed-nine")

    [candidate] = packaging.experiment_candidates(repo, "metrics.json", repo / "models")
    assert (candidate.name, candidate.source) == ("exp:seed-nine", "experiment")
    assert candidate.metrics == {"test": {"top1": 0.9}, "samples": 3}  # the file itself: ints stay ints
    assert metric_value(candidate.metrics, "test_top1") == 0.9


def test_run_folder_candidate_needs_model_and_metrics(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="not a run folder"):
        packaging.run_folder_candidate(tmp_path)


# --------------------------------------------------------------------------- the stage, real BentoML store


def _params(tmp_path: Path, candidates: list[str]) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["package"].update({"candidates": candidates, "experiments": False})
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _run_stage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    return subprocess.run(
        [sys.executable, "-m", "stages.package", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_package_stage_saves_the_winner_to_the_store_and_records_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = make_run(tmp_path / "current", {"val_top1": 0.5, "val_top5": 0.9, "test_top1": 0.95})
    better = make_run(tmp_path / "better", {"val": {"top1": 0.75}, "test": {"top1": 0.25}}, seed=1)
    params = _params(tmp_path, [str(better)])
    drift = tmp_path / "drift_reference.json"
    drift.write_text(json.dumps({"kind": "signflow.drift.reference"}))
    out = tmp_path / "reports" / "package.json"
    result = _run_stage(
        tmp_path, "--params", str(params), "--models", str(current / "models"),
        "--metrics", str(current / "reports/evaluate/metrics.json"), "--drift-reference", str(drift), "--out", str(out),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["winner"]["name"] == f"run:{better}"
    assert "best val_top1" in record["reason"] and "0.75" in record["reason"]
    assert [c["value"] for c in record["candidates"]] == [0.75, 0.5]
    assert record["model_tag"].startswith("signflow-islr:")
    monkeypatch.setenv(RECORD_ENV, str(out))
    monkeypatch.delenv(TAG_ENV, raising=False)
    assert load_config().model_tag == record["model_tag"]  # the service serves exactly this tag
    assert record["model_tag"] in result.stdout

    # The store entry: files serving needs, labels and metadata that say what it is.
    name, version = record["model_tag"].split(":")
    store = tmp_path / "bentoml" / "models" / name / version
    for file in ("model.pt", "preprocess.json", "label_map.json", "metrics.json", "params.json", "drift_reference.json"):
        assert (store / file).is_file(), file
    assert json.loads((store / "label_map.json").read_text()) == {"glosses": list(GLOSSES)}
    assert json.loads((store / "metrics.json").read_text()) == {"val": {"top1": 0.75}, "test": {"top1": 0.25}}
    info = yaml.safe_load((store / "model.yaml").read_text())
    assert info["labels"]["arch"] == "cnn_lstm" and info["labels"]["metric"] == "val_top1"
    assert info["labels"]["metric_value"] == "0.75"
    assert info["metadata"]["feature_spec"]["frame_size"] == 32
    assert "git_rev" in info["labels"]


def test_package_stage_fails_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stages.package import main

    current = make_run(tmp_path / "current", {"test_top1": 0.5})  # a test score alone never chooses
    out = tmp_path / "package.json"
    code = main(
        ["--params", str(_params(tmp_path, [])), "--models", str(current / "models"),
         "--metrics", str(current / "reports/evaluate/metrics.json"), "--out", str(out)]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "package: error: no candidate has the metric 'val_top1' (candidates: workspace); check package.metric"
    )
    assert not out.exists()
    assert main(["--params", str(_params(tmp_path, [])), "--models", str(tmp_path / "nowhere"),
                 "--metrics", str(tmp_path / "nowhere.json"), "--out", str(out)]) == 2
    assert "metrics file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- DVC experiments (real dvc + git)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_better_dvc_experiment_wins_and_is_fetched_from_the_cache(tmp_path: Path) -> None:
    """A real repo: the workspace run scores 0.0, an experiment (``-S train.seed=9``) scores 0.9."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
           "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'tests'}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}:{env['PATH']}"

    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, f"{args}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
        return result.stdout

    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["package"]["experiments"] = True
    (repo / "params.yaml").write_text(yaml.safe_dump(raw))
    (repo / "make_run.py").write_text(
        "import json, pathlib, yaml\n"
        "from tiny_model import make_model_dir\n"
        "seed = yaml.safe_load(open('params.yaml'))['train']['seed']\n"
        "make_model_dir(pathlib.Path('models'), seed=seed)\n"
        "pathlib.Path('reports/evaluate').mkdir(parents=True, exist_ok=True)\n"
        "json.dump({'val_top1': seed / 10}, open('reports/evaluate/metrics.json', 'w'))\n"
    )
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": "python make_run.py", "deps": ["make_run.py"], "params": ["train.seed"], "outs": ["models"],
        "metrics": [{"reports/evaluate/metrics.json": {"cache": False}}],
    }}}))
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "config", "core.analytics", "false")
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run("dvc", "exp", "run", "-q", "-S", "train.seed=9", "--name", "seed-nine")
    # Back to the baseline workspace (seed 0, metric 0.0): the experiment lives only in DVC's refs/cache.
    run("git", "checkout", "--", ".")
    run("dvc", "checkout", "-q", "--force")
    assert json.loads((repo / "reports/evaluate/metrics.json").read_text()) == {"val_top1": 0.0}

    result = subprocess.run(
        [sys.executable, "-m", "stages.package", "--params", "params.yaml", "--models", "models",
         "--metrics", "reports/evaluate/metrics.json", "--out", "reports/package.json"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((repo / "reports/package.json").read_text())
    assert record["winner"]["name"] == "exp:seed-nine" and record["winner"]["value"] == 0.9
    assert {c["name"] for c in record["candidates"]} == {"workspace", "exp:seed-nine"}
    # The store holds the experiment's weights (seed 9), not the workspace's (seed 0).
    import torch

    name, version = record["model_tag"].split(":")
    stored = torch.load(tmp_path / "bentoml/models" / name / version / "model.pt", weights_only=True)
    expected = torch.load(make_model_dir(tmp_path / "seed9", seed=9) / "model.pt", weights_only=True)
    workspace = torch.load(repo / "models/model.pt", weights_only=True)
    key = next(iter(expected["state_dict"]))
    assert torch.equal(stored["state_dict"][key], expected["state_dict"][key])
    assert not torch.equal(stored["state_dict"][key], workspace["state_dict"][key])


@pytest.mark.slow  # two BentoML processes: ~20 s
def test_export_is_a_bentoml_model_another_store_imports(tmp_path: Path) -> None:
    """package --export: the one file a serving deployment pulls (the pipeline's Model output)."""
    current = make_run(tmp_path / "current", {"val_top1": 0.5, "test_top1": 0.5})
    out, export = tmp_path / "package.json", tmp_path / "bento"
    result = _run_stage(
        tmp_path, "--params", str(_params(tmp_path, [])), "--models", str(current / "models"),
        "--metrics", str(current / "reports/evaluate/metrics.json"), "--out", str(out),
        "--export", os.path.relpath(export, REPO_ROOT),  # relative, as dvc.yaml passes it
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert sorted(p.name for p in export.iterdir()) == ["model.bentomodel", "model.json"]
    assert json.loads((export / "model.json").read_text())["model_tag"] == record["model_tag"]
    assert record["export"] == str(export.resolve() / "model.bentomodel")

    # A fresh store (another machine, the serving pod) imports it under the same tag, files intact.
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "serving-store"), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml_cli = Path(sys.executable).with_name("bentoml")  # the command the docs give
    imported = subprocess.run(
        [str(bentoml_cli), "models", "import", str(export / "model.bentomodel")], env=env, capture_output=True,
        text=True, timeout=120, cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    assert record["model_tag"] in imported.stdout
    name, version = record["model_tag"].split(":")
    served = tmp_path / "serving-store" / "models" / name / version
    original = tmp_path / "bentoml" / "models" / name / version
    for file in ("model.pt", "preprocess.json", "label_map.json", "metrics.json", "params.json"):
        assert (served / file).read_bytes() == (original / file).read_bytes(), file
