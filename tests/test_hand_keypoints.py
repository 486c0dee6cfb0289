"""wlasl-hand-keypoints -> landmark shard folders (hands layout), and the dataset over them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from signflow.config import AugmentParams, LandmarkAugmentParams, Params, parse_params
from signflow.feature_spec import HandKeypointFiles, load_spec
from signflow.landmarks import hand_keypoints
from signflow.landmarks.layout import get_layout
from signflow.landmarks.normalize import stored_input
from signflow.shards import ShardReader
from signflow.training.data import DataError, open_split
from signflow.training.landmark_data import LandmarkDataset

PARAMS = parse_params({"extract": {"stored_frames": 16, "seq_len": 8}})
AUGMENT = AugmentParams(landmarks=LandmarkAugmentParams(rotate_deg=5.0, mirror=True))


def keypoint_file(path: Path, frames: int, *, seed: int, left: bool = True, right: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.uniform(0.2, 0.8, size=(frames, 126)).astype(np.float32)
    if not left:
        array[:, :63] = 0.0
    if not right:
        array[:, 63:] = 0.0
    np.save(path, array)
    return array


def write_labels(folder: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(folder / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "video_id", "gloss", "split_wlasl2000", "frames", "dims"])
        for video_id, gloss, split in rows:
            writer.writerow([f"{video_id}.npy", video_id, gloss, split, "", 126])


def test_to_landmarks_marks_absent_hands_missing() -> None:
    array = np.random.default_rng(0).uniform(0.1, 0.9, size=(5, 126)).astype(np.float32)
    array[2, 63:] = 0.0  # right hand absent in frame 2
    points, mask = hand_keypoints.to_landmarks(array)
    assert points.shape == (5, 42, 3) and mask.shape == (5, 42)
    assert not mask[2, 21:].any() and mask[2, :21].all() and mask[[0, 1, 3, 4]].all()
    np.testing.assert_array_equal(points[0, 21], array[0, 63:66])  # right wrist = values 63..65
    with pytest.raises(ValueError, match=r"expected \(T, 126\)"):
        hand_keypoints.to_landmarks(np.zeros((5, 120)))
    with pytest.raises(ValueError, match="NaN"):
        hand_keypoints.to_landmarks(np.full((3, 126), np.nan))


def test_convert_writes_splits_label_map_and_skips_with_reasons(tmp_path: Path) -> None:
    source = tmp_path / "keypoints"
    source.mkdir()
    arrays = {}
    for number, (gloss, split) in enumerate([("go", "train"), ("book", "train"), ("go", "val"), ("book", "test")]):
        arrays[f"v{number}"] = keypoint_file(source / f"v{number}.npy", 5 + 7 * number, seed=number, right=number != 1)
    keypoint_file(source / "orphan.npy", 4, seed=9)  # no labels.csv row
    np.save(source / "bad.npy", np.zeros((4, 10), dtype=np.float32))
    rows = [("v0", "go", "train"), ("v1", "book", "train"), ("v2", "go", "val"), ("v3", "book", "test")]
    write_labels(source, [*rows, ("bad", "go", "train"), ("gone", "book", "train"), ("unlab", "", "")])
    out = tmp_path / "hands"
    summary = hand_keypoints.convert(source, out, PARAMS)

    assert summary["glosses"] == ["book", "go"]
    assert summary["per_split"] == {"train": 2, "val": 1, "test": 1}
    assert json.loads((out / "label_map.json").read_text())["glosses"] == ["book", "go"]
    with open(out / "skipped.csv", newline="") as handle:
        reasons = {row["video_id"]: row["reason"] for row in csv.DictReader(handle)}
    assert reasons == {"unlab": "unlabelled", "orphan": "unlabelled", "bad": "bad_array", "gone": "missing"}

    reader = ShardReader(out / "train")
    assert reader.metadata["kind"] == "landmarks" and reader.metadata["layout"] == "hands"
    assert reader.fields["points"].shape == (16, 42, 3) and reader.fields["mask"].dtype == "bool"
    assert [item["video_id"] for item in reader.items] == ["v0", "v1"]
    assert [item["label"] for item in reader.items] == [1, 0]
    assert reader.items[0]["source_frames"] == 5
    v1_mask = reader.read(1, "mask")
    assert v1_mask[:, :21].all() and not v1_mask[:, 21:].any()  # v1 had no right hand
    # The stored points are the source's, uniformly resampled to stored_frames (float16).
    v1_points = reader.read(1, "points").astype(np.float32)
    source_points = arrays["v1"].reshape(-1, 42, 3)
    np.testing.assert_allclose(v1_points[0, :21], source_points[0, :21], atol=1e-3)
    preprocess = json.loads((out / "preprocess.json").read_text())
    assert preprocess["num_joints"] == 42 and preprocess["channels"] == 4 and preprocess["seq_len"] == 8
    # Recorded truthfully: these landmarks come from files, not from a MediaPipe run here.
    assert load_spec(out).extractor == HandKeypointFiles(source="keypoints")


def test_dataset_through_the_training_entry_point(tmp_path: Path) -> None:
    source = tmp_path / "keypoints"
    source.mkdir()
    for number in range(4):
        keypoint_file(source / f"v{number}.npy", 6 + number, seed=number, left=number % 2 == 0)
    write_labels(source, [(f"v{n}", "go" if n % 2 else "book", "train") for n in range(4)])
    out = tmp_path / "hands"
    hand_keypoints.convert(source, out, PARAMS)

    evaluation = open_split(out / "train", glosses=["book", "go"], seq_len=8, input_config=None, train=False)
    assert isinstance(evaluation, LandmarkDataset) and evaluation.labels == [0, 1, 0, 1]
    # Augmentation is a train knob (train.augment.landmarks): extraction records none of it.
    assert "augment" not in evaluation.reader.metadata
    x, label = evaluation[1]
    assert x.shape == (8, 42, 4) and x.dtype == torch.float32 and label == 1
    assert (x[:, :21] == 0).all()  # v1 has no left hand: zeros and mask 0, never fake points
    assert (x[:, 21:, 3] == 1).all()
    torch.testing.assert_close(evaluation[1][0], x)  # evaluation is deterministic

    training = LandmarkDataset(out / "train", seq_len=8, train=True, seed=3, augment=AUGMENT)
    training.set_epoch(0)
    first = [training[i][0] for i in range(4)]
    torch.testing.assert_close(training[0][0], first[0])  # same (seed, epoch, index): same augmentation
    training.set_epoch(1)
    assert not all(torch.equal(training[i][0], first[i]) for i in range(4))
    assert all(torch.isfinite(sample).all() for sample in first)

    with pytest.raises(DataError, match="unknown split kind|not a landmark split|landmark split folder missing"):
        LandmarkDataset(tmp_path / "nowhere", seq_len=8, train=False)
    with pytest.raises(DataError, match="outside the label map"):
        open_split(out / "train", glosses=["book"], seq_len=8, input_config=None, train=False)


def test_convert_real_hand_keypoints_matches_the_official_split(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "wlasl-hand-keypoints"
    summary = hand_keypoints.convert(source, tmp_path / "hands", Params())
    assert summary["glosses"] == ["book", "friend", "go", "no", "yes"]
    assert summary["per_split"] == {"train": 70, "val": 16, "test": 10}
    assert summary["per_class"] == {"book": 33, "go": 22, "no": 15, "yes": 15, "friend": 11}
    assert summary["skipped"] == 6  # the unlabelled sequences
    # Real MediaPipe Hands output: at least one hand in most frames.
    assert summary["hand_rate"]["left_hand"] + summary["hand_rate"]["right_hand"] > 0.8
    dataset = LandmarkDataset(tmp_path / "hands" / "test", seq_len=32, train=False)
    x, _ = dataset[0]
    assert x.shape == (32, 42, 4)
    # Serving parity: raw keypoints -> stored_input equals what evaluation feeds (dataset at seq_len = stored).
    stored = Params().extract.stored_frames
    item = dataset.reader.items[0]
    raw_points, raw_mask = hand_keypoints.to_landmarks(np.load(source / f"{item['video_id']}.npy"))
    served = stored_input(raw_points, raw_mask, get_layout("hands"), stored_frames=stored, max_gap=dataset.max_gap)
    evaluated = LandmarkDataset(dataset.reader, seq_len=stored, train=False)[0][0].numpy()
    np.testing.assert_allclose(served, evaluated, atol=1e-6)
    seen = x[..., 3] > 0
    # Normalised: centred near the wrists and in shoulder-width units, not [0, 1] image fractions.
    assert x[..., :2][seen].abs().median() < 1.0


def test_cli_reports_a_missing_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = hand_keypoints.main([str(tmp_path / "missing"), str(tmp_path / "out"), "--params", str(tmp_path / "none")])
    assert code == 2
    assert "labels.csv not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("arch", ["landmark_gcn", pytest.param("landmark_lstm", marks=pytest.mark.slow)])
def test_train_and_evaluate_stages_run_on_landmark_features(arch: str, tmp_path: Path) -> None:
    """The video models' train/evaluate stages, unchanged, on hands-layout landmark features."""
    import yaml

    from stages import evaluate as evaluate_stage
    from stages import train as train_stage

    source = tmp_path / "keypoints"
    source.mkdir()
    rows = []
    for number in range(12):
        keypoint_file(source / f"v{number}.npy", 6 + number, seed=number)
        rows.append((f"v{number}", ("book", "go", "yes")[number % 3], ("train", "train", "val", "test")[number % 4]))
    write_labels(source, rows)
    features = tmp_path / "hands"
    hand_keypoints.convert(source, features, PARAMS)
    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "model": {"arch": arch, "landmark": {"hidden": 8, "gcn_channels": 4, "gcn_blocks": 2}},
                "train": {"epochs": 2, "batch_size": 4, "device": "cpu"},
                "evaluate": {"splits": ["test"], "top_k": [1, 2]},
            }
        )
    )
    models = tmp_path / "models"
    args = ["--params", str(params), "--features", str(features), "--labels", str(features / "label_map.json")]
    assert train_stage.main([*args, "--out", str(models), "--no-progress"]) == 0
    reports = tmp_path / "reports"
    code = evaluate_stage.main(
        ["--params", str(params), "--features", str(features), "--model", str(models), "--out", str(reports),
         "--no-progress"]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((reports / "metrics.json").read_text())
    assert 0.0 <= metrics["test_top1"] <= 1.0 and metrics["test_samples"] == 3, metrics
