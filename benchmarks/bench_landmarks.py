"""Landmark pathway benchmark: extraction throughput/detection on real clips, accuracy on real keypoints.

1. **Extraction** (needs ``.venv-landmarks``): MediaPipe Holistic over the real
   WLASL clips in ``../shared/data/wlasl-clips`` (199; ``--limit N`` for fewer),
   with ``--workers`` processes (2 = the 2 cores of the dev machine). Prints
   frames/s, clips/s and the fraction of frames with a pose, each hand, any hand.
   ``--clip-set wlasl100-videos --per-gloss-spread 100 --workers 1 2 3 --skip-accuracy --results F``
   measures frames/s per worker and the scaling with workers on a fixed subset of the
   2038 WLASL100 clips (the first clip of each of the 100 glosses), written to ``F``;
   ``manifest_frames`` (the clips' own frame counts) next to ``frames`` (what MediaPipe saw)
   shows each frame went through once (wlasl-clips' manifest counts come from the container
   and are sometimes wrong, so compare on wlasl100-videos).
2. **Accuracy**: ``landmark_lstm`` and ``landmark_gcn`` trained on the real
   MediaPipe Hands sequences of ``../shared/data/wlasl-hand-keypoints``
   (5 glosses, official WLASL split train 70 / val 16 / test 10) through the
   project's own machinery: :func:`signflow.training.run.train` (the train stage)
   and :class:`signflow.inference.Predictor` + :func:`signflow.evaluation.predict_split`
   (the evaluate stage); test top-1 against the majority-class baseline.
   ``--rgb-metrics reports/evaluate/metrics.json`` adds an RGB run's test top-1
   (the synthetic default pipeline) as a reference row: a different task, shown
   side by side, not a like-for-like comparison.

Run::

    .venv/bin/python benchmarks/bench_landmarks.py --limit 40 --epochs 40
    .venv/bin/python benchmarks/bench_landmarks.py --skip-extract --write-docs docs/landmarks.md
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from signflow.config import LandmarksParams, ModelParams, TrainParams, parse_params  # noqa: E402

SHARED = Path(os.environ.get("SIGNFLOW_SHARED_DATA", REPO.parent / "shared" / "data"))
DOC_BEGIN, DOC_END = "<!-- bench_landmarks:begin -->", "<!-- bench_landmarks:end -->"


def clip_rows(clip_set: str, limit: int | None, per_gloss_spread: int | None) -> tuple[Path, list[dict[str, str]]]:
    """``(video folder, manifest rows)``: the first ``limit`` clips, or ``per_gloss_spread`` clips, one from each
    of that many glosses spread evenly over the set's glosses (the first clip of each, by video id)."""
    root = SHARED / clip_set
    with open(root / "manifest.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    videos = root / "videos" if (root / "videos").is_dir() else root
    if per_gloss_spread:
        first: dict[str, dict[str, str]] = {}
        for row in sorted(rows, key=lambda r: r["video_id"]):
            first.setdefault(row["gloss"], row)
        glosses = sorted(first)
        step = max(1, len(glosses) // per_gloss_spread)
        return videos, [first[gloss] for gloss in glosses[::step][:per_gloss_spread]]
    return videos, rows[:limit]


def bench_extraction(limit: int | None, workers: int, complexity: int, clip_set: str = "wlasl-clips",
                     per_gloss_spread: int | None = None) -> dict[str, Any]:
    from signflow.landmarks.pool import WorkerPool

    clips_dir, rows = clip_rows(clip_set, limit, per_gloss_spread)
    params = LandmarksParams(num_workers=workers, model_complexity=complexity)
    # Worker CPU time (counted once they exit): frames per CPU-second does not depend on
    # how busy the shared machine was, unlike wall-clock frames/s.
    cpu_before = _children_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        tasks = [
            {"key": row["video_id"], "path": str(clips_dir / f"{row['video_id']}.mp4"), "start": 0, "stop": None,
             "box": None, "out": str(Path(tmp) / f"{row['video_id']}.npz"), "max_frames": None}
            for row in rows
        ]  # fmt: skip
        with WorkerPool(params, workers) as pool:
            pool._ensure(min(workers, len(tasks)))  # start-up (model load) is not throughput
            started = time.perf_counter()
            results = list(pool.run(tasks))
            seconds = time.perf_counter() - started
    cpu_seconds = _children_cpu() - cpu_before
    ok = [r for r in results if r["ok"]]
    frames = sum(r["frames"] for r in ok)
    detected: Counter = Counter()
    for result in ok:
        detected.update(result["detected"])
    pose_rates = sorted(r["detected"]["pose"] / r["frames"] for r in ok)
    return {
        "clip_set": clip_set,
        "workers": workers,
        "complexity": complexity,
        "clips": len(results),
        "failed": len(results) - len(ok),
        "frames": frames,
        "seconds": seconds,
        # MediaPipe saw each frame once: the frames it processed equal the clips' own counts.
        "manifest_frames": sum(int(row["frames"]) for row in rows if row["video_id"] in {r["key"] for r in ok}),
        "frames_per_s": frames / seconds,
        "frames_per_s_per_worker": frames / seconds / workers,
        "clips_per_s": len(results) / seconds,
        "frames_per_cpu_s": frames / cpu_seconds if cpu_seconds > 0 else float("nan"),
        "rates": {part: detected[part] / max(frames, 1) for part in ("pose", "left_hand", "right_hand", "any_hand")},
        "clips_pose_below_90": sum(rate < 0.9 for rate in pose_rates),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_accuracy(arch: str, features: Path, work: Path, *, epochs: int, seed: int, landmark: dict) -> dict[str, Any]:
    from signflow.evaluation import compute_metrics, predict_split
    from signflow.inference import Predictor
    from signflow.training.run import TrainPaths, train

    model_params = ModelParams(arch=arch, dropout=0.3, landmark=landmark)
    train_params = TrainParams(
        seed=seed, epochs=epochs, batch_size=16, lr=3e-3, scheduler="one_cycle", device="cpu",
        early_stopping={"metric": "val_top1", "patience": None, "restore_best": True},
    )  # fmt: skip
    out = work / arch
    started = time.perf_counter()
    train(
        model_params, train_params,
        TrainPaths(features=features, label_map=features / "label_map.json", out=out, live=None),
        resume="never", progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    predictor = Predictor.load(out)
    scores = {}
    for split in ("val", "test"):
        predictions = predict_split(predictor, features / split, split, progress=False)
        metrics = compute_metrics(predictions.logits, predictions.labels, predictor.label_map, top_k=(1, 2))
        scores[split] = metrics["top1"]
    parameters = sum(p.numel() for p in predictor.model.parameters())
    return {"arch": arch, "val_top1": scores["val"], "test_top1": scores["test"], "train_s": seconds,
            "epochs": epochs, "parameters": parameters}  # fmt: skip


def majority_baseline(features: Path) -> float:
    from signflow.shards import ShardReader

    train_labels = Counter(item["label"] for item in ShardReader(features / "train").items)
    majority = train_labels.most_common(1)[0][0]
    test = [item["label"] for item in ShardReader(features / "test").items]
    return sum(label == majority for label in test) / len(test)


def format_tables(extraction: list[dict[str, Any]], accuracy: list[dict[str, Any]], baseline: float | None,
                  rgb: dict[str, Any] | None) -> str:  # fmt: skip
    lines = []
    if extraction:
        lines += [
            "Extraction (MediaPipe Holistic, real WLASL clips, CPU):",
            "",
            "| workers | complexity | clips | failed | frames | frames/s (wall) | frames per CPU-s | clips/s "
            "| pose | left hand | right hand | any hand |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in extraction:
            r = row["rates"]
            lines.append(
                f"| {row['workers']} | {row['complexity']} | {row['clips']} | {row['failed']} | {row['frames']} | "
                f"{row['frames_per_s']:.1f} | {row['frames_per_cpu_s']:.1f} | {row['clips_per_s']:.2f} | "
                f"{r['pose']:.1%} | {r['left_hand']:.1%} | {r['right_hand']:.1%} | {r['any_hand']:.1%} |"
            )
        if len(extraction) > 1:
            base = extraction[0]["frames_per_s"]
            ratios = ", ".join(f"{row['workers']} workers x{row['frames_per_s'] / base:.2f}" for row in extraction[1:])
            lines.append(f"\nSpeed-up vs {extraction[0]['workers']} worker(s): {ratios}")
        lines.append("")
    if accuracy:
        lines += [
            "Accuracy (real MediaPipe Hands keypoints, 5 glosses, official WLASL split 70/16/10, CPU):",
            "",
            "| model | data | params | epochs | train s | val top-1 | test top-1 |",
            "|---|---|---|---|---|---|---|",
        ]
        if baseline is not None:
            lines.append(f"| majority class | hand keypoints | - | - | - | - | {baseline:.1%} |")
        for row in accuracy:
            if "error" in row:
                lines.append(f"| {row['arch']} | hand keypoints | - | - | - | - | failed: {row['error']} |")
                continue
            lines.append(
                f"| {row['arch']} | hand keypoints | {row['parameters']:,} | {row['epochs']} | {row['train_s']:.0f} | "
                f"{row['val_top1']:.1%} | {row['test_top1']:.1%} |"
            )
        if rgb is not None:
            lines.append(f"| {rgb['arch']} (RGB) | {rgb['data']} | - | - | - | - | {rgb['test_top1']:.1%} |")
    return "\n".join(lines)


def write_docs(path: Path, text: str, command: str) -> None:
    doc = path.read_text(encoding="utf-8")
    if DOC_BEGIN not in doc or DOC_END not in doc:
        raise SystemExit(f"{path}: no {DOC_BEGIN} ... {DOC_END} block to replace")
    head, rest = doc.split(DOC_BEGIN, 1)
    _, tail = rest.split(DOC_END, 1)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    block = f"{DOC_BEGIN}\nMeasured {stamp} with `{command}` (2 shared CPU cores).\n\n{text}\n{DOC_END}"
    path.write_text(head + block + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N clips of the set")
    parser.add_argument("--clip-set", default="wlasl-clips", choices=("wlasl-clips", "wlasl100-videos"),
                        help="real clips under ../shared/data to extract")
    parser.add_argument("--per-gloss-spread", type=int, default=None,
                        help="N clips, one from each of N glosses spread evenly over the set (instead of --limit)")
    parser.add_argument("--results", type=Path, default=None,
                        help="write the extraction rows (and the load average) to this JSON file")
    parser.add_argument("--workers", type=int, nargs="+", default=[2], help="worker counts to compare")
    parser.add_argument("--complexity", type=int, default=1, choices=(0, 1))
    parser.add_argument("--skip-extract", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--archs", nargs="+", default=["landmark_lstm", "landmark_gcn"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gcn-channels", type=int, default=32, help="model.landmark.gcn_channels for the run")
    parser.add_argument("--rgb-metrics", type=Path, default=None, help="an RGB run's reports/evaluate/metrics.json")
    parser.add_argument("--write-docs", type=Path, default=None, help="replace the results block in this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)  # tiny models on shared cores: intra-op threads only contend

    if not (SHARED / "README.md").is_file():
        print(f"real data not found at {SHARED} (set SIGNFLOW_SHARED_DATA)", file=sys.stderr)
        return 2
    extraction = []
    if not args.skip_extract:
        load_before = [round(v, 2) for v in os.getloadavg()]
        for workers in args.workers:
            extraction.append(bench_extraction(args.limit, workers, args.complexity, args.clip_set,
                                               args.per_gloss_spread))
            extraction[-1]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
            print(json.dumps(extraction[-1]), flush=True)
        if args.results is not None:
            from signflow import atomic

            atomic.write_json(args.results, {
                "clip_set": args.clip_set, "limit": args.limit, "per_gloss_spread": args.per_gloss_spread,
                "load_average_before": load_before, "cpus": len(os.sched_getaffinity(0)),
                "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": extraction,
            })
    accuracy: list[dict[str, Any]] = []
    baseline = None
    if not args.skip_accuracy:
        from signflow.landmarks import hand_keypoints

        with tempfile.TemporaryDirectory() as tmp:
            features = Path(tmp) / "hands"
            hand_keypoints.convert(SHARED / "wlasl-hand-keypoints", features, parse_params({}).landmarks)
            baseline = majority_baseline(features)
            for arch in args.archs:
                try:
                    row = bench_accuracy(
                        arch, features, Path(tmp), epochs=args.epochs, seed=args.seed,
                        landmark={"gcn_channels": args.gcn_channels},
                    )  # fmt: skip
                except Exception as error:  # noqa: BLE001 - report the gap in the table, keep benchmarking
                    row = {"arch": arch, "error": f"{type(error).__name__}: {error}"[:160]}
                accuracy.append(row)
                print(json.dumps(row), flush=True)
    rgb = None
    if args.rgb_metrics is not None and args.rgb_metrics.is_file():
        metrics = json.loads(args.rgb_metrics.read_text(encoding="utf-8"))
        top1 = metrics.get("test_top1", metrics.get("test", {}).get("top1"))
        if top1 is not None:
            rgb = {"arch": metrics.get("arch", "rgb"), "data": "synthetic default", "test_top1": float(top1)}
    text = format_tables(extraction, accuracy, baseline, rgb)
    print(text)
    if args.write_docs is not None:
        write_docs(args.write_docs, text, "benchmarks/bench_landmarks.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
