"""Crop plans: WLASL frame ranges, bbox margin/square/clipping and its defects, the crop stage."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from signflow import crop, splits
from signflow.config import CropParams
from signflow.index import GlossEntry, Instance, load_index, recorded_probes, write_index
from signflow.sources.probes import probe_file
from signflow.splits import Record
from stages import crop as crop_stage

SQUARE = CropParams(use_bbox=True, margin=0.0, square=True)
PLAIN = CropParams(use_bbox=True, margin=0.0, square=False)


@pytest.mark.parametrize(
    ("frame_start", "frame_end", "expected"),
    [
        (1, -1, (0, None)),  # whole video
        (1, 57, (0, 57)),  # 1-based inclusive 1..57 = 0-based [0, 57): 57 frames
        (2055, 2111, (2054, 2111)),  # the WLASL 63185 example: 57 frames
        (0, 10, (0, 10)),  # a 0 start (bad data) is treated as the first frame
    ],
)
def test_frame_range_converts_wlasl_to_half_open(frame_start: int, frame_end: int, expected: tuple) -> None:
    assert crop.frame_range(frame_start, frame_end) == expected


def test_box_with_margin_and_no_square() -> None:
    box, notes = crop.crop_box([10, 20, 30, 60], 100, 100, CropParams(margin=0.1, square=False))
    assert box == (8, 16, 32, 64) and notes == []


def test_square_box_is_centred() -> None:
    box, _ = crop.crop_box([40, 20, 60, 80], 200, 100, SQUARE)  # 20 x 60 -> 60 x 60 around x=50
    assert box == (20, 20, 80, 80)


def test_square_box_is_shifted_inside_the_frame_rather_than_cut() -> None:
    box, _ = crop.crop_box([0, 0, 10, 40], 100, 50, SQUARE)  # would start at x=-15
    assert box == (0, 0, 40, 40)


def test_square_larger_than_the_frame_is_clipped() -> None:
    box, _ = crop.crop_box([10, 0, 90, 30], 100, 30, SQUARE)
    assert box == (10, 0, 90, 30)  # height cannot grow: clipped, extract letterboxes


def test_box_partly_outside_is_clipped() -> None:
    box, notes = crop.crop_box([-50, -10, 40, 200], 64, 48, PLAIN)
    assert box == (0, 0, 40, 48) and notes == []


@pytest.mark.parametrize(
    ("bbox", "note"),
    [
        (None, "no bbox"),
        ([200, 200, 300, 300], "outside"),
        ([-30, -30, -1, -1], "outside"),
        ([10, 10, 10, 30], "zero-area"),
        ([10, 10, 30, 10], "zero-area"),
        ([float("nan"), 0, 10, 10], "non-finite"),
    ],
)
def test_unusable_boxes_fall_back_to_full_frame_with_a_note(bbox: list | None, note: str) -> None:
    box, notes = crop.crop_box(bbox, 64, 48, PLAIN)
    assert box is None and len(notes) == 1 and note in notes[0]


def test_swapped_corners_are_reordered() -> None:
    box, notes = crop.crop_box([30, 40, 10, 20], 64, 48, PLAIN)
    assert box == (10, 20, 30, 40) and "swapped" in notes[0]


def test_use_bbox_false_and_full_frame_box_mean_no_crop() -> None:
    assert crop.crop_box([1, 1, 20, 20], 64, 48, CropParams(use_bbox=False)) == (None, [])
    assert crop.crop_box([0, 0, 64, 48], 64, 48, PLAIN) == (None, [])


def _record(video_id: str, file: str, frame_start: int = 1, frame_end: int = -1, bbox=None) -> Record:
    return Record(video_id, "g", "1", "train", frame_start, frame_end, bbox, 25.0, file, label=0)


def test_plan_notes_a_frame_end_past_the_video(make_video, tmp_path: Path) -> None:
    path, _ = make_video("v.mp4", num_frames=10)
    plan = crop.plan_video(_record("v", path.name, 3, 40, (8, 4, 40, 44)), tmp_path, SQUARE)
    assert (plan.start, plan.stop) == (2, 40)  # kept; extract clamps to the decoded length
    assert plan.width == 64 and plan.height == 48 and plan.num_frames == 10
    assert any("past" in note for note in plan.notes)
    assert plan.box == [4, 4, 44, 44]


def test_stage_plans_good_videos_and_lists_unreadable_ones(make_video, tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    good, _ = make_video("good.mp4", num_frames=6)
    good.rename(raw / "videos" / "good.mp4")
    (raw / "videos" / "empty.mp4").write_bytes(b"")
    (raw / "videos" / "text.mp4").write_text("not a video at all\n" * 20)
    result = splits.SplitResult(
        [
            _record("good", "videos/good.mp4", bbox=(0, 0, 10, 10)),
            _record("empty", "videos/empty.mp4"),
            _record("text", "videos/text.mp4"),
            _record("gone", "videos/gone.mp4"),
        ],
        ["g"],
    )
    splits.write_outputs(result, tmp_path / "split")
    params = tmp_path / "params.yaml"
    params.write_text("crop: {margin: 0.5, square: true}\n")
    argv = ["--params", str(params), "--raw", str(raw), "--split", str(tmp_path / "split"),
            "--out", str(tmp_path / "crop")]
    assert crop_stage.main(argv) == 0
    plans = [json.loads(line) for line in (tmp_path / "crop" / "plans.jsonl").read_text().splitlines()]
    assert [p["video_id"] for p in plans] == ["good"]
    assert plans[0]["box"] == [0, 0, 20, 20] and plans[0]["start"] == 0 and plans[0]["stop"] is None
    skipped = {row["video_id"]: row["reason"] for row in csv.DictReader(open(tmp_path / "crop" / "skipped.csv"))}
    assert skipped == {"empty": "empty", "text": "not_video", "gone": "missing"}
    assert "1 plans" in capsys.readouterr().out


def test_stage_without_manifest_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "raw").mkdir()
    argv = ["--raw", str(tmp_path / "raw"), "--split", str(tmp_path / "nope"), "--out", str(tmp_path / "crop")]
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    assert crop_stage.main(["--params", str(params), *argv]) == 2
    err = capsys.readouterr().err
    assert "run the split stage first" in err and "Traceback" not in err
    assert not (tmp_path / "crop").exists()


def _clip_records(clips: Path) -> list[Record]:
    """Every real clip of ../shared/data/wlasl-clips as a manifest record (its real bbox, when it has one)."""
    with open(clips / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        Record(row["video_id"], row["gloss"], row["signer_id"], row["split_wlasl2000"], 3, 40,
               tuple(json.loads(row["bbox"])) if row["bbox"] else (10, 10, 200, 150), None,
               f"{row['video_id']}.mp4", label=number)
        for number, row in enumerate(rows)
    ]


def test_plans_from_recorded_probes_equal_plans_from_probing(shared_data: Path, tmp_path: Path) -> None:
    """The guarantee that lets crop read index.json alone: byte-equal plans.jsonl on real WLASL clips
    (codecs, sizes 288x192 to 1920x1080, fractional frame rates), probes through an index.json round trip."""
    clips = shared_data / "wlasl-clips"
    records = _clip_records(clips)
    params = CropParams(use_bbox=True, margin=0.1, square=True)
    crop.write_plans(crop.plan_all(records, clips, params), tmp_path / "probed")  # how crop worked before
    entries = [GlossEntry(gloss="g", instances=[
        Instance(video_id=r.video_id, file=r.file, probe=probe_file(clips / r.file)) for r in records])]
    write_index(entries, tmp_path / "index.json")
    recorded = recorded_probes(load_index(tmp_path / "index.json"))
    crop.write_plans(crop.plan_all(records, None, params, recorded=recorded), tmp_path / "recorded")
    probed = (tmp_path / "probed" / crop.PLANS_NAME).read_bytes()
    assert probed.count(b"\n") == len(records) > 100
    assert (tmp_path / "recorded" / crop.PLANS_NAME).read_bytes() == probed
    assert (tmp_path / "recorded" / crop.SKIPPED_NAME).read_bytes() == (tmp_path / "probed" / crop.SKIPPED_NAME).read_bytes()


def test_a_record_without_a_probe_is_probed_and_says_so(make_video, tmp_path: Path) -> None:
    path, _ = make_video("v.mp4", num_frames=10)
    record = _record("v", path.name, 3, 40, (8, 4, 40, 44))
    [(_, probed, _)] = crop.plan_all([record], tmp_path, SQUARE, recorded={})
    assert probed.num_frames == 10 and probed.notes[-1] == "no probe recorded in index.json: probed the video"
    assert probed.notes[:-1] == crop.plan_video(record, tmp_path, SQUARE).notes
    [(_, plan, error)] = crop.plan_all([record], None, SQUARE, recorded={})  # and no videos to probe
    assert plan is None and error.reason == "missing" and "re-run the download stage" in error.detail


def test_stage_plans_from_the_index_alone(make_video, tmp_path: Path, capsys) -> None:
    """No videos folder at all: crop reads the probes download recorded, never a video."""
    path, _ = make_video("good.mp4", num_frames=6)
    probe = probe_file(path)
    path.unlink()
    write_index([GlossEntry(gloss="g", instances=[
        Instance(video_id="good", file="videos/good.mp4", probe=probe), Instance(video_id="old", file="videos/old.mp4"),
    ])], tmp_path / "index.json")
    splits.write_outputs(
        splits.SplitResult([_record("good", "videos/good.mp4", bbox=(0, 0, 10, 10)), _record("old", "videos/old.mp4")],
                           ["g"]),
        tmp_path / "split",
    )
    params = tmp_path / "params.yaml"
    params.write_text("crop: {margin: 0.5, square: true}\n")
    argv = ["--params", str(params), "--index", str(tmp_path / "index.json"), "--split", str(tmp_path / "split"),
            "--out", str(tmp_path / "crop")]
    assert crop_stage.main(argv) == 0
    [plan] = [json.loads(line) for line in (tmp_path / "crop" / "plans.jsonl").read_text().splitlines()]
    assert (plan["video_id"], plan["box"], plan["width"], plan["num_frames"]) == ("good", [0, 0, 20, 20], 64, 6)
    skipped = {row["video_id"]: row["reason"] for row in csv.DictReader(open(tmp_path / "crop" / "skipped.csv"))}
    assert skipped == {"old": "missing"}  # an index from before probes, and no videos given
    assert "1 plans" in capsys.readouterr().out
    argv[argv.index("--index") + 1] = str(tmp_path / "nope.json")
    assert crop_stage.main(argv) == 2
    assert "nope.json: index not found; run the download stage first" in capsys.readouterr().err
