"""Named DVC experiments from a YAML file (experiments/wlasl100.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from signflow import experiments
from signflow.config import ParamsError

REPO = Path(__file__).resolve().parents[1]


def test_wlasl100_file_is_valid_and_gives_dvc_commands() -> None:
    spec = experiments.load_experiments(REPO / "experiments" / "wlasl100.yaml", REPO / "params.yaml")
    [command] = experiments.commands(spec, ["wl100-landmark-gcn"], [2])
    assert command[:5] == ["dvc", "exp", "run", "-n", "wl100-landmark-gcn-s2"]
    sets = dict(arg.split("=", 1) for arg in command[6::2])
    assert sets["data.local.pretrimmed"] == "true"
    assert sets["model.arch"] == "landmark_gcn" and sets["train.seed"] == "2"
    assert sets["evaluate.top_k"] == "[1, 5, 10]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("experiments: {a: {model.arch: resnet}}", "experiment 'a'"),
        ("experiments: {a: {model.no_such_key: 1}}", "experiment 'a'"),
        ("experiments: {}", "experiments"),
        ("base: {}\nexperiments: {'bad name': {}}", "must match"),
        ("oops: 1\nexperiments: {a: {}}", "oops"),
    ],
)
def test_bad_files_are_refused_before_any_run(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError, match=message):
        experiments.load_experiments(path, REPO / "params.yaml")


def test_cli_dry_run_and_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("experiments: {small: {train.epochs: 2}}")
    params = str(REPO / "params.yaml")
    assert experiments.main([str(path), "--params", params, "--dry-run"]) == 0
    assert "dvc exp run -n small -S train.epochs=2" in capsys.readouterr().out
    assert experiments.main([str(path), "nope", "--params", params]) == 2
    assert "unknown experiment" in capsys.readouterr().err
