"""The stage CLI prologue: ``--params``, the params view, one-line errors with exit 2, for every stage."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import pytest
import yaml

from signflow.stage_cli import EXIT_BAD_INPUT, StageCli, one_line
from signflow.stage_params import UndeclaredParamError

STAGES = ("download", "split", "crop", "extract", "train", "evaluate", "package", "weights")
REPO_ROOT = Path(__file__).resolve().parents[1]


def test_params_errors_become_one_line() -> None:
    message = "params.yaml: invalid parameters:\n  data.source: bad (got 'x')\n  split.seed: bad (got -1)"
    assert one_line(message) == "params.yaml: invalid parameters: data.source: bad (got 'x'); split.seed: bad (got -1)"


def test_fail_prints_the_stage_name_and_returns_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    cli = StageCli("crop", ("crop",), "Stage crop.\n\nmore")
    assert cli.fail(FileNotFoundError("a\n  b")) == EXIT_BAD_INPUT == 2
    assert cli.fail("nothing extracted", code=1) == 1
    assert capsys.readouterr().err.splitlines() == ["crop: error: a; b", "crop: error: nothing extracted"]


def test_params_are_the_stage_view_of_its_declared_keys(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"crop": {"margin": 0.25}}))
    cli = StageCli("crop", ("crop",), "Stage crop.")
    parser = cli.parser()
    args = cli.parse(parser, ["--params", str(params)], log_level=logging.WARNING)
    view = cli.params(args)
    assert view.crop.margin == 0.25
    with pytest.raises(UndeclaredParamError, match="stage 'crop' reads params train"):
        _ = view.train


# Each stage's required paths (never read: the params error comes first).
PATH_ARGS = {
    "download": ["--out", "o"],
    "split": ["--raw", "r", "--out", "o", "--report", "r.json"],
    "crop": ["--raw", "r", "--split", "s", "--out", "o"],
    "extract": ["--raw", "r", "--crop", "c", "--out", "o", "--report", "r.json"],
    "train": ["--features", "f", "--labels", "l.json", "--out", "o"],
    "evaluate": ["--features", "f", "--model", "m", "--out", "o"],
    "package": ["--models", "m", "--metrics", "m.json", "--out", "o.json"],
    "weights": ["--out", "o"],
}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_refuses_bad_params_with_its_one_line(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"stages.{stage}")
    assert module.CLI == StageCli(stage, module.PARAMS, module.__doc__)
    params = tmp_path / "params.yaml"
    params.write_text("nonsense_section: 1\n")
    assert module.main(["--params", str(params), *PATH_ARGS[stage]]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith(f"{stage}: error: {params}: invalid parameters: nonsense_section: unknown key")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("stage", ["weights", "train"])
def test_model_stages_refuse_an_unregistered_arch_before_any_work(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """config leaves model.arch to the registry; the stages that read it check it first, in one line."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": {"arch": "vit"}}))
    module = importlib.import_module(f"stages.{stage}")
    assert module.main(["--params", str(params), *PATH_ARGS[stage]]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"{stage}: error: model.arch: unknown model.arch 'vit' (expected one of cnn_lstm, ")
