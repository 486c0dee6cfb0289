"""The ``local`` source: folder layouts and safe archive extraction, with real files and archives."""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from signflow import video
from signflow.config import DataParams, LocalSourceParams
from signflow.index import load_index
from signflow.sources import SourceError, read_status_csv, run_download
from signflow.sources.local import detect_layout, extract_archive


@pytest.fixture
def clip(make_video) -> bytes:
    path, _ = make_video("clip.mp4", num_frames=6, lossless=False)
    return path.read_bytes()


def _run(path: Path, tmp_path: Path, **kwargs) -> tuple[dict, Path]:
    out = tmp_path / "raw"
    params = DataParams(source="local", local=LocalSourceParams(path=str(path), **kwargs))
    return run_download(params, out), out


def test_gloss_folders(clip: bytes, tmp_path: Path) -> None:
    root = tmp_path / "src"
    for gloss, names in {"book": ["a.mp4", "b.MOV"], "drink": ["c.mp4", "broken.mp4"], "empty": []}.items():
        (root / gloss).mkdir(parents=True)
        for name in names:
            (root / gloss / name).write_bytes(b"not a video at all" if name == "broken.mp4" else clip)
    (root / "book" / "notes.txt").write_text("ignored")
    summary, out = _run(root, tmp_path)
    assert summary["ok"] == 3 and summary["corrupt"] == 1 and summary["videos"] == 4
    entries = load_index(out / "index.json")
    assert [e.gloss for e in entries] == ["book", "drink"]
    assert all(inst.split == "train" for e in entries for inst in e.instances)
    files = [inst.file for e in entries for inst in e.instances if inst.file]
    assert sorted(files) == ["videos/00001.mp4", "videos/00002.mov", "videos/00004.mp4"]  # 00003 = broken.mp4
    for rel in files:
        assert video.probe(out / rel).num_frames == 6
    [bad] = [r for r in read_status_csv(out / "status.csv") if r.status == "corrupt"]
    assert "broken.mp4" in bad.reason


def test_lsa64_names_give_signers(clip: bytes, tmp_path: Path) -> None:
    root = tmp_path / "lsa64"
    root.mkdir()
    for sign in (1, 2):
        for signer in (1, 2, 3):
            (root / f"{sign:03d}_{signer:03d}_001.mp4").write_bytes(clip)
    assert detect_layout(root, LocalSourceParams(path=str(root))) == "lsa64"
    summary, out = _run(root, tmp_path)
    entries = load_index(out / "index.json")
    assert [e.gloss for e in entries] == ["sign001", "sign002"]
    assert sorted({i.signer_id for e in entries for i in e.instances}) == [1, 2, 3]
    assert summary["ok"] == 6 and (out / "videos" / "002_003_001.mp4").is_file()


def test_wlasl_layout_with_index(clip: bytes, tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "05237.mp4").write_bytes(clip)
    index = [{"gloss": "book", "instances": [
        {"video_id": "05237", "url": "http://x/y.mp4", "split": "val", "signer_id": 7, "frame_start": 2,
         "frame_end": 5, "bbox": [1, 2, 30, 40], "fps": 25},
        {"video_id": "05238", "url": "http://x/z.mp4", "split": "test", "frame_start": 1, "frame_end": -1},
    ]}]
    (root / "WLASL_v0.3.json").write_text(json.dumps(index))
    summary, out = _run(root, tmp_path)
    [entry] = load_index(out / "index.json")
    first, second = entry.instances
    assert (first.file, first.split, first.signer_id, first.frame_start, first.bbox) == (
        "videos/05237.mp4", "val", 7, 2, [1, 2, 30, 40])
    assert second.file is None
    assert {r.video_id: r.status for r in read_status_csv(out / "status.csv")} == {"05237": "ok", "05238": "missing"}


def test_pretrimmed_clips_drop_the_original_frame_range_and_bbox(clip: bytes, tmp_path: Path) -> None:
    """The WLASL authors' pre-processed clips: the index's range/bbox refer to the original video."""
    root = tmp_path / "wlasl100"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "05237.mp4").write_bytes(clip)
    index = [{"gloss": "book", "instances": [
        {"video_id": "05237", "split": "val", "signer_id": 7, "frame_start": 40, "frame_end": 95,
         "bbox": [100, 20, 500, 480], "fps": 25}]}]
    (root / "index.json").write_text(json.dumps(index))
    (root / "videos" / "99999.mp4").write_bytes(clip)  # not in the index
    (root / "videos" / "05238.mp4").write_bytes(b"corrupt clip")
    index[0]["instances"].append({"video_id": "05238", "split": "test"})
    index[0]["instances"].append({"video_id": "05239", "split": "test"})  # missing from the folder
    (root / "index.json").write_text(json.dumps(index))
    summary, _ = _run(root, tmp_path, pretrimmed=True)
    statuses = {r.video_id: (r.status, r.reason) for r in read_status_csv(tmp_path / "raw" / "status.csv")}
    assert statuses["99999"] == ("skipped", "not in the index (no gloss or split for it)")
    assert statuses["05238"][0] == "corrupt" and statuses["05239"][0] == "missing" and statuses["05237"][0] == "ok"
    assert summary["ok"] == 1  # the run went on past every bad entry
    [[inst, *_]] = [e.instances for e in load_index(tmp_path / "raw" / "index.json")]
    assert (inst.frame_start, inst.frame_end, inst.bbox, inst.split, inst.signer_id) == (1, -1, None, "val", 7)
    extra = inst.model_extra or {}
    assert (extra["original_frame_start"], extra["original_frame_end"], extra["original_bbox"]) == (
        40, 95, [100, 20, 500, 480])


def test_zip_and_tar_archives(clip: bytes, tmp_path: Path) -> None:
    archive = tmp_path / "kaggle.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # one top folder, as downloads usually have
        zf.writestr("dataset/hello/1.mp4", clip)
        zf.writestr("dataset/thanks/2.mp4", clip)
    summary, out = _run(archive, tmp_path)
    assert summary["ok"] == 2 and [e.gloss for e in load_index(out / "index.json")] == ["hello", "thanks"]
    assert not list(tmp_path.glob(".extract-*")), "extraction scratch folder left behind"
    urls = sorted(r.url for r in read_status_csv(out / "status.csv"))
    assert urls[0].startswith("file://") and urls[0].endswith("kaggle.zip#dataset/hello/1.mp4")

    tgz = tmp_path / "lsa64.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name in ("001_001_001.mp4", "001_002_001.mp4"):
            info = tarfile.TarInfo(f"all/{name}")
            info.size = len(clip)
            tf.addfile(info, io.BytesIO(clip))
    shutil.rmtree(tmp_path / "raw")
    summary, out = _run(tgz, tmp_path)
    assert summary["ok"] == 2 and (out / "videos" / "001_002_001.mp4").is_file()


def _zip_with(tmp_path: Path, name: str, *, symlink_to: str | None = None) -> Path:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/fine.mp4", b"x")
        info = zipfile.ZipInfo(name)
        if symlink_to is not None:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, symlink_to)
        else:
            zf.writestr(info, b"payload")
    return archive


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, payload: bytes = b"") -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        ok = tarfile.TarInfo("ok/fine.mp4")
        ok.size = 1
        tf.addfile(ok, io.BytesIO(b"x"))
        member.size = len(payload)
        tf.addfile(member, io.BytesIO(payload) if payload else None)
    return archive


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: _zip_with(t, "../escape.mp4"), "contains '..'"),
        (lambda t: _zip_with(t, "a/../../escape.mp4"), "contains '..'"),
        (lambda t: _zip_with(t, "/etc/escape.mp4"), "absolute path"),
        (lambda t: _zip_with(t, "ok/link.mp4", symlink_to="/etc/passwd"), "symlink"),
        (lambda t: _tar_with(t, tarfile.TarInfo("../escape.mp4"), b"payload"), "contains '..'"),
        (lambda t: _tar_with(t, tarfile.TarInfo("/tmp/escape.mp4"), b"payload"), "absolute path"),
        (lambda t: _tar_with(t, _link("ok/l.mp4", "../../outside", tarfile.SYMTYPE)), "points outside"),
        (lambda t: _tar_with(t, _link("ok/l.mp4", "/etc/passwd", tarfile.SYMTYPE)), "absolute path"),
        (lambda t: _tar_with(t, _link("ok/h.mp4", "../outside", tarfile.LNKTYPE)), "points outside"),
        (lambda t: _tar_with(t, _link("ok/h.mp4", "/etc/passwd", tarfile.LNKTYPE)), "absolute path"),
    ],
)
def test_unsafe_archives_are_refused_before_writing(tmp_path: Path, make, message: str) -> None:
    archive = make(tmp_path)
    dest = tmp_path / "dest"
    with pytest.raises(SourceError, match=message):
        extract_archive(archive, dest, max_bytes=10**6)
    assert not any(dest.rglob("*")), "something was extracted from a refused archive"
    assert not (tmp_path / "escape.mp4").exists() and not (tmp_path.parent / "escape.mp4").exists()


def test_archive_size_limit(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big/zeros.mp4", b"\0" * 2_000_000)  # compresses to ~2 KB
    assert archive.stat().st_size < 20_000
    with pytest.raises(SourceError, match="exceeds data.local.max_archive_bytes"):
        extract_archive(archive, tmp_path / "dest", max_bytes=1_000_000)
    tar = _tar_with(tmp_path, tarfile.TarInfo("big/zeros.mp4"), b"\0" * 5000)
    with pytest.raises(SourceError, match="exceeds"):
        extract_archive(tar, tmp_path / "dest2", max_bytes=4000)


def test_bad_local_inputs(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        _run(tmp_path / "nowhere", tmp_path)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "readme.txt").write_text("no videos here")
    with pytest.raises(SourceError, match="cannot detect the layout"):
        _run(tmp_path / "flat", tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="neither a folder nor"):
        _run(tmp_path / "notes.txt", tmp_path)


def test_one_bad_index_row_is_reported_and_the_rest_imported(clip: bytes, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    (root / "videos").mkdir(parents=True)
    (root / "videos" / "00001.mp4").write_bytes(clip)
    index = [{"gloss": "book", "instances": [{"video_id": "00001"}, {"video_id": "00002", "bbox": [1, 2]}]},
             {"gloss": "nothing", "instances": []}]  # fmt: skip
    (root / "index.json").write_text(json.dumps(index))
    summary, out = _run(root, tmp_path)
    assert summary["ok"] == 1
    rows = {(r.video_id, r.gloss): (r.status, r.reason) for r in read_status_csv(out / "status.csv")}
    assert rows[("00002", "book")][0] == "skipped" and "bbox must be" in rows[("00002", "book")][1]
    assert rows[("", "nothing")] == ("skipped", "index: entry 1 (gloss 'nothing'): no usable instances")
