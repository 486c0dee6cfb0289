"""The synthetic source: real mp4s, deterministic, signer-independent splits, and motion-only labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from signflow import video
from signflow.config import DataParams, SyntheticSourceParams
from signflow.index import load_index
from signflow.sources import read_status_csv, run_download
from signflow.sources.synthetic import MAX_GLOSSES, motion_catalogue
from stages import download as download_stage

SMALL = SyntheticSourceParams(num_glosses=3, signers=3, repetitions=2, width=64, height=48, frames=12, lead_frames=2)


def _generate(tmp_path: Path, name: str, params: SyntheticSourceParams = SMALL, seed: int = 0) -> Path:
    out = tmp_path / name
    run_download(DataParams(source="synthetic", seed=seed, synthetic=params), out)
    return out


def test_index_and_videos(tmp_path: Path) -> None:
    out = _generate(tmp_path, "raw")
    entries = load_index(out / "index.json")
    assert [e.gloss for e in entries] == [m.name for m in motion_catalogue()[:3]]
    instances = [inst for e in entries for inst in e.instances]
    assert len(instances) == 3 * 3 * 2
    for inst in instances:
        info = video.probe(out / inst.file)
        assert (info.width, info.height, info.fps) == (64, 48, 25.0)
        frames = len(video.read_frames(out / inst.file))
        # Rest frames before and after the sign, recorded as a 1-based inclusive range.
        assert 1 < inst.frame_start <= inst.frame_end < frames
        x0, y0, x1, y1 = inst.bbox
        assert 0 <= x0 < x1 < 64 and 0 <= y0 < y1 < 48
        assert inst.fps == 25.0 and inst.url.startswith("synthetic://")
    # Signer-independent split: each signer in exactly one split, the last ones held out.
    split_of = {}
    for inst in instances:
        assert split_of.setdefault(inst.signer_id, inst.split) == inst.split
    assert split_of == {0: "train", 1: "val", 2: "test"}
    assert {r.status for r in read_status_csv(out / "status.csv")} == {"ok"}
    assert len(motion_catalogue()) == MAX_GLOSSES == len({m.name for m in motion_catalogue()})


def test_deterministic_given_seed(tmp_path: Path) -> None:
    # Also independent of how many processes render the clips.
    a = _generate(tmp_path, "a", SMALL.model_copy(update={"num_workers": 1}))
    b, c = _generate(tmp_path, "b"), _generate(tmp_path, "c", seed=1)
    assert (a / "index.json").read_bytes() == (b / "index.json").read_bytes()
    differs = False
    for path in sorted((a / "videos").iterdir()):
        np.testing.assert_array_equal(video.read_frames(path), video.read_frames(b / "videos" / path.name))
        assert path.read_bytes() == (b / "videos" / path.name).read_bytes()
        other = c / "videos" / path.name
        differs |= other.read_bytes() != path.read_bytes()
    assert differs, "a different seed must give different videos"


def _sign_frames(out: Path, inst) -> np.ndarray:
    frames = video.read_frames(out / inst.file).astype(np.float32).mean(axis=-1)  # grey
    return frames[inst.frame_start - 1 : inst.frame_end]


def _rotation(frames: np.ndarray, columns: slice) -> float:
    """Signed turns of the moving blob in ``columns`` (background = the temporal median)."""
    part = frames[:, :, columns]
    moving = np.abs(part - np.median(part, axis=0)) > 40
    ys, xs = np.mgrid[0 : part.shape[1], 0 : part.shape[2]]
    weights = moving.sum(axis=(1, 2)) + 1e-6
    cx = (moving * xs).sum(axis=(1, 2)) / weights
    cy = (moving * ys).sum(axis=(1, 2)) / weights
    angle = np.unwrap(np.arctan2(-(cy - cy.mean()), cx - cx.mean()))  # image y points down
    return float(angle[-1] - angle[0]) / (2 * np.pi)


def test_single_frames_do_not_identify_the_class(tmp_path: Path) -> None:
    """Nearest class centroid: at chance on single frames, near perfect on the motion direction."""
    params = SyntheticSourceParams(num_glosses=4, signers=4, repetitions=2, width=64, height=48, frames=20)
    out = _generate(tmp_path, "raw", params)
    entries = load_index(out / "index.json")
    frame_x, frame_y, frame_test = [], [], []
    motion_x, motion_y, motion_test = [], [], []
    for label, entry in enumerate(entries):
        for inst in entry.instances:
            frames = _sign_frames(out, inst)
            test = inst.signer_id == 3  # an unseen signer
            small = frames.reshape(len(frames), 12, 4, 16, 4).mean(axis=(2, 4)).reshape(len(frames), -1)
            frame_x.extend(small)
            frame_y.extend([label] * len(small))
            frame_test.extend([test] * len(small))
            half = frames.shape[2] // 2  # dominant hand on the image's left, the other on the right
            motion_x.append([_rotation(frames, slice(0, half)), _rotation(frames, slice(half, None))])
            motion_y.append(label)
            motion_test.append(test)

    def centroid_accuracy(x, y, test) -> float:
        x, y, test = np.asarray(x, np.float64), np.asarray(y), np.asarray(test)
        centroids = np.stack([x[~test & (y == k)].mean(axis=0) for k in range(4)])
        predicted = np.argmin(((x[test, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
        return float((predicted == y[test]).mean())

    single_frame = centroid_accuracy(frame_x, frame_y, frame_test)
    temporal = centroid_accuracy(motion_x, motion_y, motion_test)
    assert single_frame < 0.45, f"single frames identify the class ({single_frame:.2f}, chance 0.25)"
    assert temporal >= 0.9, f"the motion should identify the class ({temporal:.2f})"
    # The mean frame of each class is (nearly) the same picture: no static class template.
    means = np.stack([np.asarray(frame_x)[np.asarray(frame_y) == k].mean(axis=0) for k in range(4)])
    assert np.abs(means - means.mean(axis=0)).max() < 12.0


def _params_file(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    return path


def test_stage_cli_writes_the_raw_contract(tmp_path: Path, capsys) -> None:
    params = _params_file(tmp_path, {"synthetic": SMALL.model_dump() | {"num_glosses": 2, "signers": 2}})
    out, report = tmp_path / "data" / "raw", tmp_path / "reports" / "download.json"
    assert download_stage.main(["--params", str(params), "--out", str(out), "--report", str(report)]) == 0
    assert {p.name for p in out.iterdir()} == {"videos", "index.json", "status.csv"}
    summary = json.loads(report.read_text())
    assert (summary["ok"], summary["videos"], summary["missing"], summary["glosses"]) == (8, 8, 0, 2)
    assert "8 ok" in capsys.readouterr().out
    assert not list(out.parent.glob(".tmp-*")), "temporary output left behind"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "youtube"}, "data.source"),
        ({"synthetic": {"num_glosses": 1000}}, "data.synthetic.num_glosses"),
        ({"synthetic": {"colour": 3}}, "data.synthetic.colour: unknown key"),
        ({"source": "wlasl", "wlasl": {"index": "/nonexistent/WLASL_v0.3.json"}}, "index file not found"),
        ({"source": "local"}, "data.local.path is required"),
        ({"source": "local", "local": {"path": "/nonexistent/videos"}}, "does not exist"),
    ],
)
def test_stage_cli_bad_input_is_one_clear_line(tmp_path: Path, capsys, data: dict, message: str) -> None:
    out = tmp_path / "raw"
    code = download_stage.main(["--params", str(_params_file(tmp_path, data)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and err.startswith("download: error:") and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_stage_killed_midway_leaves_no_output(tmp_path: Path) -> None:
    """SIGKILL during generation: no data/raw appears; the next run cleans up and completes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    params = _params_file(tmp_path, {"synthetic": SMALL.model_dump() | {"num_glosses": 6, "repetitions": 4}})
    out = tmp_path / "data" / "raw"
    cmd = [sys.executable, "-m", "stages.download", "--params", str(params), "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "data").glob(".tmp-raw.*/videos/*.mp4")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the stage and its encoder processes
    proc.wait()
    assert not out.exists(), "a killed run left an output that looks complete"
    assert list((tmp_path / "data").glob(".tmp-raw.*"))  # only an obvious temporary
    assert download_stage.main(["--params", str(params), "--out", str(out)]) == 0
    assert not list((tmp_path / "data").glob(".tmp-raw.*")) and (out / "index.json").is_file()
