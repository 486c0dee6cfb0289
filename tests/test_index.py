"""The WLASL_v0.3.json schema: real index files, subsets, round trips and every kind of bad entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signflow.index import (
    IndexFormatError,
    cap_videos,
    check_video_id,
    load_index,
    load_nslt,
    parse_index,
    select_first_glosses,
    select_nslt,
    write_index,
)


def _ids(entries) -> set[str]:
    return {inst.video_id for e in entries for inst in e.instances}


def test_real_index_and_official_subsets(shared_data: Path) -> None:
    wlasl = shared_data / "wlasl"
    first300 = load_index(wlasl / "WLASL_v0.3_first300.json")
    assert len(first300) == 300 and sum(len(e.instances) for e in first300) == 5117
    first100 = load_index(wlasl / "WLASL_v0.3_first100.json")
    assert [e.gloss for e in first100][:3] == ["book", "drink", "computer"]

    nslt100 = load_nslt(wlasl / "nslt_100.json")
    by_nslt = select_nslt(first300, nslt100)
    by_k = select_first_glosses(first300, 100)
    # WLASL100 = the first 100 glosses = the official nslt_100.json, video for video.
    assert _ids(by_nslt) == _ids(by_k) == _ids(first100) == set(nslt100)
    splits = {inst.video_id: inst.split for e in by_nslt for inst in e.instances}
    assert all(splits[vid] == item["subset"] for vid, item in nslt100.items())
    assert sum(1 for s in splits.values() if s == "train") == 1442

    # nslt_300 has one id the index lacks (5118 vs 5117): reported, not fatal.
    assert len(_ids(select_nslt(first300, load_nslt(wlasl / "nslt_300.json")))) == 5117


def test_round_trip_keeps_wlasl_fields(shared_data: Path, tmp_path: Path) -> None:
    entries = load_index(shared_data / "wlasl" / "WLASL_v0.3_first100.json")[:3]
    entries[0].instances[0].file = "videos/69241.mp4"
    write_index(entries, tmp_path / "index.json")
    raw = json.loads((tmp_path / "index.json").read_text())
    original = json.loads((shared_data / "wlasl" / "WLASL_v0.3_first100.json").read_text())[:3]
    first = raw[0]["instances"][0]
    assert first == {**original[0]["instances"][0], "file": "videos/69241.mp4"}
    assert "file" not in raw[0]["instances"][1]  # only obtained videos get a file
    assert raw[1:] == original[1:]


def test_cap_videos() -> None:
    entries = parse_index([
        {"gloss": "a", "instances": [{"video_id": "1"}, {"video_id": "2"}]},
        {"gloss": "b", "instances": [{"video_id": "3"}]},
    ])
    assert [len(e.instances) for e in cap_videos(entries, 2)] == [2]
    assert [len(e.instances) for e in cap_videos(entries, 3)] == [2, 1]
    assert cap_videos(entries, None) == entries


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gloss": "a"}, "expected a JSON list"),
        ([], "no gloss entries"),
        ([{"gloss": "a"}], r"entry 0 \(gloss 'a'\): malformed at instances: Field required"),
        ([{"gloss": "", "instances": [{"video_id": "1"}]}], "malformed at gloss"),
        ([{"gloss": "a", "instances": "x"}], "malformed at instances"),
        ([{"gloss": "a", "instances": [{"url": "u"}]}], r"malformed at instances\.0\.video_id"),
        ([{"gloss": "a", "instances": [{"video_id": 123}]}], "video_id must be a string"),
        ([{"gloss": "a", "instances": [{"video_id": "1", "split": "dev"}]}], r"instances\.0\.split"),
        ([{"gloss": "a", "instances": [{"video_id": "1", "frame_start": 0}]}], "frame_start"),
        ([{"gloss": "a", "instances": [{"video_id": "1", "frame_start": 9, "frame_end": 3}]}], "frame_end"),
        ([{"gloss": "a", "instances": [{"video_id": "1", "bbox": [1, 2, 3]}]}], "bbox must be"),
        ([{"gloss": "a", "instances": []}], "gloss 'a' has no instances"),
        ([{"gloss": "a", "instances": [{"video_id": "1"}]}, {"gloss": "b", "instances": [{"video_id": "1"}]}],
         r"entry 1 \(gloss 'b'\): duplicate video_id '1' \(also in gloss 'a'\)"),
        ([{"gloss": "a", "instances": [{"video_id": "1"}]}, {"gloss": "a", "instances": [{"video_id": "2"}]}],
         "gloss 'a' appears twice"),
        ([{"gloss": "a", "instances": [{"video_id": "../../etc/passwd"}]}], "path separator"),
        ([{"gloss": "a", "instances": [{"video_id": ".."}]}], "contains '..'"),
    ],
)
def test_bad_entries_name_the_problem(raw, message: str) -> None:
    with pytest.raises(IndexFormatError, match=message):
        parse_index(raw, "test.json")


@pytest.mark.parametrize("video_id", ["a/b", "a\\b", "..", "x..y", ".hidden", "-rf", "", "a b", "é", "x" * 129])
def test_unsafe_video_ids(video_id: str) -> None:
    with pytest.raises(ValueError):
        check_video_id(video_id)


@pytest.mark.parametrize("video_id", ["05237", "001_002_003", "clip-1.v2"])
def test_safe_video_ids(video_id: str) -> None:
    assert check_video_id(video_id) == video_id


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="index file not found"):
        load_index(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        load_index(tmp_path / "bad.json")
    (tmp_path / "nslt.json").write_text(json.dumps({"1": {"subset": "dev", "action": [0, 1, 2]}}))
    with pytest.raises(IndexFormatError, match="needs 'subset'"):
        load_nslt(tmp_path / "nslt.json")


def test_imports_skip_and_report_bad_rows_and_keep_the_rest() -> None:
    from signflow.index import parse_index_skipping

    raw = [
        {"gloss": "book", "instances": [
            {"video_id": "1"}, {"video_id": "2", "frame_start": 0}, {"video_id": "../../etc/passwd"},
            {"url": "no id"}]},
        {"gloss": "empty", "instances": []},
        {"gloss": "drink", "instances": [{"video_id": "1"}, {"video_id": "3", "split": "val"}]},
        {"gloss": "book", "instances": [{"video_id": "4"}]},
        "not an entry",
    ]  # fmt: skip
    entries, problems = parse_index_skipping(raw, "idx.json")
    assert [(e.gloss, [i.video_id for i in e.instances]) for e in entries] == [("book", ["1"]), ("drink", ["3"])]
    reasons = [(p.video_id, p.gloss, p.reason) for p in problems]
    assert reasons[0][:2] == ("2", "book") and "frame_start" in reasons[0][2]
    assert reasons[1][0] == "../../etc/passwd" and "path separator" in reasons[1][2]  # still refused
    assert "video_id" in reasons[2][2]
    assert reasons[3][1:] == ("empty", "entry 1 (gloss 'empty'): no usable instances")
    assert reasons[4][0] == "1" and "duplicate video_id (also in gloss 'book')" in reasons[4][2]
    assert "gloss appears twice" in reasons[5][2] and "entry 4" in reasons[6][2]
    with pytest.raises(IndexFormatError, match="no usable gloss entries .first problem: entry 0"):
        parse_index_skipping([{"gloss": "a", "instances": [{"video_id": "a/b"}]}], "idx.json")
