"""Smoke run of the whole chain on real WLASL footage: download (local) -> split -> crop -> extract
-> train -> evaluate, through the same stage CLIs as ``dvc repro``.

The 199 clips in ``../shared/data/wlasl-clips`` (real codecs, sizes 288x192 to 1920x1080, real
bboxes) hold about one clip per gloss, so this proves that every stage copes with real videos;
the accuracy it prints means nothing and is not a result. Their ``manifest.csv`` becomes a
``WLASL_v0.3.json``-schema index (gloss, official WLASL2000 split, bbox, signer) next to
``videos/<video_id>.mp4`` links: the ``local`` source's ``wlasl`` layout, as for a Kaggle copy.

Run: ``python scripts/smoke_wlasl_clips.py [--clips DIR] [--work DIR] [--arch cnn_lstm] [--epochs 1]``
(``make smoke-wlasl``). Exit status 0 when every stage succeeded and every clip was extracted or
reported with a reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLIPS = REPO_ROOT.parent / "shared" / "data" / "wlasl-clips"


def build_source(clips: Path, source: Path) -> int:
    """``videos/<id>.mp4`` symlinks + ``index.json`` (WLASL schema) from the clips' ``manifest.csv``."""
    manifest = clips / "manifest.csv"
    if not manifest.is_file():
        raise SystemExit(f"smoke: {manifest} not found (expected the shared wlasl-clips folder)")
    videos = source / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    glosses: dict[str, list[dict]] = defaultdict(list)
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            clip = clips / f"{row['video_id']}.mp4"
            link = videos / clip.name
            if not link.exists():
                link.symlink_to(clip.resolve())
            numerator, _, denominator = row["fps"].partition("/")
            instance = {
                "video_id": row["video_id"],
                "split": row["split_wlasl2000"],
                "frame_start": 1,
                "frame_end": -1,
                "fps": float(numerator) / float(denominator or 1),
                "bbox": json.loads(row["bbox"]) if row["bbox"] else None,
                "signer_id": int(row["signer_id"]) if row["signer_id"] else None,
            }
            glosses[row["gloss"]].append(instance)
    index = [{"gloss": gloss, "instances": instances} for gloss, instances in glosses.items()]
    (source / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return sum(len(instances) for instances in glosses.values())


def write_params(work: Path, source: Path, arch: str, epochs: int) -> Path:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["source"] = "local"
    params["data"]["local"].update(path=str(source), layout="wlasl", index=None)
    params["split"].update(strategy="official", nslt_file=None)
    params["model"]["arch"] = arch
    params["train"].update(epochs=epochs)
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def run_stage(name: str, args: list[str], cwd: Path) -> float:
    """One stage CLI, exactly as dvc.yaml calls it; its output is shown, a failure stops the run."""
    start = time.perf_counter()
    print(f"smoke: {name} ...", flush=True)
    result = subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"smoke: stage {name} failed (exit {result.returncode})")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/signflow-wlasl-smoke"))
    parser.add_argument("--arch", default="cnn_lstm")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    clips = build_source(args.clips, work / "source")
    params = str(write_params(work, work / "source", args.arch, args.epochs))
    d = {name: str(work / name) for name in ("raw", "split", "crop", "features", "models", "live", "reports")}
    times = {
        "download": run_stage("download", ["--params", params, "--out", d["raw"], "--index", f"{d['raw']}/index.json",
                                           "--report", f"{d['reports']}/download.json"], REPO_ROOT),
        "split": run_stage("split", ["--params", params, "--index", f"{d['raw']}/index.json", "--out", d["split"],
                                     "--report", f"{d['reports']}/split.json"], REPO_ROOT),
        "crop": run_stage("crop", ["--params", params, "--index", f"{d['raw']}/index.json", "--split", d["split"],
                                   "--out", d["crop"]], REPO_ROOT),
        "extract": run_stage("extract", ["--params", params, "--raw", d["raw"], "--crop", d["crop"], "--out", d["features"],
                                         "--report", f"{d['reports']}/extract.json"], REPO_ROOT),
        "train": run_stage("train", ["--params", params, "--features", d["features"], "--labels", f"{d['split']}/label_map.json",
                                     "--out", d["models"], "--live", d["live"], "--no-progress", "--resume", "never"], REPO_ROOT),
        "evaluate": run_stage("evaluate", ["--params", params, "--features", d["features"], "--model", d["models"],
                                           "--out", f"{d['reports']}/evaluate", "--no-progress"], REPO_ROOT),
    }  # fmt: skip
    extract = json.loads(Path(d["reports"], "extract.json").read_text(encoding="utf-8"))
    metrics = json.loads(Path(d["reports"], "evaluate", "metrics.json").read_text(encoding="utf-8"))
    summary = {
        "clips": clips,
        "extract": extract,
        "evaluated": {key: value for key, value in metrics.items() if key.endswith("_samples")},
        "seconds": {key: round(value, 1) for key, value in times.items()},
    }
    (work / "smoke.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))
    print("smoke: every stage ran on real WLASL clips (about one clip per gloss: no accuracy is reported)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
