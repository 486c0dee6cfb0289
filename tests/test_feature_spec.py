"""The feature spec: one typed, versioned record from extract to serving; bad or old ones are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from feature_specs import hands_spec, holistic_spec, rgb_spec
from tiny_model import make_model_dir

from signflow import packaging
from signflow.config import CropParams, ExtractParams, LandmarksParams, Params, ParamsError, parse_params
from signflow.feature_spec import (
    SPEC_FILE,
    FeatureSpecError,
    LandmarkFeatureSpec,
    RgbFeatureSpec,
    load_spec,
    write_spec,
)
from signflow.inference import Predictor
from signflow.models import load_model_file


@pytest.mark.parametrize("spec", [rgb_spec(), holistic_spec(face=True), hands_spec()], ids=["rgb", "holistic", "hands"])
def test_written_spec_loads_back_equal(tmp_path: Path, spec: RgbFeatureSpec | LandmarkFeatureSpec) -> None:
    path = write_spec(tmp_path, spec)
    assert path == tmp_path / SPEC_FILE and json.loads(path.read_text())["version"] == 1
    assert load_spec(tmp_path) == load_spec(path) == load_spec(spec.to_json()) == spec
    assert type(load_spec(path)) is type(spec)
    assert not list(tmp_path.glob(".tmp*")), "written atomically"


def test_spec_bounds_are_the_params_bounds() -> None:
    """Read off the params models, never copied: a spec validates iff params could have produced it."""
    for field, section in [("seq_len", ExtractParams), ("stored_frames", ExtractParams), ("frame_size", ExtractParams),
                           ("min_frames", ExtractParams), ("margin", CropParams)]:  # fmt: skip
        assert RgbFeatureSpec.model_fields[field].metadata == section.model_fields[field].metadata, field
    assert LandmarkFeatureSpec.model_fields["max_gap"].metadata == LandmarksParams.model_fields["max_gap"].metadata


def test_the_landmark_spec_records_its_extractor() -> None:
    spec = holistic_spec(model_complexity=0, face=True, mediapipe_version="0.10.14")
    assert (spec.layout, spec.num_joints, spec.channels) == ("holistic_face", 93, 4)
    extractor = spec.to_json()["extractor"]
    assert extractor["name"] == "mediapipe-holistic" and extractor["mediapipe_version"] == "0.10.14"
    assert extractor["model_complexity"] == 0
    assert hands_spec().to_json()["extractor"] == {"name": "mediapipe-hands-files", "source": "wlasl-hand-keypoints"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"frame_size": 8}, "x.json: invalid feature spec: frame_size: Input should be greater than or equal to 16 (got 8)"),
        ({"seq_len": 64}, "stored_frames (32) must be >= seq_len (64)"),
        ({"kind": "audio"}, "kind: Input tag 'audio' found using 'kind' does not match"),
        ({"mean": [0.5, 0.5, 0.5]}, "mean: Extra inputs are not permitted"),  # the model's input config is not the spec's
        ({"version": 2}, "x.json: feature spec version 2; this signflow reads version 1"),
        ({"version": None}, "x.json: an unversioned feature spec, written before signflow versioned them; re-run extract"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_file_and_field(change: dict, message: str) -> None:
    with pytest.raises(FeatureSpecError) as caught:
        load_spec({**rgb_spec().to_json(), **change}, origin="x.json")
    assert message in str(caught.value)


def test_landmark_spec_must_agree_with_its_layout() -> None:
    spec = holistic_spec().to_json()
    with pytest.raises(FeatureSpecError, match="num_joints 42 does not fit layout 'holistic' \\(75\\)"):
        load_spec({**spec, "num_joints": 42})
    with pytest.raises(FeatureSpecError, match="layout 'hands' cannot come from the mediapipe-holistic extractor"):
        load_spec({**spec, "layout": "hands", "num_joints": 42})
    unversioned = {key: value for key, value in spec["extractor"].items() if key != "mediapipe_version"}
    with pytest.raises(FeatureSpecError, match="mediapipe_version: Field required"):
        load_spec({**spec, "extractor": unversioned})


def test_missing_or_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FeatureSpecError, match="feature spec not found; run the extract stage first"):
        load_spec(tmp_path)
    (tmp_path / SPEC_FILE).write_text("{not json")
    with pytest.raises(FeatureSpecError, match=f"{SPEC_FILE}: not valid JSON"):
        load_spec(tmp_path)
    (tmp_path / SPEC_FILE).write_text("[1, 2]")
    with pytest.raises(FeatureSpecError, match="a feature spec is a JSON object, got list"):
        load_spec(tmp_path)


def test_one_seq_len_pair_and_old_params_are_told_where_it_went() -> None:
    assert "seq_len" not in LandmarksParams.model_fields and "stored_frames" not in LandmarksParams.model_fields
    with pytest.raises(ParamsError) as caught:
        parse_params({"landmarks": {"seq_len": 32, "stored_frames": 64}}, "old.yaml")
    assert "landmarks.seq_len: moved to extract.seq_len" in str(caught.value)
    assert "landmarks.stored_frames: moved to extract.stored_frames" in str(caught.value)


# --------------------------------------------------------------------------- model files and Bentos


def _tamper(path: Path, **changes: object) -> None:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_model_file_carries_the_spec_and_refuses_a_bad_one(tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "models")
    _, meta = load_model_file(folder / "model.pt")
    assert meta["feature_spec"] == load_spec(folder) == rgb_spec(seq_len=4, stored_frames=8, frame_size=32)
    spec = torch.load(folder / "model.pt", weights_only=True)["feature_spec"]
    _tamper(folder / "model.pt", feature_spec={**spec, "frame_size": 8})
    expected = f"{folder / 'model.pt'} (its feature_spec): invalid feature spec: frame_size"
    with pytest.raises(FeatureSpecError, match=expected.replace("(", "\\(").replace(")", "\\)")):
        Predictor.load(folder)  # evaluate and the model service load through here


def test_model_file_from_before_the_spec_says_to_retrain(tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "models")
    _tamper(folder / "model.pt", format_version=1, preprocess={"seq_len": 4, "layout": "TCHW"})
    with pytest.raises(ValueError, match="model file version 1, this signflow reads 2; re-run the train stage"):
        load_model_file(folder / "model.pt")


def test_package_refuses_a_model_whose_spec_does_not_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    folder = make_model_dir(tmp_path / "models")
    spec = torch.load(folder / "model.pt", weights_only=True)["feature_spec"]
    _tamper(folder / "model.pt", feature_spec={**spec, "version": 7})
    candidate = packaging.Candidate(name="current", model_dir=folder, metrics={"test_top1": 0.5}, value=0.5)
    with pytest.raises(FeatureSpecError, match="feature spec version 7"):
        packaging.save_to_store(candidate, Params(), reason="test")
    assert not (tmp_path / "bentoml" / "models").exists()
