"""The crop -> extract files: what crop writes is what both extractors read; bad lines are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signflow import crop, video
from signflow.extract.plans import (
    PLANS_NAME,
    SKIPPED_NAME,
    Plan,
    carried_skips,
    read_plans,
    read_skipped,
    write_skipped,
)
from signflow.splits import Record


def _record(video_id: str, split: str = "train") -> Record:
    return Record(video_id=video_id, gloss="book", label=0, signer="s1", split=split, frame_start=3,
                  frame_end=-1, bbox=(1.0, 2.0, 30.0, 40.0), fps=25.0, file=f"videos/{video_id}.mp4")  # fmt: skip


def test_crop_writes_what_extract_reads(tmp_path: Path) -> None:
    plan = Plan("a", 0, "book", "train", "videos/a.mp4", 2, None, [1, 2, 30, 40], 64, 48, 25.0, 20, ["clamped"])
    results = [
        (_record("a"), plan, None),
        (_record("gone"), None, video.VideoError("missing", "not downloaded, too")),
    ]
    summary = crop.write_plans(results, tmp_path / "crop")
    assert summary["planned"] == 1 and summary["skipped"] == 1
    assert read_plans(tmp_path / "crop" / PLANS_NAME) == [plan]
    carried = carried_skips(tmp_path / "crop" / PLANS_NAME)
    assert carried == [{"video_id": "gone", "reason": "missing", "detail": "not downloaded, too"}]
    # One line format for every skipped list (crop's, extract's, the hand keypoint converter's).
    assert (tmp_path / "crop" / SKIPPED_NAME).read_bytes() == b'video_id,reason,detail\ngone,missing,"not downloaded, too"\n'


def test_plan_lines_are_validated_with_line_and_field(tmp_path: Path) -> None:
    good = {"video_id": "a", "label": 0, "gloss": "book", "split": "train", "file": "a.mp4", "start": 0,
            "stop": None, "box": None}  # fmt: skip
    path = tmp_path / PLANS_NAME
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "label": "seven"}) + "\n")
    with pytest.raises(ValueError, match=r"plans.jsonl:3: invalid plan: label: .*integer"):
        read_plans(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "file"}) + "\n")
    with pytest.raises(ValueError, match=r"plans.jsonl:1: invalid plan: file: Field required"):
        read_plans(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match=r"plans.jsonl:1: not valid JSON"):
        read_plans(path)
    path.write_text(json.dumps(good) + "\n")
    (plan,) = read_plans(path)
    assert (plan.width, plan.num_frames, plan.notes) == (0, 0, [])  # probe fields unknown: 0
    with pytest.raises(FileNotFoundError, match="run the crop stage first"):
        read_plans(tmp_path / "nowhere" / PLANS_NAME)


def test_skipped_lists_round_trip_and_refuse_other_files(tmp_path: Path) -> None:
    rows = [{"video_id": "a", "reason": "corrupt", "detail": 'bad "moov" atom\nat byte 9'}]
    write_skipped(tmp_path / SKIPPED_NAME, rows)
    assert read_skipped(tmp_path / SKIPPED_NAME) == rows
    assert read_skipped(tmp_path / "absent.csv") == []
    (tmp_path / "other.csv").write_text("video_id,status\na,ok\n")
    with pytest.raises(ValueError, match=r"other.csv: not a skipped list \(no reason, detail column"):
        read_skipped(tmp_path / "other.csv")


def test_extract_stage_names_the_bad_plan_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stages import extract as extract_stage

    (tmp_path / "raw").mkdir()
    (tmp_path / "crop").mkdir()
    (tmp_path / "crop" / PLANS_NAME).write_text('{"video_id": "a", "label": 0}\n')
    (tmp_path / "params.yaml").write_text("{}\n")
    code = extract_stage.main(["--params", str(tmp_path / "params.yaml"), "--raw", str(tmp_path / "raw"),
                               "--crop", str(tmp_path / "crop"), "--out", str(tmp_path / "features"),
                               "--report", str(tmp_path / "extract.json"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "plans.jsonl:1: invalid plan: gloss: Field required" in err and "Traceback" not in err
    assert not (tmp_path / "features").exists()
