"""Extract benchmark: the WLASL-notebook route vs signflow's crop+extract, on the same clips.

(a) *notebook*: the route of the WLASL tutorials. ``cv2.VideoCapture`` decodes every
    frame of every video, frames 5..34 (30 frames) are written as JPEGs, one folder per
    video; training then loads each sequence with ``cv2.imread`` + ``cv2.resize``.
(b) *signflow*: the crop stage (probe + plan) and the extract stage (one decode pass,
    crop, resize, sample, sharded ``.npy``, ``extract.num_workers`` processes); training
    loads a clip with one ``ShardReader.read`` (memory-mapped slice) + temporal sampling.
(c) ``ffmpeg -i clip -f null -`` on every clip, one after another; (c') the same decode in one
    process (PyAV, frames dropped); (c'') that decode with as many processes as extract uses and
    the same decoder threads per process: the decode limit at equal cores, which (b)'s
    preparation is measured against (target: <= 1.15x); (c''') that decode plus the work per stored
    frame that extract cannot avoid (the box's RGB conversion and the resize of ``extract.resize``, on the
    frames extract keeps), same processes: (b) against it is what extract's own machinery costs (the
    hold budget, sampling, the hand-off to the parent and the shard writes).

Each route runs in its own child process, so the peak RSS reported is that route's.
"End to end" = preparation + loading every clip once (1 epoch), and preparation + ``--epochs``
loads of every clip (default ``train.epochs`` from params.yaml: training reads each clip once per epoch).

(c''), (c''') and (b) run alternately ``--repeats`` times, so both see the same load; the smallest time of
each is compared (and every run is kept in the JSON). The load average is recorded before and after.

Run:  ``python benchmarks/bench_extract.py`` (the 199 real clips in ../shared/data/wlasl-clips
and the default synthetic set) or ``python benchmarks/bench_extract.py --clips DIR [DIR ...]``
where DIR holds videos (or a ``videos/`` folder of them, as wlasl100-videos) plus an optional
``index.json`` (WLASL schema) or ``manifest.csv`` (``video_id``, ``bbox`` columns, as in
wlasl-clips); ``--routes`` runs a subset. Prints markdown tables and merges the figures into
``benchmarks/results/extract.json`` (one entry per clip set). ``--profile`` instead runs (b)'s
decode in one process under cProfile and prints where the time goes.

    python benchmarks/bench_extract.py --clips ../shared/data/wlasl-clips --fusion-clips 0 --repeats 2
    python benchmarks/bench_extract.py --clips ../shared/data/wlasl100-videos --routes decode_procs signflow notebook
"""

from __future__ import annotations

import argparse
import contextlib
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
RESULTS = REPO_ROOT / "benchmarks" / "results" / "extract.json"
ROUTES = ("ffmpeg", "decode_procs", "decode_store", "decode_store_swscale", "notebook", "signflow", "signflow_swscale",
          "fusion")
NOTEBOOK_FRAMES = range(5, 35)  # the tutorials' "frames 5..35" (Python range: 30 frames)
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}


# --------------------------------------------------------------------------- clip sets


def _records(clip_dir: Path) -> list:
    """Manifest-like records (signflow.splits.Record) for the videos of ``clip_dir``."""
    from signflow import splits

    clip_dir = _video_dir(clip_dir)
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


def _video_dir(clip_dir: Path) -> Path:
    """The folder holding the videos: ``clip_dir`` itself, or its ``videos/`` (wlasl100-videos' layout)."""
    return clip_dir / "videos" if (clip_dir / "videos").is_dir() and not (clip_dir / "index.json").is_file() else clip_dir


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
    clip_dir = _video_dir(clip_dir)
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


def _recorded_probes(records: list, video_dir: Path) -> dict:
    """Each readable video's probe, as download records it in index.json (crop then plans from these)."""
    from signflow import video
    from signflow.sources import probes

    recorded = {}
    for record in records:
        with contextlib.suppress(video.VideoError):
            recorded[record.video_id] = probes.probe_file(video_dir / record.file)
    return recorded


def route_signflow(clip_dir: Path, work: Path, frame_size: int, workers: int, resize: str = "opencv_area") -> dict:
    import numpy as np

    from signflow import crop, sampling
    from signflow.config import load_params
    from signflow.extract import rgb as rgb_extract
    from signflow.feature_spec import RgbFeatureSpec
    from signflow.shards import ShardReader

    params = load_params(REPO_ROOT / "params.yaml")
    extract = params.extract.model_copy(update={"frame_size": frame_size, "num_workers": workers, "resize": resize})
    config = RgbFeatureSpec.from_params(extract, params.crop)
    records = _records(clip_dir)
    clip_dir = _video_dir(clip_dir)
    # As `dvc repro` runs it: download recorded each video's probe in index.json (it opens every file
    # to verify it anyway), so crop plans from the index and extract is the only reader of the videos.
    # The probes' own time is reported beside (probe_s), not counted in prep_s.
    began = time.perf_counter()
    recorded = _recorded_probes(records, clip_dir)
    probe_s = time.perf_counter() - began
    cpu, began = _cpu_s(), time.perf_counter()
    plans = []
    for record, plan, _error in crop.plan_all(records, clip_dir, params.crop, recorded=recorded):
        if plan is not None:
            plan.split = "train"
            plans.append(plan.__dict__)
    crop_s = time.perf_counter() - began
    summary = rgb_extract.extract_features(
        plans, clip_dir, work / "features", config, shard_bytes=extract.shard_mb * 1024**2,
        num_workers=workers, chunk_size=extract.chunk_size, progress=False,
    )
    prep_s, prep_cpu_s = time.perf_counter() - began, _cpu_s() - cpu
    reader = ShardReader(work / "features" / "train")
    rng = np.random.default_rng(0)
    began = time.perf_counter()
    for position in range(len(reader)):
        clip = reader.read(position)
        clip = clip[sampling.train_indices(rng, len(clip), config.seq_len, speed_min=0.8, speed_max=1.2)]
    load_s = time.perf_counter() - began
    files, size = _disk(work / "features")
    return {"videos": len(records), "extracted": summary["extracted"], "skipped": summary["skipped"],
            "crop_s": crop_s, "probe_s": probe_s, "prep_s": prep_s, "prep_cpu_s": prep_cpu_s, "load_s": load_s, "loads": len(reader), "files": files, "bytes": size}


def route_fusion(clip_dir: Path, work: Path, frame_size: int, limit: int) -> dict:
    """Crop fused into extract's decode pass vs crop as its own pass (decode, crop, re-encode; then extract).

    Single process, first ``limit`` clips: the figure behind "crop is planned, extract applies it".
    """
    from signflow import crop, preprocess, video
    from signflow.config import load_params
    from signflow.feature_spec import RgbFeatureSpec

    params = load_params(REPO_ROOT / "params.yaml")
    extract = params.extract.model_copy(update={"frame_size": frame_size})
    config = RgbFeatureSpec.from_params(extract, params.crop)
    records = _records(clip_dir)[:limit]
    clip_dir = _video_dir(clip_dir)
    plans = [plan for _, plan, _ in crop.plan_all(records, clip_dir, params.crop) if plan]
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
    clip_dir = _video_dir(clip_dir)
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


def _cpu_s() -> float:
    """CPU seconds of this process and its reaped children (pool workers count once the pool is closed)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _decode_clip(path: str) -> int:
    """(c'') worker: decode every frame of one clip, converting none; the frame count."""
    from signflow import video

    return sum(1 for _ in video.iter_lazy_frames(path, threads=_DECODE_THREADS[0]))


_DECODE_THREADS = [1]


def _set_decode_threads(threads: int) -> None:
    from signflow.extract.rgb import keep_freed_memory

    keep_freed_memory()  # as extract's workers: the limit is measured with the allocator extract uses
    _DECODE_THREADS[0] = threads


def route_decode_procs(clip_dir: Path, workers: int) -> dict:
    """(c''): the decode alone with extract's processes and decoder threads per process (fork pool)."""
    import multiprocessing

    from signflow.extract.rgb import decode_threads

    records = _records(clip_dir)
    paths = [str(_video_dir(clip_dir) / record.file) for record in records]
    threads = decode_threads(workers)
    cpu, began = _cpu_s(), time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(workers, _set_decode_threads, (threads,))
    frames = sum(pool.imap(_decode_clip, paths, chunksize=4))
    pool.close()
    pool.join()
    return {"videos": len(records), "prep_s": time.perf_counter() - began, "prep_cpu_s": _cpu_s() - cpu,
            "frames": frames, "procs": workers, "threads_per_proc": threads}


def _decode_store_clip(task: tuple[str, int, int | None, tuple | None, int]) -> int:
    """(c''') worker: decode every frame of one clip and make stored frames of only those extract keeps
    (:func:`signflow.preprocess.store_frame`), chosen on the plan's count known up front; none of
    extract's machinery (no hold budget, no shards, no hand-off to the parent)."""
    import numpy as np

    from signflow import preprocess, sampling, video
    from signflow.extract.rgb import _worker_state

    path, start, stop, box, count = task
    config = _worker_state["config"]
    expected = (min(stop, count) if stop is not None else count) - start
    wanted = set(sampling.uniform_indices(max(1, expected), config.stored_frames).tolist())
    stored = [preprocess.store_frame(frame, box, config)
              for index, frame in video.iter_lazy_frames(path, start, stop, threads=_worker_state["threads"])
              if index - start in wanted]
    return len(np.stack(stored)) if stored else 0


def route_decode_store(clip_dir: Path, frame_size: int, workers: int, resize: str = "opencv_area") -> dict:
    """(c'''): (c'') plus the work per stored frame that extract cannot avoid (the box's conversion to RGB
    and the resize of ``extract.resize``), same processes: the limit for the work extract must do."""
    import multiprocessing

    from signflow import crop
    from signflow.config import load_params
    from signflow.extract.rgb import _init_worker, decode_threads
    from signflow.feature_spec import RgbFeatureSpec

    params = load_params(REPO_ROOT / "params.yaml")
    extract = params.extract.model_copy(update={"frame_size": frame_size, "resize": resize})
    config = RgbFeatureSpec.from_params(extract, params.crop)
    records = _records(clip_dir)
    video_dir = _video_dir(clip_dir)
    recorded = _recorded_probes(records, video_dir)
    tasks = [(str(video_dir / plan.file), plan.start, plan.stop, plan.box if config.use_bbox else None, plan.num_frames)
             for _, plan, _ in crop.plan_all(records, video_dir, params.crop, recorded=recorded) if plan is not None]
    threads = decode_threads(workers)
    cpu, began = _cpu_s(), time.perf_counter()
    # Extract's own worker set-up (OpenCV threads, allocator, spec, decoder threads): the same settings by construction.
    pool = multiprocessing.get_context("fork").Pool(workers, _init_worker, (str(video_dir), config.to_json(), threads))
    stored = sum(pool.imap(_decode_store_clip, tasks, chunksize=4))
    pool.close()
    pool.join()
    return {"videos": len(records), "prep_s": time.perf_counter() - began, "prep_cpu_s": _cpu_s() - cpu,
            "stored_frames": stored, "procs": workers, "threads_per_proc": threads}


def _disk(path: Path) -> tuple[int, int]:
    from signflow.extract.rgb import folder_bytes

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


def _row(name: str, clip_set: str, r: dict, ffmpeg_s: float | None, epochs: int) -> str:
    total = r["prep_s"] + r.get("load_s", 0.0)
    total_n = r["prep_s"] + epochs * r.get("load_s", 0.0)
    loads = f"{r['loads'] / r['load_s']:.0f}" if r.get("load_s") else "-"
    files = f"{r['files']:,}" if "files" in r else "-"
    size = f"{r['bytes'] / 1e6:.1f} MB" if "bytes" in r else "-"
    vs_ffmpeg = f"{r['prep_s'] / ffmpeg_s:.2f}x" if ffmpeg_s else "-"
    return (f"| {clip_set} | {name} | {r['videos']} | {r['videos'] / r['prep_s']:.1f} | {r['prep_s']:.2f} | {loads} "
            f"| {total:.2f} | {total_n:.1f} | {files} | {size} | {r['peak_rss_mb']:.0f} | {vs_ffmpeg} |")


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _fastest(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["prep_s"])


def run_clip_set(clip_dir: Path, routes: list[str], args: argparse.Namespace, work_root: Path) -> dict:
    """Every requested route on one clip set; (c'') and (b) alternate ``args.repeats`` times."""
    label = clip_dir.name
    runs: dict[str, list[dict]] = {route: [] for route in routes}
    load_before = _load()

    def one(route: str, attempt: int) -> None:
        work = work_root / label / f"{route}-{attempt}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"running {route} on {clip_dir} (load {_load()}) ...", file=sys.stderr)
        runs[route].append(_child(route, clip_dir, work, args.frame_size, args.workers, args.fusion_clips))
        shutil.rmtree(work, ignore_errors=True)

    for route in ("ffmpeg", "notebook"):
        if route in routes:
            one(route, 0)
    for attempt in range(args.repeats):
        for route in ("decode_procs", "decode_store", "signflow", "decode_store_swscale", "signflow_swscale"):
            if route in routes:
                one(route, attempt)
    if "fusion" in routes and args.fusion_clips > 0:
        one("fusion", 0)
    return {"label": label, "runs": runs, "load_before": load_before, "load_after": _load()}


def summarise(result: dict, workers: int) -> dict:
    """The issue's JSON shape for one clip set (plus the runs behind it)."""
    runs = result["runs"]
    out: dict = {"procs": workers, "cpus": len(os.sched_getaffinity(0)),
                 "runs_of": {route: {"runs": len(found), "load_average_before": result["load_before"],
                                     "load_average_after": result["load_after"],
                                     "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                             for route, found in runs.items() if found}}
    if runs.get("signflow"):
        b = _fastest(runs["signflow"])
        out.update(prep_s=round(b["prep_s"], 2), crop_s=round(b["crop_s"], 2), probe_s=round(b["probe_s"], 2),
                   videos=b["videos"],
                   extracted=b["extracted"], prep_s_runs=[round(r["prep_s"], 2) for r in runs["signflow"]],
                   prep_cpu_s=round(min(r["prep_cpu_s"] for r in runs["signflow"]), 2))
    if runs.get("decode_procs"):
        c = _fastest(runs["decode_procs"])
        out.update(decode_only_same_procs_s=round(c["prep_s"], 2), decode_threads_per_proc=c["threads_per_proc"],
                   frames=c["frames"], decode_only_same_procs_s_runs=[round(r["prep_s"], 2)
                                                                      for r in runs["decode_procs"]],
                   decode_only_cpu_s=round(min(r["prep_cpu_s"] for r in runs["decode_procs"]), 2))
        out.setdefault("videos", c["videos"])
    if runs.get("signflow") and runs.get("decode_procs"):
        out["prep_over_decode"] = round(out["prep_s"] / out["decode_only_same_procs_s"], 3)
        # CPU seconds hardly depend on how busy the shared machine is (wall time does): the same
        # ratio measured in the work each route did.
        out["prep_over_decode_cpu"] = round(out["prep_cpu_s"] / out["decode_only_cpu_s"], 3)
    if runs.get("notebook") and runs.get("signflow"):
        a, b = runs["notebook"][0], _fastest(runs["signflow"])
        out["notebook_s_1_epoch"] = round(a["prep_s"] + a["load_s"], 2)
        out["notebook_over_signflow_1_epoch"] = round((a["prep_s"] + a["load_s"]) / (b["prep_s"] + b["load_s"]), 3)
        # The same in CPU seconds of each whole route (one process vs extract's two): no credit for
        # using both cores, little sensitivity to the load, so a lower bound of the idle-machine ratio.
        out["notebook_over_signflow_1_epoch_cpu"] = round(a["cpu_s"] / min(r["cpu_s"] for r in runs["signflow"]), 3)
    if runs.get("decode_store"):
        out.update(_over_store(runs["decode_store"], out.get("prep_s"), out.get("prep_cpu_s")))
    if runs.get("signflow_swscale"):
        # extract.resize: swscale_area (other pixels, opt-in): the same figures under their own key.
        fast = _fastest(runs["signflow_swscale"])
        entry = {"prep_s": round(fast["prep_s"], 2), "prep_s_runs": [round(r["prep_s"], 2) for r in runs["signflow_swscale"]],
                 "prep_cpu_s": round(min(r["prep_cpu_s"] for r in runs["signflow_swscale"]), 2)}
        if runs.get("decode_procs"):
            entry["prep_over_decode"] = round(entry["prep_s"] / out["decode_only_same_procs_s"], 3)
            entry["prep_over_decode_cpu"] = round(entry["prep_cpu_s"] / out["decode_only_cpu_s"], 3)
        if runs.get("notebook"):
            a = runs["notebook"][0]
            entry["notebook_over_signflow_1_epoch"] = round((a["prep_s"] + a["load_s"]) / (fast["prep_s"] + fast["load_s"]), 3)
            entry["notebook_over_signflow_1_epoch_cpu"] = round(a["cpu_s"] / min(r["cpu_s"] for r in runs["signflow_swscale"]), 3)
        if runs.get("decode_store_swscale"):
            entry.update(_over_store(runs["decode_store_swscale"], entry["prep_s"], entry["prep_cpu_s"]))
        out["swscale_area"] = entry
    if runs.get("ffmpeg"):
        out["ffmpeg_s"] = round(runs["ffmpeg"][0]["prep_s"], 2)
        out["decode_only_1_proc_s"] = round(runs["ffmpeg"][0]["decode_s"], 2)
    return out


def _over_store(store_runs: list[dict], prep_s: float | None, prep_cpu_s: float | None) -> dict:
    """(c''') figures, and (b) against them: what extract's own machinery adds to the work it must do."""
    fastest = _fastest(store_runs)
    out = {"decode_store_same_procs_s": round(fastest["prep_s"], 2),
           "decode_store_same_procs_s_runs": [round(r["prep_s"], 2) for r in store_runs],
           "decode_store_cpu_s": round(min(r["prep_cpu_s"] for r in store_runs), 2)}
    if prep_s:
        out["prep_over_decode_store"] = round(prep_s / out["decode_store_same_procs_s"], 3)
        out["prep_over_decode_store_cpu"] = round(prep_cpu_s / out["decode_store_cpu_s"], 3)
    return out


def write_results(summaries: dict[str, dict], path: Path = RESULTS) -> None:
    """Merge into ``benchmarks/results/extract.json`` (other clip sets' entries are kept), atomically."""
    from signflow import atomic

    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    for label, summary in summaries.items():
        # Per clip set, the routes run now replace their own figures; the others' stay, with their load.
        merged = existing.get(label, {})
        merged.update({k: v for k, v in summary.items() if k != "runs_of"})
        merged["runs_of"] = {**merged.get("runs_of", {}), **summary["runs_of"]}
        existing[label] = merged
    atomic.write_json(path, existing)


def profile(clip_dir: Path, frame_size: int, limit: int | None, resize: str = "opencv_area") -> None:
    """(b)'s per-clip work in this process under cProfile: where the time beyond decoding goes."""
    import cProfile
    import pstats

    import cv2

    from signflow import crop, preprocess
    from signflow.config import load_params
    from signflow.feature_spec import RgbFeatureSpec

    cv2.setNumThreads(1)
    params = load_params(REPO_ROOT / "params.yaml")
    config = RgbFeatureSpec.from_params(params.extract.model_copy(update={"frame_size": frame_size, "resize": resize}),
                                        params.crop)
    records = _records(clip_dir)[:limit]
    video_dir = _video_dir(clip_dir)
    profiler = cProfile.Profile()
    profiler.enable()
    plans = [plan for _, plan, _ in crop.plan_all(records, video_dir, params.crop, threads=1) if plan]
    for plan in plans:
        preprocess.decode_to_stored(video_dir / plan.file, start=plan.start, stop=plan.stop, box=plan.box,
                                    config=config, num_frames=plan.num_frames, threads=1)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", type=Path, help="clip folders (default: wlasl-clips + synthetic)")
    parser.add_argument("--routes", nargs="*", choices=ROUTES, default=list(ROUTES), help="routes to run")
    parser.add_argument("--repeats", type=int, default=1, help="alternating runs of (c'') and (b); the fastest counts")
    parser.add_argument("--frame-size", type=int, default=64, help="training frame side for both routes")
    parser.add_argument("--workers", type=int, default=2, help="signflow extract processes")
    parser.add_argument("--epochs", type=int, help="epochs for the end-to-end column (default: train.epochs)")
    parser.add_argument("--fusion-clips", type=int, default=40, help="clips for the fused-vs-separate crop check")
    parser.add_argument("--keep", type=Path, help="keep the work folder here instead of a temporary one")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {RESULTS.relative_to(REPO_ROOT)}")
    parser.add_argument("--profile", action="store_true", help="profile (b)'s decode on the first --clips folder")
    parser.add_argument("--profile-clips", type=int, help="clips to profile (default: all)")
    parser.add_argument("--profile-resize", default="opencv_area", choices=("opencv_area", "swscale_area"),
                        help="extract.resize of the profiled decode")
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
        elif args._route == "signflow_swscale":
            result = route_signflow(args._clip_dir, args._work, args.frame_size, args.workers, "swscale_area")
        elif args._route == "fusion":
            result = route_fusion(args._clip_dir, args._work, args.frame_size, args.fusion_clips)
        elif args._route == "decode_procs":
            result = route_decode_procs(args._clip_dir, args.workers)
        elif args._route == "decode_store":
            result = route_decode_store(args._clip_dir, args.frame_size, args.workers)
        elif args._route == "decode_store_swscale":
            result = route_decode_store(args._clip_dir, args.frame_size, args.workers, "swscale_area")
        else:
            result = route_ffmpeg(args._clip_dir)
        print(json.dumps(result))
        return 0

    if args.profile:
        profile((args.clips or [DEFAULT_CLIPS])[0], args.frame_size, args.profile_clips, args.profile_resize)
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
        summaries: dict[str, dict] = {}
        for clip_dir in clip_dirs:
            result = run_clip_set(clip_dir, args.routes, args, work_root)
            label, runs = result["label"], result["runs"]
            summaries[label] = summary = summarise(result, args.workers)
            ffmpeg_s = runs["ffmpeg"][0]["prep_s"] if runs.get("ffmpeg") else None
            if runs.get("ffmpeg"):
                rows.append(_row("(c) ffmpeg -f null, 1 process per clip", label, runs["ffmpeg"][0], ffmpeg_s,
                                 args.epochs))
                decode_only = {**runs["ffmpeg"][0], "prep_s": runs["ffmpeg"][0]["decode_s"]}
                rows.append(_row("(c') decode only, in-process (PyAV, 1 proc)", label, decode_only, ffmpeg_s,
                                 args.epochs))
            if runs.get("decode_procs"):
                c = _fastest(runs["decode_procs"])
                rows.append(_row(f"(c'') decode only, {args.workers} proc x {c['threads_per_proc']} thread", label, c,
                                 ffmpeg_s, args.epochs))
            for route, resize in (("decode_store", "opencv_area"), ("decode_store_swscale", "swscale_area")):
                if runs.get(route):
                    rows.append(_row(f"(c''') decode + stored frames ({resize}), {args.workers} proc", label,
                                     _fastest(runs[route]), ffmpeg_s, args.epochs))
            if runs.get("notebook"):
                rows.append(_row("(a) notebook: cv2 + JPEGs", label, runs["notebook"][0], ffmpeg_s, args.epochs))
            sws = summary.get("swscale_area", {})
            variants = [("signflow", "opencv_area", summary.get("prep_over_decode", "-"),
                         summary.get("prep_over_decode_store", "-")),
                        ("signflow_swscale", "swscale_area", sws.get("prep_over_decode", "-"),
                         sws.get("prep_over_decode_store", "-"))]
            for route, resize, over_decode, over_store in variants:
                if not runs.get(route):
                    continue
                b = _fastest(runs[route])
                rows.append(_row(f"(b) signflow crop+extract ({args.workers} proc, {resize})", label, b, ffmpeg_s,
                                 args.epochs))
                if runs.get("notebook"):
                    a, n = runs["notebook"][0], args.epochs
                    ratios.append(
                        f"| {label} | {resize} | {(a['prep_s'] + a['load_s']) / (b['prep_s'] + b['load_s']):.2f}x "
                        f"| {(a['prep_s'] + n * a['load_s']) / (b['prep_s'] + n * b['load_s']):.1f}x "
                        f"| {(b['loads'] / b['load_s']) / (a['loads'] / a['load_s']):.0f}x "
                        f"| {a['files'] / max(1, b['files']):.0f}x "
                        f"| {over_decode}x | {over_store}x | {b['extracted']}/{b['videos']} |"
                    )
            if runs.get("fusion"):
                f = runs["fusion"][0]
                fusion.append(f"| {label} | {f['videos']} | {f['fused_s']:.2f} | {f['separate_s']:.2f} "
                              f"| {f['separate_s'] / f['fused_s']:.1f}x |")
        print(f"\nframe_size {args.frame_size}, signflow workers {args.workers}, "
              f"{len(os.sched_getaffinity(0))} CPUs, fastest of {args.repeats} alternating runs for (c'') and (b)\n")
        for label, summary in summaries.items():
            loads = next(iter(summary["runs_of"].values()))
            print(f"{label}: load average {loads['load_average_before']} before, "
                  f"{loads['load_average_after']} after; (b) runs {summary.get('prep_s_runs')} s, "
                  f"(c'') runs {summary.get('decode_only_same_procs_s_runs')} s; CPU s (b) {summary.get('prep_cpu_s')}, "
                  f"(c'') {summary.get('decode_only_cpu_s')}: (b)/(c'') {summary.get('prep_over_decode_cpu')}x")
        print(f"\n| clips | route | videos | videos/s | prep s | clip loads/s | end to end s, 1 epoch "
              f"| end to end s, {args.epochs} epochs | files | on disk "
              "| peak RSS MB | prep / ffmpeg |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        if ratios:
            print(f"\n| clips | extract.resize | (a)/(b) end to end, 1 epoch | (a)/(b) end to end, {args.epochs} epochs "
                  "| (b)/(a) loads/s | (a)/(b) files | (b) prep / (c'') decode only, same procs "
                  "| (b) prep / (c''') decode + stored frames | extracted |")
            print("|---|---|---|---|---|---|---|---|---|")
            print("\n".join(ratios))
        if fusion:
            print("\n| clips | videos | crop fused in decode s | crop as own pass + extract s | separate / fused |")
            print("|---|---|---|---|---|")
            print("\n".join(fusion))
        if not args.no_write:
            write_results(summaries)
            print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
