"""The arch registry: every entry resolves and is used, unknown names fail once, and a new arch is one module + one entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import linear_probe
import pytest
import yaml
from pydantic import BaseModel
from training_data import make_features

from signflow import archs
from signflow.config import ModelParams, ParamsError, parse_params
from signflow.inference import Predictor
from signflow.training import feature_cache
from signflow.transforms import input_config_for
from stages import evaluate as evaluate_stage
from stages import train as train_stage

REPO = Path(__file__).resolve().parents[1]


def test_every_builtin_entry_resolves_and_names_real_params() -> None:
    assert archs.names()[: len(archs.BUILTIN)] == ("cnn_lstm", "r3d_18", "r2plus1d_18", "landmark_lstm", "landmark_gcn")
    for spec in archs.BUILTIN:
        assert callable(archs.resolve(spec.builder)) and callable(archs.resolve(spec.fit_check))
        if spec.params_section is not None:
            assert issubclass(ModelParams.model_fields[spec.params_section].annotation, BaseModel)
        for backbone, reference in spec.pretrained.items():
            assert archs.resolve(reference).url.endswith(".pth"), backbone
        if spec.backbone_param is not None:
            assert spec.backbone(ModelParams(arch=spec.name)) == "small_cnn"
        assert ModelParams(arch=spec.name).arch == spec.name
    assert [s.name for s in archs.BUILTIN if s.representation == "landmarks"] == ["landmark_lstm", "landmark_gcn"]
    assert [s.name for s in archs.BUILTIN if s.uses_feature_cache] == ["cnn_lstm"]


def test_unknown_arch_is_one_error_listing_the_known_ones() -> None:
    with pytest.raises(archs.UnknownArchError, match="unknown model.arch 'vit' .*cnn_lstm, r3d_18, .*landmark_gcn"):
        archs.get("vit")
    # config leaves the name to the registry (every stage imports config; see ModelParams.arch) ...
    params = parse_params({"model": {"arch": "vit"}})
    # ... and whatever validates params before a run asks it, with a params error.
    with pytest.raises(ParamsError, match="model.arch: .*unknown model.arch 'vit'"):
        archs.check_params(params)


def test_bad_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        archs.register(archs.get("cnn_lstm"))
    with pytest.raises(ValueError, match="lower_snake_case"):
        archs.ArchSpec(name="Linear-Probe", layout="TCHW", builder="m:f")
    with pytest.raises(ValueError, match="'m.f' is not a 'module:attribute'"):
        archs.ArchSpec(name="probe", layout="TCHW", builder="m.f")
    with pytest.raises(ValueError, match="layout 'THWC'"):
        archs.ArchSpec(name="probe", layout="THWC", builder="m:f")  # type: ignore[arg-type]
    other_weights = archs.ArchSpec(name="probe", layout="CTHW", builder="m:f", pretrained={"r3d_18": "m:W.X"})
    with pytest.raises(ValueError, match="backbone 'r3d_18' already has other weights"):
        archs.register(other_weights)
    with pytest.raises(ValueError, match="built in"):
        archs.unregister("cnn_lstm")


def test_an_arch_for_other_features_is_refused_before_training() -> None:
    from signflow.models import check_fit

    with pytest.raises(ValueError, match="model.arch=landmark_gcn reads landmarks features .* holds rgb"):
        check_fit(ModelParams(arch="landmark_gcn"), seq_len=8, frame_size=32, representation="rgb")
    with pytest.raises(ValueError, match="use an arch for landmarks \\(landmark_lstm, landmark_gcn\\)"):
        check_fit(ModelParams(arch="cnn_lstm"), seq_len=8, frame_size=None, representation="landmarks")


def test_params_validation_does_not_import_torch() -> None:
    """Light CLIs (experiments, the kfp compiler) validate model.arch from the registry's plain data."""
    code = "import sys, signflow.config; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO).returncode == 0


@pytest.fixture
def probe_registered():
    """The one registry entry a new arch needs; removed afterwards so other tests see the built-in set."""
    archs.register(linear_probe.SPEC)
    yield linear_probe.SPEC
    archs.unregister(linear_probe.SPEC.name)


def test_a_new_arch_is_one_module_and_one_entry(probe_registered: archs.ArchSpec, tmp_path: Path, capsys) -> None:
    """linear_probe trains and evaluates through the stages; nothing in signflow names it."""
    features, labels = make_features(tmp_path, per_class={"train": 4, "val": 1, "test": 2})
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model": {"arch": "linear_probe", "dropout": 0.0},
                "train": {"epochs": 8, "batch_size": 8, "lr": 0.05, "scheduler": "none", "device": "cpu"},
                "evaluate": {"splits": ["test"], "top_k": [1, 2], "device": "cpu"},
            }
        )
    )
    models, reports = tmp_path / "models", tmp_path / "reports"
    args = ["--params", str(params), "--features", str(features)]
    assert train_stage.main([*args, "--labels", str(labels), "--out", str(models), "--no-progress"]) == 0
    assert "linear_probe 8 epochs" in capsys.readouterr().out
    assert evaluate_stage.main([*args, "--model", str(models), "--out", str(reports), "--no-progress"]) == 0

    predictor = Predictor.load(models)
    assert predictor.arch == "linear_probe" and isinstance(predictor.model, linear_probe.LinearProbe)
    assert predictor.input_config == input_config_for("linear_probe")  # layout TCHW, no normalisation
    assert predictor.meta["input_config"]["layout"] == "TCHW" and predictor.meta["input_config"]["mean"] is None
    metrics = json.loads((reports / "metrics.json").read_text())
    # Motion direction is linear in the thumbnails over time: a trained probe gets it (chance: 0.25).
    assert metrics["test_samples"] == 8 and metrics["test_top1"] >= 0.75, metrics
    assert not feature_cache.cache_applies(ModelParams(arch="linear_probe"), parse_params({}).train)
