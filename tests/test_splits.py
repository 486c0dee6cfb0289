"""Splits: official counts on the real WLASL files, random stratification, signer independence, errors."""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

from signflow import splits
from signflow.config import SplitParams
from signflow.index import load_index, parse_index
from stages import split as split_stage

README_COUNTS = {  # /work/shared/data/wlasl/README.md
    "nslt_100.json": (2038, 1442, 338, 258, 100),
    "nslt_2000.json": (21095, 14296, 3920, 2879, 2000),
}


def _index(glosses: dict[str, list[dict]]) -> list:
    raw = [{"gloss": g, "instances": insts} for g, insts in glosses.items()]
    return parse_index(raw, "test-index", allow_empty_glosses=True)


def _synthetic_index(num_glosses: int = 4, signers: int = 6, reps: int = 3, obtained: bool = True) -> list:
    glosses: dict[str, list[dict]] = {}
    number = 0
    for g in range(num_glosses):
        insts = []
        for signer in range(signers):
            for _ in range(reps):
                insts.append(
                    {
                        "video_id": f"{number:05d}",
                        "signer_id": signer,
                        "split": "train",
                        "bbox": [1, 2, 30, 40],
                        "fps": 25,
                        **({"file": f"videos/{number:05d}.mp4"} if obtained else {}),
                    }
                )
                number += 1
        glosses[f"gloss{g}"] = insts
    return _index(glosses)


def _index_from_nslt(shared: Path, name: str) -> list:
    """A complete WLASL-K index (every video obtained) rebuilt from an official nslt file + the class list."""
    nslt = json.loads((shared / "wlasl" / name).read_text())
    class_list = (shared / "wlasl" / "wlasl_class_list.txt").read_text().splitlines()
    classes = [line.split("\t", 1)[1].strip() for line in class_list]
    by_class: dict[int, list[dict]] = {}
    for video_id, item in nslt.items():
        cls, start, end = item["action"]
        by_class.setdefault(cls, []).append(
            # The index's own split is deliberately wrong: the nslt file must decide.
            {"video_id": video_id, "split": "train", "frame_start": start, "frame_end": end,
             "file": f"videos/{video_id}.mp4"}
        )
    return _index({classes[c]: by_class[c] for c in sorted(by_class)})


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_official_nslt_counts_match_readme(shared_data: Path, name: str) -> None:
    entries = _index_from_nslt(shared_data, name)
    params = SplitParams(strategy="official", nslt_file=str(shared_data / "wlasl" / name))
    result = splits.split_index(entries, params)
    total, train, val, test, classes = README_COUNTS[name]
    assert result.report["videos"] == total
    assert result.report["counts"] == {"train": train, "val": val, "test": test}
    assert result.report["classes"] == classes == len(result.glosses)
    assert sum(sum(c.values()) for c in result.report["per_class"].values()) == total


def test_first100_index_gives_the_nslt_100_split(shared_data: Path) -> None:
    entries = load_index(shared_data / "wlasl" / "WLASL_v0.3_first100.json")
    # Pretend every video was downloaded: the split must come from the index's own fields.
    entries = [
        e.model_copy(
            update={"instances": [i.model_copy(update={"file": f"videos/{i.video_id}.mp4"}) for i in e.instances]}
        )
        for e in entries
    ]
    result = splits.split_index(entries, SplitParams(strategy="official"))
    nslt = json.loads((shared_data / "wlasl" / "nslt_100.json").read_text())
    ours = {r.video_id: (r.split, r.label) for r in result.records}
    official = {vid: (item["subset"], item["action"][0]) for vid, item in nslt.items()}
    assert ours == official


def test_random_split_is_stratified_seeded_and_keeps_train_per_class() -> None:
    entries = _synthetic_index(num_glosses=5, signers=4, reps=5)  # 20 videos per gloss
    params = SplitParams(strategy="random", val_fraction=0.2, test_fraction=0.1, seed=3)
    result = splits.build_split(entries, params)
    for gloss, counts in result.report["per_class"].items():
        assert counts == {"train": 14, "val": 4, "test": 2}, gloss
    again = splits.build_split(entries, params)
    assert [(r.video_id, r.split) for r in again.records] == [(r.video_id, r.split) for r in result.records]
    other = splits.build_split(entries, params.model_copy(update={"seed": 4}))
    assert {(r.video_id, r.split) for r in other.records} != {(r.video_id, r.split) for r in result.records}


def test_random_split_never_empties_train_for_tiny_classes() -> None:
    entries = _synthetic_index(num_glosses=3, signers=1, reps=2)  # 2 videos per gloss
    params = SplitParams(strategy="random", val_fraction=0.45, test_fraction=0.45)
    with pytest.raises(splits.SplitError, match="zero items"):
        # 2 per class: one must stay in train, so val or test ends up empty -> clear error.
        splits.build_split(entries, params)


def test_signer_split_has_no_signer_in_two_splits() -> None:
    entries = _synthetic_index(num_glosses=3, signers=10, reps=2)
    params = SplitParams(strategy="signer", val_fraction=0.2, test_fraction=0.2, seed=1)
    result = splits.build_split(entries, params)
    signer_splits: dict[str, set[str]] = {}
    for record in result.records:
        signer_splits.setdefault(record.signer, set()).add(record.split)
    assert all(len(s) == 1 for s in signer_splits.values())
    assert sorted(result.report["signers"].values()) == [2, 2, 6]
    assert splits.build_split(entries, params).records == result.records


def test_signer_split_needs_three_signers() -> None:
    entries = _synthetic_index(signers=2)
    with pytest.raises(splits.SplitError, match="at least 3 signers"):
        splits.build_split(entries, SplitParams(strategy="signer"))


def test_only_obtained_videos_and_glosses_without_videos_warn(caplog: pytest.LogCaptureFixture) -> None:
    entries = _index(
        {
            "a": [{"video_id": "1", "split": "train", "file": "videos/1.mp4"}, {"video_id": "2", "split": "val"}],
            "b": [{"video_id": "3", "split": "val"}],  # nothing obtained
            "c": [
                {"video_id": "4", "split": "val", "file": "videos/4.mp4"},
                {"video_id": "5", "split": "test", "file": "videos/5.mp4"},
            ],
        }
    )
    with caplog.at_level(logging.WARNING):
        result = splits.build_split(entries, SplitParams())
    assert [r.video_id for r in result.records] == ["1", "4", "5"]
    assert result.glosses == ["a", "c"]  # dense labels in index order
    assert {r.video_id: r.label for r in result.records} == {"1": 0, "4": 1, "5": 1}
    assert result.report["glosses_without_videos"] == 1
    assert "no obtained video" in caplog.text
    assert "no training video" in caplog.text  # gloss c


def test_official_split_with_an_empty_split_is_a_clear_error() -> None:
    entries = _index(
        {"a": [{"video_id": "1", "split": "train", "file": "f"}, {"video_id": "2", "split": "val", "file": "g"}]}
    )
    with pytest.raises(splits.SplitError, match="'test' would have zero items"):
        splits.build_split(entries, SplitParams())


def test_no_obtained_videos_is_a_clear_error() -> None:
    with pytest.raises(splits.SplitError, match="no obtained videos"):
        splits.build_split(_synthetic_index(obtained=False), SplitParams(strategy="random"))


def test_manifest_round_trip(tmp_path: Path) -> None:
    entries = _synthetic_index(num_glosses=3, signers=5, reps=2)
    result = splits.build_split(entries, SplitParams(strategy="signer", seed=2))
    splits.write_outputs(result, tmp_path / "split")
    rows = list(csv.DictReader(open(tmp_path / "split" / "manifest.csv", encoding="utf-8")))
    assert tuple(rows[0]) == splits.MANIFEST_COLUMNS
    assert rows[0]["bbox"] == "1 2 30 40" and rows[0]["fps"] == "25"
    label_map = json.loads((tmp_path / "split" / "label_map.json").read_text())
    assert label_map == {"glosses": ["gloss0", "gloss1", "gloss2"]}
    assert splits.read_manifest(tmp_path / "split" / "manifest.csv") == result.records


def _write_raw(tmp_path: Path, entries_raw: list[dict], files: list[str]) -> Path:
    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    for name in files:
        (raw / name).write_bytes(b"x")
    (raw / "index.json").write_text(json.dumps(entries_raw))
    return raw


def test_stage_writes_outputs_and_drops_files_missing_on_disk(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    instances = [
        {"video_id": f"{i}", "split": s, "signer_id": i, "file": f"videos/{i}.mp4"}
        for i, s in enumerate(["train", "train", "val", "test", "test"])
    ]
    raw = _write_raw(tmp_path, [{"gloss": "a", "instances": instances}], [f"videos/{i}.mp4" for i in range(4)])
    params = tmp_path / "params.yaml"
    params.write_text("split: {strategy: official}\n")
    code = split_stage.main(
        ["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "split"),
         "--report", str(tmp_path / "r.json")]
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"train": 2, "val": 1, "test": 1} and report["missing_on_disk"] == 1
    assert "train 2, val 1, test 1" in capsys.readouterr().out


def test_stage_given_the_index_alone_trusts_file_and_reads_no_video(tmp_path: Path) -> None:
    """The pipeline's split pod gets index.json and no videos: download set ``file`` only for verified ones."""
    instances = [
        {"video_id": f"{i}", "split": s, "signer_id": i, "file": f"videos/{i}.mp4"}
        for i, s in enumerate(["train", "train", "val", "test"])
    ] + [{"video_id": "lost", "split": "test", "signer_id": 9}]  # not obtained: no file
    index = tmp_path / "artifact" / "raw_index"
    index.parent.mkdir()
    index.write_text(json.dumps([{"gloss": "a", "instances": instances}]))
    params = tmp_path / "params.yaml"
    params.write_text("split: {strategy: official}\n")
    argv = ["--params", str(params), "--index", str(index), "--out", str(tmp_path / "split"),
            "--report", str(tmp_path / "r.json")]
    assert split_stage.main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"train": 2, "val": 1, "test": 1} and "missing_on_disk" not in report
    assert [r.video_id for r in splits.read_manifest(tmp_path / "split" / "manifest.csv")] == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("params_text", "make_index", "message"),
    [
        ("split: {strategy: official}\n", False, "run the download stage first"),
        ("split: {strategy: sideways}\n", True, "split.strategy"),
        ("split: {val_fraction: 0}\n", True, "split.val_fraction"),
    ],
)
def test_stage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, params_text: str, make_index: bool, message: str
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    if make_index:
        (raw / "index.json").write_text(json.dumps([{"gloss": "a", "instances": [{"video_id": "1"}]}]))
    params = tmp_path / "params.yaml"
    params.write_text(params_text)
    code = split_stage.main(
        ["--params", str(params), "--raw", str(raw), "--out", str(tmp_path / "s"), "--report", str(tmp_path / "r.json")]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_counts_per_class_sum_to_counts_per_split() -> None:
    result = splits.build_split(_synthetic_index(num_glosses=4), SplitParams(strategy="random", seed=9))
    totals = Counter()
    for counts in result.report["per_class"].values():
        totals.update(counts)
    assert dict(totals) == result.report["counts"]
