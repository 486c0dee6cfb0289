"""Predictor (the serving and evaluation path) and the evaluate stage, on tiny real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from feature_specs import rgb_spec

from signflow.config import ModelParams
from signflow.inference import Predictor
from signflow.models import build_model, save_model_file
from signflow.preprocess import decode_to_stored
from signflow.sampling import clip_indices, uniform_indices
from signflow.shards import ShardWriter
from signflow.transforms import input_config_for, to_model_input
from signflow.video import VideoError
from stages import evaluate as evaluate_stage

GLOSSES = ["book", "drink", "go"]
PREPROCESS = rgb_spec(seq_len=4, stored_frames=8, frame_size=16, use_bbox=True)


def write_model(folder: Path, arch: str = "cnn_lstm", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model_params = ModelParams.model_validate({"arch": arch, "cnn_lstm": {"hidden": 8, "spatial_grid": 1}})
    seq_len = 8 if arch != "cnn_lstm" else PREPROCESS.seq_len
    model = build_model(model_params, len(GLOSSES), seq_len=seq_len, frame_size=PREPROCESS.frame_size)
    # What the train stage records: extract's feature spec + the arch's normalisation and layout.
    save_model_file(
        folder / "model.pt", model, arch=arch, model_params=model_params, num_classes=len(GLOSSES),
        label_map=GLOSSES, feature_spec=PREPROCESS.model_copy(update={"seq_len": seq_len}),
        input_config=input_config_for(arch),
    )  # fmt: skip
    return model.eval()


def stored_batch(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, PREPROCESS.stored_frames, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ["cnn_lstm", "r3d_18"])
def test_logits_equal_the_training_evaluation_path(tmp_path: Path, arch: str) -> None:
    """clips=1: uniform seq_len frames -> to_model_input -> model, exactly what training validates with."""
    model = write_model(tmp_path, arch)
    predictor = Predictor.load(tmp_path)
    batch = stored_batch(3)
    seq_len = predictor.seq_len
    expected = model(to_model_input(batch[:, uniform_indices(8, seq_len)], input_config_for(arch)))
    np.testing.assert_allclose(predictor.logits(batch), expected.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_clip_averaging_is_the_mean_over_windows(tmp_path: Path) -> None:
    model = write_model(tmp_path)
    predictor = Predictor.load(tmp_path)
    batch = stored_batch(2)
    windows = clip_indices(8, 4, 3)
    cfg = input_config_for("cnn_lstm")
    expected = torch.stack([model(to_model_input(batch[:, w], cfg)) for w in windows]).mean(0)
    np.testing.assert_allclose(predictor.logits(batch, clips=3, batch_size=4), expected.detach().numpy(), atol=1e-5)


def test_predict_top_k(tmp_path: Path) -> None:
    write_model(tmp_path)
    predictor = Predictor.load(tmp_path / "model.pt")
    single = predictor.predict(stored_batch(1)[0], k=2)
    assert len(single) == 2 and single[0].probability >= single[1].probability
    everything = predictor.predict(stored_batch(2), k=10)
    assert len(everything) == 2 and all(len(row) == 3 for row in everything)
    for row in everything:
        assert sorted(p.gloss for p in row) == sorted(GLOSSES)
        assert sum(p.probability for p in row) == pytest.approx(1.0, abs=1e-5)
    assert single[0].to_dict().keys() == {"label", "gloss", "probability"}


def test_preprocess_video_uses_the_extract_code(tmp_path: Path, make_video) -> None:
    write_model(tmp_path)
    predictor = Predictor.load(tmp_path)
    path, frames = make_video(num_frames=20, height=48, width=64)
    box = (8, 4, 56, 44)
    stored = predictor.preprocess_video(path, box=box)
    expected, _ = decode_to_stored(path, box=box, config=PREPROCESS)
    assert stored.shape == (8, 16, 16, 3) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(predictor.preprocess_frames(frames, box=box), stored)  # lossless video
    top = predictor.predict_video(path, box=box, k=3)
    assert [p.gloss for p in top] == [p.gloss for p in predictor.predict(stored, k=3)]


def test_bad_videos_and_inputs_fail_clearly(tmp_path: Path, make_video) -> None:
    write_model(tmp_path)
    predictor = Predictor.load(tmp_path)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    with pytest.raises(VideoError) as error:
        predictor.preprocess_video(not_video)
    assert error.value.reason == "not_video"
    path, _ = make_video(num_frames=20)
    with pytest.raises(VideoError) as error:
        predictor.preprocess_video(path, max_frames=10)
    assert error.value.reason == "too_large"
    with pytest.raises(ValueError, match="expected a batch of stored clips with 5 dims"):
        predictor.logits(stored_batch(1)[0])
    with pytest.raises(FileNotFoundError, match="model file not found"):
        Predictor.load(tmp_path / "nowhere")


# --------------------------------------------------------------------------- evaluate stage


def write_features(folder: Path, counts: dict[str, int], glosses: list[str] = GLOSSES) -> None:
    rng = np.random.default_rng(1)
    for split, count in counts.items():
        fields = {"frames": (PREPROCESS.stored_shape, "uint8")}
        with ShardWriter(folder / split, fields, metadata={"kind": "video", "preprocess": PREPROCESS.to_json()}) as w:
            for i in range(count):
                clip = rng.integers(0, 256, PREPROCESS.stored_shape, dtype=np.uint8)
                label = i % len(glosses)
                w.add({"frames": clip}, video_id=f"{split}-{i}", label=label, gloss=glosses[label])


def write_params(path: Path, **evaluate) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"evaluate": {"device": "cpu", **evaluate}}))
    return path


def test_evaluate_stage_writes_consistent_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_model(tmp_path / "models")
    write_features(tmp_path / "features", {"test": 7, "val": 4, "train": 0})
    params = write_params(tmp_path / "params.yaml", clips=2, top_k=[1, 2])
    out = tmp_path / "reports"
    argv = ["--params", str(params), "--features", str(tmp_path / "features"), "--model", str(tmp_path / "models"),
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert evaluate_stage.main(argv) == 0
    assert "evaluate (cnn_lstm, clips=2): test_top1=" in capsys.readouterr().out

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == 7 and metrics["val_samples"] == 4
    predictor = Predictor.load(tmp_path / "models")
    from signflow.shards import ShardReader

    reader = ShardReader(tmp_path / "features" / "test")
    logits = predictor.logits(np.stack([reader.read(i) for i in range(len(reader))]), clips=2)
    labels = np.array([item["label"] for item in reader.items])
    assert metrics["test_top1"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    assert {"test_top2", "test_per_class_top1", "test_macro_f1", "val_top1"} <= set(metrics)
    for name in ("confusion.csv", "confusion.png", "per_class.csv", "predictions.csv", "prediction_reference.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    "setup,message",
    [
        ("no_model", "model file not found"),
        ("no_split", "split folder missing"),
        ("other_glosses", "not in the model's label map"),
        ("bad_params", "evaluate.clips"),
        ("empty", "none of the splits"),
    ],
)
def test_evaluate_stage_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    if setup != "no_model":
        write_model(tmp_path / "models")
    counts = {"test": 0, "val": 0} if setup == "empty" else {"test": 3, "val": 3}
    if setup == "no_split":
        counts.pop("val")
    write_features(tmp_path / "features", counts, ["x", "y", "z"] if setup == "other_glosses" else GLOSSES)
    params = write_params(tmp_path / "params.yaml", **({"clips": 0} if setup == "bad_params" else {}))
    argv = ["--params", str(params), "--features", str(tmp_path / "features"), "--model", str(tmp_path / "models"),
            "--out", str(tmp_path / "reports"), "--no-progress"]  # fmt: skip
    assert evaluate_stage.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("evaluate: error:") and message in err
    assert not (tmp_path / "reports" / "metrics.json").exists()
