"""Extract: plans -> per-split shards, skipped list with reasons, summary; the stage CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from feature_specs import rgb_spec

from signflow import crop, preprocess
from signflow.extract import rgb as rgb_extract
from signflow.shards import ShardReader
from stages import extract as extract_stage

CFG = rgb_spec(seq_len=4, stored_frames=6, frame_size=16, min_frames=2, square=True)


def _plan(video_id: str, split: str, label: int, file: str, start: int = 0, stop: int | None = None, box=None) -> dict:
    return {"video_id": video_id, "label": label, "gloss": f"g{label}", "split": split, "file": file,
            "start": start, "stop": stop, "box": box, "width": 64, "height": 48, "fps": 25.0, "num_frames": 0,
            "notes": []}


@pytest.fixture
def raw_dir(make_video, tmp_path: Path) -> Path:
    """Six good clips (different content) plus a zero-byte, a text and a one-frame file."""
    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    for i in range(6):
        path, _ = make_video(f"{i}.mp4", num_frames=8 + i, seed=i)
        path.rename(raw / "videos" / f"{i}.mp4")
    (raw / "videos" / "zero.mp4").write_bytes(b"")
    (raw / "videos" / "text.mp4").write_text("no video here\n" * 30)
    one, _ = make_video("one.mp4", num_frames=1)
    one.rename(raw / "videos" / "one.mp4")
    return raw


def _plans() -> list[dict]:
    return [
        _plan("a", "train", 0, "videos/0.mp4", box=[8, 0, 56, 48]),
        _plan("zero", "train", 0, "videos/zero.mp4"),
        _plan("b", "train", 1, "videos/1.mp4", start=2, stop=500),  # frame_end past the end: clamped
        _plan("c", "val", 0, "videos/2.mp4"),
        _plan("text", "val", 1, "videos/text.mp4"),
        _plan("d", "test", 1, "videos/3.mp4"),
        _plan("short", "test", 1, "videos/one.mp4"),
        _plan("e", "train", 1, "videos/4.mp4"),
        _plan("f", "test", 0, "videos/5.mp4"),
    ]


def test_extract_writes_shards_skips_bad_videos_and_reports(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    summary = rgb_extract.extract_features(
        _plans(), raw_dir, out, CFG, num_workers=2, chunk_size=2, shard_bytes=3 * 6 * 16 * 16 * 3,
        carried_skips=[{"video_id": "gone", "reason": "missing", "detail": "not there"}], progress=False,
    )
    assert summary["extracted"] == 6 and summary["skipped"] == 4 and summary["videos"] == 10
    assert summary["per_split"] == {"train": 3, "val": 1, "test": 2}
    assert summary["skipped_by_reason"] == {"missing": 1, "empty": 1, "not_video": 1, "too_short": 1}
    assert summary["source_frames"] == 8 + (9 - 2) + 10 + 11 + 12 + 13
    skipped = list(csv.DictReader(open(out / "skipped.csv", encoding="utf-8")))
    assert [r["video_id"] for r in skipped] == ["gone", "zero", "text", "short"]
    assert all(r["detail"] for r in skipped)
    assert json.loads((out / "preprocess.json").read_text()) == CFG.to_json()

    train = ShardReader(out / "train")
    assert [i["video_id"] for i in train.items] == ["a", "b", "e"]  # plan order
    assert len(train.shards) == 1 and train.metadata["kind"] == "video"
    assert train.items[1]["source_frames"] == 7 and train.items[1]["gloss"] == "g1"
    expected, _ = preprocess.decode_to_stored(raw_dir / "videos/0.mp4", box=[8, 0, 56, 48], config=CFG)
    np.testing.assert_array_equal(train.read(0), expected)
    assert ShardReader(out / "test").fields["frames"].shape == (6, 16, 16, 3)
    assert summary["files"] == sum(1 for p in out.rglob("*") if p.is_file())


def test_output_does_not_depend_on_worker_count(raw_dir: Path, tmp_path: Path) -> None:
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"features{workers}"
        rgb_extract.extract_features(_plans(), raw_dir, out, CFG, num_workers=workers, chunk_size=3, progress=False)
        outputs.append(sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file()))
    assert outputs[0] == outputs[1]


def _files(out: Path) -> list[tuple[Path, bytes]]:
    return sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*") if p.is_file())


def test_frames_cross_processes_through_the_ring_or_pickled_alike(raw_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Workers leave stored clips in shared memory; past RING_MAX_BYTES they are pickled: the same shards."""
    rgb_extract.extract_features(_plans(), raw_dir, tmp_path / "ring", CFG, num_workers=2, chunk_size=2, progress=False)
    monkeypatch.setattr(rgb_extract, "RING_MAX_BYTES", 0)
    rgb_extract.extract_features(_plans(), raw_dir, tmp_path / "pickled", CFG, num_workers=2, chunk_size=2,
                                 progress=False)
    assert _files(tmp_path / "ring") == _files(tmp_path / "pickled")


def test_keeping_freed_memory_is_set_on_glibc_and_skipped_elsewhere() -> None:
    import platform

    assert rgb_extract.keep_freed_memory() is (platform.libc_ver()[0] == "glibc")


def test_empty_split_folder_is_still_written(raw_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "features"
    plans = [p for p in _plans() if p["split"] != "val" or p["video_id"] == "text"]
    summary = rgb_extract.extract_features(plans, raw_dir, out, CFG, progress=False)
    assert summary["per_split"]["val"] == 0 and len(ShardReader(out / "val")) == 0


def _stage_argv(tmp_path: Path, raw: Path, crop_dir: Path, params_text: str) -> list[str]:
    params = tmp_path / "params.yaml"
    params.write_text(params_text)
    return ["--params", str(params), "--raw", str(raw), "--crop", str(crop_dir), "--out", str(tmp_path / "features"),
            "--report", str(tmp_path / "reports" / "extract.json"), "--no-progress"]


def test_stage_end_to_end_from_plans(raw_dir: Path, tmp_path: Path, capsys) -> None:
    crop_dir = tmp_path / "crop"
    crop_dir.mkdir()
    (crop_dir / crop.PLANS_NAME).write_text("".join(json.dumps(p) + "\n" for p in _plans()))
    (crop_dir / crop.SKIPPED_NAME).write_text("video_id,reason,detail\ngone,missing,not there\n")
    params_text = "extract: {seq_len: 2, stored_frames: 4, frame_size: 16, num_workers: 1}\n"
    argv = _stage_argv(tmp_path, raw_dir, crop_dir, params_text)
    assert extract_stage.main(argv) == 0
    report = json.loads((tmp_path / "reports" / "extract.json").read_text())
    assert report["extracted"] == 6 and report["skipped"] == 4  # min_frames 4 by default: "a" (8 frames) is kept
    assert ShardReader(tmp_path / "features" / "train").fields["frames"].shape == (4, 16, 16, 3)
    assert "6 clips" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make_plans", "params_text", "message"),
    [
        (False, "{}\n", "run the crop stage first"),
        (True, "extract: {seq_len: 64, stored_frames: 8}\n", "extract.stored_frames"),
        (True, "extract: {frame_sise: 8}\n", "extract.frame_sise: unknown key"),
    ],
)
def test_stage_errors_are_one_line(
    raw_dir: Path, tmp_path: Path, capsys, make_plans: bool, params_text: str, message: str
) -> None:
    crop_dir = tmp_path / "crop"
    crop_dir.mkdir()
    if make_plans:
        (crop_dir / crop.PLANS_NAME).write_text(json.dumps(_plans()[0]) + "\n")
    assert extract_stage.main(_stage_argv(tmp_path, raw_dir, crop_dir, params_text)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "features").exists()


def test_stage_fails_clearly_when_no_video_could_be_extracted(raw_dir: Path, tmp_path: Path, capsys) -> None:
    crop_dir = tmp_path / "crop"
    crop_dir.mkdir()
    bad = [p for p in _plans() if p["video_id"] in ("zero", "text")]
    (crop_dir / crop.PLANS_NAME).write_text("".join(json.dumps(p) + "\n" for p in bad))
    assert extract_stage.main(_stage_argv(tmp_path, raw_dir, crop_dir, "{}\n")) == 1
    err = capsys.readouterr().err
    assert "none of the 2 planned videos" in err and "skipped.csv" in err
