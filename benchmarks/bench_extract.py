"""Extract benchmark: the WLASL-notebook route vs signflow's crop+extract, on the same clips.

(a) *notebook*: the route of the WLASL tutorials. ``cv2.VideoCapture`` decodes every
    frame of every video, frames 5..34 (30 frames) are written as JPEGs, one folder per
    video; training then loads each sequence with ``cv2.imread`` + ``cv2.resize``.
(b) *signflow*: the crop stage (probe + plan) and the extract stage (one decode pass,
    crop, resize, sample, sharded ``.npy``, ``extract.num_workers`` processes); training
    loads a clip with one ``ShardReader.read`` (memory-mapped slice) + temporal sampling.
(c) ``ffmpeg -i clip -f null -`` on every clip, one after another: the decode limit.

Each route runs in its own child process, so the peak RSS reported is that route's.
"End to end" = preparation + loading every clip once (1 epoch), and preparation + ``--epochs``
loads of every clip (default ``train.epochs`` from params.yaml: training reads each clip once per epoch).

Run:  ``python benchmarks/bench_extract.py`` (the 199 real clips in ../shared/data/wlasl-clips
and the default synthetic set) or ``python benchmarks/bench_extract.py --clips DIR [DIR ...]``
where DIR holds videos plus an optional ``index.json`` (WLASL schema) or ``manifest.csv``
(``video_id``, ``bbox`` columns, as in wlasl-clips). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

DEFAULT_CLIPS = REPO_ROOT.parent / "shared" / "data" / "wlasl-clips"
NOTEBOOK_FRAMES = range(5, 35)  # the tutorials' "frames 5..35" (Python range: 30 frames)
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


# --------------------------------------------------------------------------- clip sets


def _records(clip_dir: Path) -> list:
    """Manifest-like records (signflow.splits.Record) for the videos of ``clip_dir``."""
    from signflow import splits
    from signflow.index import load_index

    if (clip_dir / "index.json").is_file():
        entries, _ = splits.drop_missing_files(load_index(clip_dir / "index.json"), clip_dir)
        records, _, _ = splits.records_from_index(entries)
        return [splits.Record(**{**r.__dict__, "label": 0}) for r in records]
    bboxes: dict[str, tuple | None] = {}
    if (clip_dir / "manifest.csv").is_file():
        for row in csv.DictReader(open(clip_dir / "manifest.csv", encoding="utf-8")):
            text = (row.get("bbox") or "").strip("[] ")
            bboxes[row["video_id"]] = tuple(float(v) for v in text.split(",")) if text else None
    files = sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    return [
        splits.Record(p.stem, "g", None, "train", 1, -1, bboxes.get(p.stem), None, p.name, label=0) for p in files
    ]


def make_synthetic(out_dir: Path) -> Path:
    """The default synthetic data set (params.yaml defaults), generated once (not timed)."""
    from signflow.config import load_params
    from signflow.index import write_index
    from signflow.sources import synthetic

    if (out_dir / "index.json").is_file():
        return out_dir
    params = load_params(REPO_ROOT / "params.yaml").data
    entries = synthetic.generate(params.synthetic, params.seed, out_dir)
    write_index(entries, out_dir / "index.json")
    return out_dir


# --------------------------------------------------------------------------- routes (run in child processes)


def route_notebook(clip_dir: Path, work: Path, frame_size: int) -> dict:
    import cv2

    records = _records(clip_dir)
    out = work / "jpegs"
    began = time.perf_counter()
    for record in records:
        capture = cv2.VideoCapture(str(clip_dir / record.file))
        folder = out / record.video_id
        folder.mkdir(parents=True, exist_ok=True)
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index in NOTEBOOK_FRAMES:
                cv2.imwrite(str(folder / f"{index:04d}.jpg"), frame)
            index += 1
        capture.release()
    prep_s = time.perf_counter() - began
    began = time.perf_counter()
    loads = 0
    for record in records:
        frames = [
            cv2.resize(cv2.imread(str(path)), (frame_size, frame_size))
            for path in sorted((out / record.video_id).glob("*.jpg"))
        ]
        loads += bool(frames)
    load_s = time.perf_counter() - began
    files, size = _disk(out)
    return {"videos": len(records), "prep_s": prep_s, "load_s": load_s, "loads": loads, "files": files, "bytes": size}


def route_signflow(clip_dir: Path, work: Path, frame_size: int, workers: int) -> dict:
    import numpy as np

    from signflow import crop, preprocess, sampling
    from signflow.config import load_params
    from signflow.shards import ShardReader

    params = load_params(REPO_ROOT / "params.yaml")
    extract = params.extract.model_copy(update={"frame_size": frame_size, "num_workers": workers})
    config = preprocess.PreprocessConfig.from_params(extract, params.crop)
    records = _records(clip_dir)
    began = time.perf_counter()
    plans = []
    for record, plan, _error in crop.plan_all(records, clip_dir, params.crop):
        if plan is not None:
            plan.split = "train"
            plans.append(plan.__dict__)
    crop_s = time.perf_counter() - began
    summary = preprocess.extract_features(
        plans, clip_dir, work / "features", config, shard_bytes=extract.shard_mb * 1024**2,
        num_workers=workers, chunk_size=extract.chunk_size, progress=False,
    )
    prep_s = time.perf_counter() - began
    reader = ShardReader(work / "features" / "train")
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    for position in range(len(reader)):
        clip = reader.read(position)
        clip = clip[sampling.train_indices(rng, len(clip), config.seq_len, speed_min=0.8, speed_max=1.2)]
    load_s = time.perf_counter() - began
    files, size = _disk(work / "features")
    return {"videos": len(records), "extracted": summary["extracted"], "skipped": summary["skipped"],
            "crop_s": crop_s, "prep_s": prep_s, "load_s": load_s, "loads": len(reader), "files": files, "bytes": size}


def route_fusion(clip_dir: Path, work: Path, frame_size: int, limit: int) -> dict:
    """Crop fused into extract's decode pass vs crop as its own pass (decode, crop, re-encode; then extract).

    Single process, first ``limit`` clips: the figure behind "crop is planned, extract applies it".
    """
    from signflow import crop, preprocess, video
    from signflow.config import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    extract = params.extract.model_copy(update={"frame_size": frame_size})
    config = preprocess.PreprocessConfig.from_params(extract, params.crop)
    plans = [plan for _, plan, _ in crop.plan_all(_records(clip_dir)[:limit], clip_dir, params.crop) if plan]
    began = time.perf_counter()
    for plan in plans:
        preprocess.decode_to_stored(clip_dir / plan.file, start=plan.start, stop=plan.stop, box=plan.box, config=config)
    fused_s = time.perf_counter() - began
    began = time.perf_counter()
    for plan in plans:
        x0, y0, x1, y1 = plan.box or (0, 0, plan.width, plan.height)
        cropped = work / f"{plan.video_id}.mp4"
        frames = (f[y0:y1, x0:x1] for _, f in video.iter_frames(clip_dir / plan.file, plan.start, plan.stop))
        video.write_video(cropped, frames, plan.fps or 25.0)
        preprocess.decode_to_stored(cropped, box=None, config=config)
    separate_s = time.perf_counter() - began
    return {"videos": len(plans), "fused_s": fused_s, "separate_s": separate_s}


def route_ffmpeg(clip_dir: Path) -> dict:
    records = _records(clip_dir)
    began = time.perf_counter()
    for record in records:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(clip_dir / record.file), "-f", "null", "-"],
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ffmpeg_s = time.perf_counter() - began
    # The same decode without one process start per clip: PyAV, frames decoded and dropped.
    import av

    began = time.perf_counter()
    for record in records:
        with av.open(str(clip_dir / record.file), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass
    return {"videos": len(records), "prep_s": ffmpeg_s, "decode_s": time.perf_counter() - began}


def _disk(path: Path) -> tuple[int, int]:
    from signflow.preprocess import folder_bytes

    return folder_bytes(path)


def _child(route: str, clip_dir: Path, work: Path, frame_size: int, workers: int, fusion_clips: int) -> dict:
    """Run one route in a fresh process; add its peak RSS (``wait4`` rusage, children included)."""
    cmd = [sys.executable, __file__, "--_route", route, "--_clip-dir", str(clip_dir), "--_work", str(work),
           "--frame-size", str(frame_size), "--workers", str(workers),
           "--fusion-clips", str(fusion_clips)]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"route {route} failed on {clip_dir} (exit {process.returncode})")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole route, its workers and start-up included
    return result


# --------------------------------------------------------------------------- report


def _row(name: str, clip_set: str, r: dict, ffmpeg_s: float, epochs: int) -> str:
    total = r["prep_s"] + r.get("load_s", 0.0)
    total_n = r["prep_s"] + epochs * r.get("load_s", 0.0)
    loads = f"{r['loads'] / r['load_s']:.0f}" if r.get("load_s") else "-"
    files = f"{r['files']:,}" if "files" in r else "-"
    size = f"{r['bytes'] / 1e6:.1f} MB" if "bytes" in r else "-"
    vs_ffmpeg = f"{r['prep_s'] / ffmpeg_s:.2f}x" if ffmpeg_s else "-"
    return (f"| {clip_set} | {name} | {r['videos']} | {r['videos'] / r['prep_s']:.1f} | {r['prep_s']:.2f} | {loads} "
            f"| {total:.2f} | {total_n:.1f} | {files} | {size} | {r['peak_rss_mb']:.0f} | {vs_ffmpeg} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", type=Path, help="clip folders (default: wlasl-clips + synthetic)")
    parser.add_argument("--frame-size", type=int, default=64, help="training frame side for both routes")
    parser.add_argument("--workers", type=int, default=2, help="signflow extract processes")
    parser.add_argument("--epochs", type=int, help="epochs for the end-to-end column (default: train.epochs)")
    parser.add_argument("--fusion-clips", type=int, default=40, help="clips for the fused-vs-separate crop check")
    parser.add_argument("--keep", type=Path, help="keep the work folder here instead of a temporary one")
    parser.add_argument("--_route", help=argparse.SUPPRESS)
    parser.add_argument("--_clip-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--_work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._route:  # child process: one route, result as JSON on the last line
        import logging

        logging.disable(logging.WARNING)
        if args._route == "notebook":
            result = route_notebook(args._clip_dir, args._work, args.frame_size)
        elif args._route == "signflow":
            result = route_signflow(args._clip_dir, args._work, args.frame_size, args.workers)
        elif args._route == "fusion":
            result = route_fusion(args._clip_dir, args._work, args.frame_size, args.fusion_clips)
        else:
            result = route_ffmpeg(args._clip_dir)
        print(json.dumps(result))
        return 0

    if args.epochs is None:
        from signflow.config import load_params

        args.epochs = load_params(REPO_ROOT / "params.yaml").train.epochs
    work_root = args.keep or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        clip_dirs = list(args.clips or [])
        if not clip_dirs:
            if DEFAULT_CLIPS.is_dir():
                clip_dirs.append(DEFAULT_CLIPS)
            else:
                print(f"note: {DEFAULT_CLIPS} not found; synthetic set only", file=sys.stderr)
            clip_dirs.append(make_synthetic(work_root / "synthetic-data"))
        rows: list[str] = []
        ratios: list[str] = []
        fusion: list[str] = []
        for clip_dir in clip_dirs:
            label = clip_dir.name
            results = {}
            for route in ("ffmpeg", "notebook", "signflow", "fusion"):
                work = work_root / label / route
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                print(f"running {route} on {clip_dir} ...", file=sys.stderr)
                results[route] = _child(route, clip_dir, work, args.frame_size, args.workers, args.fusion_clips)
            ffmpeg_s = results["ffmpeg"]["prep_s"]
            rows.append(_row("(c) ffmpeg -f null, 1 process per clip", label, results["ffmpeg"], ffmpeg_s, args.epochs))
            decode_only = {**results["ffmpeg"], "prep_s": results["ffmpeg"]["decode_s"]}
            rows.append(_row("(c') decode only, in-process (PyAV, 1 proc)", label, decode_only, ffmpeg_s, args.epochs))
            rows.append(_row("(a) notebook: cv2 + JPEGs", label, results["notebook"], ffmpeg_s, args.epochs))
            rows.append(_row(f"(b) signflow crop+extract ({args.workers} proc)", label, results["signflow"], ffmpeg_s,
                             args.epochs))
            a, b = results["notebook"], results["signflow"]
            n = args.epochs
            ratios.append(
                f"| {label} | {(a['prep_s'] + a['load_s']) / (b['prep_s'] + b['load_s']):.1f}x "
                f"| {(a['prep_s'] + n * a['load_s']) / (b['prep_s'] + n * b['load_s']):.1f}x "
                f"| {(b['loads'] / b['load_s']) / (a['loads'] / a['load_s']):.0f}x "
                f"| {a['files'] / max(1, b['files']):.0f}x | {b['prep_s'] / ffmpeg_s:.2f}x "
                f"| {b['prep_s'] / results['ffmpeg']['decode_s']:.2f}x "
                f"| {b['extracted']}/{b['videos']} |"
            )
            f = results["fusion"]
            fusion.append(f"| {label} | {f['videos']} | {f['fused_s']:.2f} | {f['separate_s']:.2f} "
                          f"| {f['separate_s'] / f['fused_s']:.1f}x |")
        print(f"\nframe_size {args.frame_size}, signflow workers {args.workers}, {os.cpu_count()} CPUs\n")
        print(f"| clips | route | videos | videos/s | prep s | clip loads/s | end to end s, 1 epoch "
              f"| end to end s, {args.epochs} epochs | files | on disk "
              "| peak RSS MB | prep / ffmpeg |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        print(f"\n| clips | (a)/(b) end to end, 1 epoch | (a)/(b) end to end, {args.epochs} epochs "
              "| (b)/(a) loads/s | (a)/(b) files | (b) prep / ffmpeg | (b) prep / decode only | extracted |")
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(ratios))
        print("\n| clips | videos | crop fused in decode s | crop as own pass + extract s | separate / fused |")
        print("|---|---|---|---|---|")
        print("\n".join(fusion))
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
