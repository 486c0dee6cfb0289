"""Download records each obtained video's probe in index.json (``signflow.sources.probes``): per source,
through the download stage, and what a file that cannot be probed becomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from signflow import video
from signflow.config import DataParams, LocalSourceParams, SyntheticSourceParams
from signflow.index import GlossEntry, IndexFormatError, Instance, VideoProbe, load_index, recorded_probes
from signflow.sources import VideoStatus, run_download
from signflow.sources.probes import probe_file, record_probes
from stages import download as download_stage

SMALL = SyntheticSourceParams(num_glosses=2, signers=2, repetitions=2, width=64, height=48, frames=12, lead_frames=2)


def _assert_probes_are_the_files(out: Path) -> dict[str, VideoProbe]:
    """Every obtained instance has a probe, equal to probing its file now."""
    entries = load_index(out / "index.json")
    obtained = {inst.video_id: inst for entry in entries for inst in entry.instances if inst.file}
    probes = recorded_probes(entries)
    assert obtained and set(probes) == set(obtained)
    for video_id, inst in obtained.items():
        info = video.probe(out / inst.file)
        assert probes[video_id] == VideoProbe(width=info.width, height=info.height, fps=info.fps,
                                              num_frames=info.num_frames)
    return probes


def test_the_download_stage_records_synthetic_probes_and_writes_the_index_alone(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"synthetic": SMALL.model_dump()}}))
    out, alone = tmp_path / "raw", tmp_path / "artifacts" / "raw_index"
    assert download_stage.main(["--params", str(params), "--out", str(out), "--index", str(alone)]) == 0
    probes = _assert_probes_are_the_files(out)
    assert {(p.width, p.height) for p in probes.values()} == {(64, 48)}
    # The pipeline's small artifact: the same bytes as the folder's index.json.
    assert alone.read_bytes() == (out / "index.json").read_bytes()
    # In dvc.yaml --index is <out>/index.json itself: nothing else is written.
    again = tmp_path / "again"
    assert download_stage.main(["--params", str(params), "--out", str(again), "--index", str(again / "index.json")]) == 0
    assert {p.name for p in again.iterdir()} == {"videos", "index.json", "status.csv"}


def test_the_local_source_records_probes(make_video, tmp_path: Path) -> None:
    root = tmp_path / "src"
    for gloss in ("book", "drink"):
        (root / gloss).mkdir(parents=True)
        path, _ = make_video(f"{gloss}.mp4", num_frames=7, width=80, height=64, fps=30.0, lossless=False)
        path.rename(root / gloss / f"{gloss}_1.mp4")
    run_download(DataParams(source="local", local=LocalSourceParams(path=str(root))), tmp_path / "raw")
    probes = _assert_probes_are_the_files(tmp_path / "raw")
    assert {(p.width, p.height, p.fps) for p in probes.values()} == {(80, 64, 30.0)}


def test_recorded_probes_are_kept_missing_ones_probed_and_unprobeable_files_dropped(make_video, tmp_path: Path) -> None:
    """What a fetched folder (data.source: dvc) gets: its recorded probes stay, the rest is probed where it arrived."""
    (tmp_path / "videos").mkdir()
    make_video("videos/new.mp4", num_frames=5)
    (tmp_path / "videos" / "bad.mp4").write_text("not a video\n" * 10)
    kept = VideoProbe(width=320, height=240, fps=25.0, num_frames=99)  # as recorded: not re-read
    entries = [GlossEntry(gloss="g", instances=[
        Instance(video_id="old", file="videos/old.mp4", probe=kept),
        Instance(video_id="new", file="videos/new.mp4"),
        Instance(video_id="bad", file="videos/bad.mp4"),
        Instance(video_id="gone"),
    ])]
    rows = [VideoStatus(v, "g", "ok", "", 10) for v in ("old", "new", "bad")] + [VideoStatus("gone", "g", "missing")]
    entries, rows = record_probes(entries, rows, tmp_path)
    instances = {inst.video_id: inst for inst in entries[0].instances}
    assert instances["old"].probe == kept
    assert instances["new"].probe == probe_file(tmp_path / "videos" / "new.mp4")
    assert instances["new"].probe.num_frames == 5
    assert instances["bad"].file is None and instances["bad"].probe is None
    statuses = {row.video_id: (row.status, row.reason) for row in rows}
    assert statuses["bad"] == ("corrupt", statuses["bad"][1]) and statuses["bad"][1].startswith("not_video")
    assert statuses["old"] == ("ok", "") and statuses["gone"] == ("missing", "")


def test_an_index_written_before_probes_reads_back_without_them(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text(json.dumps([{"gloss": "g", "instances": [
        {"video_id": "a", "file": "videos/a.mp4"},
        {"video_id": "b", "file": "videos/b.mp4", "probe": {"width": 64, "height": 48, "fps": 25.0, "num_frames": 12}},
    ]}]))
    entries = load_index(tmp_path / "index.json")
    assert set(recorded_probes(entries)) == {"b"}
    assert "probe" not in entries[0].instances[0].to_json() and entries[0].instances[1].to_json()["probe"]["fps"] == 25.0
    (tmp_path / "bad.json").write_text(json.dumps([{"gloss": "g", "instances": [
        {"video_id": "a", "file": "videos/a.mp4", "probe": {"width": 0, "height": 48, "fps": 25.0, "num_frames": 1}},
    ]}]))
    with pytest.raises(IndexFormatError, match=r"bad.json: entry 0 \(gloss 'g'\): malformed at instances.0.probe.width"):
        load_index(tmp_path / "bad.json")
