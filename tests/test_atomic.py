"""Atomic outputs: complete or absent, also when a stage is killed with SIGKILL midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signflow import atomic
from tests.conftest import REPO_ROOT


def test_file_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    atomic.write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_folder_replaces_old_one_whole_and_honours_umask(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(ValueError):
        with atomic.atomic_path(target, is_dir=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise ValueError("midway")
    assert [p.name for p in target.iterdir()] == ["old.txt"]  # untouched on failure
    with atomic.atomic_path(target, is_dir=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert target.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]


def test_clean_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / f"{atomic.TMP_PREFIX}x.abc").mkdir()
    (tmp_path / f"{atomic.TMP_PREFIX}y.abc").write_text("")
    (tmp_path / "keep").write_text("")
    assert atomic.clean_stale_temporaries(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_extract_killed_with_sigkill_leaves_nothing_complete_and_reruns(make_video, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "videos").mkdir(parents=True)
    path, _ = make_video("clip.mp4", num_frames=40, height=96, width=128)
    path.rename(raw / "videos" / "clip.mp4")
    # Many plans over one file: enough work to be caught midway, no time spent making videos.
    crop_dir = tmp_path / "crop"
    crop_dir.mkdir()
    plans = [
        {"video_id": f"v{i:04d}", "label": i % 2, "gloss": f"g{i % 2}", "split": ("train", "val", "test")[i % 3],
         "file": "videos/clip.mp4", "start": 0, "stop": None, "box": None, "width": 128, "height": 96,
         "fps": 25.0, "num_frames": 40, "notes": []}
        for i in range(400)
    ]
    (crop_dir / "plans.jsonl").write_text("".join(json.dumps(p) + "\n" for p in plans))
    params = tmp_path / "params.yaml"
    params.write_text("extract: {seq_len: 4, stored_frames: 8, frame_size: 32, num_workers: 1}\n")
    out = tmp_path / "data" / "features"
    report = tmp_path / "reports" / "extract.json"
    cmd = [sys.executable, "-m", "stages.extract", "--params", str(params), "--raw", str(raw), "--crop", str(crop_dir),
           "--out", str(out), "--report", str(report), "--no-progress"]
    process = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        # Wait until shard bytes are being written into the temporary folder, then kill.
        while time.monotonic() < deadline and process.poll() is None:
            shards = list(out.parent.rglob("shard-*.npy"))
            if shards and any(s.stat().st_size > 10_000 for s in shards):
                break
            time.sleep(0.02)
        assert process.poll() is None, "extract finished before it could be killed; give it more work"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert not out.exists() and not report.exists()
    assert not list(out.parent.rglob("index.json")) or all(
        atomic.TMP_PREFIX in str(p.relative_to(out.parent)) for p in out.parent.rglob("index.json")
    )
    leftovers = list(out.parent.glob(f"{atomic.TMP_PREFIX}*"))
    assert leftovers  # the killed run's temporary folder, not taken for output

    plans_small = plans[:9]
    (crop_dir / "plans.jsonl").write_text("".join(json.dumps(p) + "\n" for p in plans_small))
    rerun = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(report.read_text())["extracted"] == 9
    assert sorted(p.name for p in out.parent.iterdir()) == ["features"]  # stale temporaries cleaned
