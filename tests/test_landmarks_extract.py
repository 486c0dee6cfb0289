"""Real MediaPipe Holistic through the isolated ``.venv-landmarks`` on real signers.

Skips (with the reason) when the isolated env is missing: create it with ``make venv-landmarks``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from signflow import video
from signflow.config import LandmarksParams, parse_params
from signflow.extract.landmarks import extract_all
from signflow.extract.plans import Plan
from signflow.feature_spec import load_spec
from signflow.landmarks.layout import (
    HAND_JOINTS,
    HAND_WRIST,
    LEFT_ELBOW,
    LEFT_SHOULDER,
    LEFT_WRIST,
    POSE_JOINTS,
    RIGHT_ELBOW,
    RIGHT_SHOULDER,
    RIGHT_WRIST,
    get_layout,
)
from signflow.landmarks.pool import (
    LandmarkEnvError,
    LandmarkError,
    WorkerPool,
    extract_video,
    installed_mediapipe_version,
    landmarks_python,
)
from signflow.shards import ShardReader

HOLISTIC = get_layout("holistic")
HANDS = {"left": (POSE_JOINTS, LEFT_WRIST), "right": (POSE_JOINTS + HAND_JOINTS, RIGHT_WRIST)}
# Three real WLASL clips of different sizes and signers (manifest.csv of wlasl-clips).
REAL_CLIPS = ("01377", "01065", "01422")


@pytest.fixture(scope="module")
def landmark_python() -> Path:
    try:
        return landmarks_python()
    except LandmarkEnvError as error:
        pytest.skip(str(error))


def test_missing_environment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LandmarkEnvError, match="make venv-landmarks"):
        WorkerPool(LandmarksParams(), python=str(tmp_path / "no-python"))
    plans = tmp_path / "plans.jsonl"
    plans.write_text(json.dumps({"video_id": "a", "label": 0, "split": "train", "file": "a.mp4"}) + "\n")
    with pytest.raises(LandmarkEnvError):
        extract_all(plans, tmp_path, tmp_path / "features", parse_params({}), python=str(tmp_path / "no-python"))
    assert not (tmp_path / "features").exists()


def test_extract_stage_without_the_environment_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from stages import extract as extract_stage

    monkeypatch.setenv("SIGNFLOW_LANDMARKS_PYTHON", str(tmp_path / "no-python"))
    params = tmp_path / "params.yaml"
    params.write_text("extract:\n  representation: landmarks\n")
    (tmp_path / "raw").mkdir()
    (tmp_path / "crop").mkdir()
    plan = Plan("a", 0, "book", "train", "a.mp4", 0, None, None, 64, 48, 25.0, 20)
    (tmp_path / "crop" / "plans.jsonl").write_text(plan.to_json() + "\n")
    code = extract_stage.main(["--params", str(params), "--raw", str(tmp_path / "raw"), "--crop",
                               str(tmp_path / "crop"), "--out", str(tmp_path / "features"), "--report",
                               str(tmp_path / "extract.json"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "make venv-landmarks" in err and "Traceback" not in err
    assert not (tmp_path / "features").exists() and not (tmp_path / "extract.json").exists()


def check_plausible(points: np.ndarray, mask: np.ndarray, width: int, height: int, name: str) -> dict[str, float]:
    """Anatomy checks in pixels (image y grows downward); returns the detection rates."""
    pose_seen = mask[:, LEFT_SHOULDER] & mask[:, RIGHT_SHOULDER]
    rates = {"pose": float(pose_seen.mean())}
    pixels = points[..., :2] * np.array([width, height], dtype=np.float32)
    left, right = pixels[pose_seen, LEFT_SHOULDER], pixels[pose_seen, RIGHT_SHOULDER]
    shoulder_width = np.median(np.linalg.norm(left - right, axis=1))
    assert shoulder_width > 0.05 * min(width, height), f"{name}: shoulders only {shoulder_width:.0f}px apart"
    # Level-ish: the shoulder line tilts by well under half a shoulder width.
    assert np.median(np.abs(left[:, 1] - right[:, 1])) < 0.35 * shoulder_width, f"{name}: shoulders not level"
    # The signer faces the camera: their left shoulder is on the image's right.
    assert np.median(left[:, 0] - right[:, 0]) > 0, f"{name}: left/right shoulders swapped"
    for shoulder, elbow in ((LEFT_SHOULDER, LEFT_ELBOW), (RIGHT_SHOULDER, RIGHT_ELBOW)):
        below = np.median(pixels[pose_seen, elbow, 1] - pixels[pose_seen, shoulder, 1])
        assert below > 0, f"{name}: elbow above shoulder"
    for side, (start, pose_wrist) in HANDS.items():
        seen = mask[:, start + HAND_WRIST] & mask[:, pose_wrist]
        rates[f"{side}_hand"] = float(mask[:, start].mean())
        if seen.sum() >= 3:
            distance = np.linalg.norm(pixels[seen, start + HAND_WRIST] - pixels[seen, pose_wrist], axis=1)
            assert np.median(distance) < 0.5 * shoulder_width, f"{name}: {side} hand far from the pose wrist"
    rates["any_hand"] = float((mask[:, HANDS["left"][0]] | mask[:, HANDS["right"][0]]).mean())
    # Missing means masked *and* zero: never a zero that looks like a point at the image corner.
    assert not points[~mask].any()
    return rates


@pytest.mark.slow  # real MediaPipe on a real clip (~6 s)
def test_signer_video_pose_and_hands_are_plausible(landmark_python: Path, shared_data: Path) -> None:
    path = shared_data / "misc" / "signer_test_video.mp4"
    points, mask = extract_video(path, python=str(landmark_python))
    assert points.shape == (58, HOLISTIC.num_joints, 3) and mask.shape == (58, HOLISTIC.num_joints)
    assert points.dtype == np.float32 and mask.dtype == bool
    rates = check_plausible(points, mask, 540, 720, path.name)
    assert rates["pose"] >= 0.95, rates
    # The signing hand leaves this tall frame at the bottom for part of the clip.
    assert rates["any_hand"] >= 0.25, rates


@pytest.mark.slow
def test_real_wlasl_clips_and_bad_files_through_one_pool(
    landmark_python: Path, shared_data: Path, tmp_path: Path
) -> None:
    clips = shared_data / "wlasl-clips"
    with open(clips / "manifest.csv", newline="", encoding="utf-8") as handle:
        manifest = {row["video_id"]: row for row in csv.DictReader(handle)}
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
    totals = {"pose": [], "any_hand": []}
    with WorkerPool(LandmarksParams(num_workers=2), python=str(landmark_python)) as pool:
        with pytest.raises(LandmarkError) as error:
            pool.extract(broken)
        assert error.value.reason in ("not_video", "corrupt")
        # A worker killed between clips is replaced; the next clip still works.
        pool._workers[0].process.kill()
        pool._workers[0].process.wait()
        for video_id in REAL_CLIPS:
            clip = pool.extract(clips / f"{video_id}.mp4")
            row = manifest[video_id]
            # Every decoded frame gets a row (the manifest's ffprobe count may differ by a few).
            assert len(clip.points) == sum(1 for _ in video.iter_frames(clips / f"{video_id}.mp4"))
            assert (clip.width, clip.height) == (int(row["width"]), int(row["height"]))
            rates = check_plausible(clip.points, clip.mask, clip.width, clip.height, video_id)
            for key in totals:
                totals[key].append(rates[key])
    assert min(totals["pose"]) >= 0.9, totals
    assert np.mean(totals["any_hand"]) >= 0.6, totals


@pytest.mark.slow
def test_extract_all_writes_the_stage_outputs(landmark_python: Path, shared_data: Path, tmp_path: Path) -> None:
    clips = shared_data / "wlasl-clips"
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "empty.mp4").write_bytes(b"")
    plans = [
        {"video_id": "01377", "label": 1, "gloss": "afraid", "split": "train", "file": str(clips / "01377.mp4"),
         "start": 2, "stop": 20, "box": None},
        {"video_id": "01422", "label": 0, "gloss": "a", "split": "test", "file": str(clips / "01422.mp4"),
         "start": 0, "stop": None, "box": [80, 0, 560, 480]},
        {"video_id": "empty", "label": 0, "gloss": "a", "split": "train", "file": "empty.mp4", "start": 0,
         "stop": None, "box": None},
    ]  # fmt: skip
    crop = tmp_path / "crop"
    crop.mkdir()
    (crop / "plans.jsonl").write_text("".join(json.dumps(plan) + "\n" for plan in plans))
    (crop / "skipped.csv").write_text("video_id,reason,detail\ngone,missing,not downloaded\n")
    params = parse_params(
        {"extract": {"representation": "landmarks", "stored_frames": 24, "seq_len": 16}, "landmarks": {"num_workers": 2}}
    )
    out = tmp_path / "features"
    summary = extract_all(crop / "plans.jsonl", tmp_path / "raw", out, params, python=str(landmark_python))

    assert summary["per_split"] == {"train": 1, "val": 0, "test": 1}
    assert summary["skipped_by_reason"] == {"missing": 1, "empty": 1}
    assert summary["source_frames"] > 18 and summary["frames_per_s"] > 0
    assert summary["detection_rate"]["pose"] > 0.8
    train = ShardReader(out / "train")
    assert train.metadata["kind"] == "landmarks" and train.metadata["layout"] == "holistic"
    assert train.fields["points"].shape == (24, 75, 3) and train.fields["points"].dtype == "float16"
    item = train.items[0]
    assert item["video_id"] == "01377" and item["source_frames"] == 18 and item["label"] == 1
    test_item = ShardReader(out / "test").items[0]
    assert (test_item["width"], test_item["height"]) == (480, 480)  # the crop box, not the frame
    assert len(ShardReader(out / "val")) == 0
    with open(out / "skipped.csv", newline="") as handle:
        reasons = {row["video_id"]: row["reason"] for row in csv.DictReader(handle)}
    assert reasons == {"gone": "missing", "empty": "empty"}
    assert json.loads((out / "preprocess.json").read_text())["num_joints"] == 75
    spec = load_spec(out)  # the MediaPipe that ran, for serving to compare with its own
    assert spec.extractor.mediapipe_version == installed_mediapipe_version(str(landmark_python)) == "0.10.21"

    from signflow.training.landmark_data import LandmarkDataset

    x, label = LandmarkDataset(out / "train", seq_len=16, train=True, seed=0)[0]
    assert x.shape == (16, 75, 4) and label == 1
