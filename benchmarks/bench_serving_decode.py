"""/predict_video latency by upload size: the served request vs the same work done in-process.

The same real WLASL100 test clip (``00635``, "accident", 83 frames, 256x256) is uploaded as it is and
upscaled by ffmpeg into 1280x720 and 1920x1080 frames (H.264, as a phone or webcam would send it).
For each, at concurrency 1, alternating so both see the same load:

- **served**: ``POST /predict_video`` to a real ``python -m serving`` (BentoML, one API worker, one
  model worker with ``serve.model_threads`` torch threads) of an RGB ``cnn_lstm`` with the default
  params' input (32 stored frames of 64x64; random weights: speed does not depend on their values);
  client-side wall time of the whole request (upload, probe, decode, preprocess, batching, forward).
- **raw**: in this process, :func:`signflow.preprocess.decode_to_stored` (decode + preprocess) and
  the model's forward on the same file, with the same torch threads: the work the server cannot avoid.
- **decode only**: every frame decoded, none converted (the decode limit).
- **server's own clock** (``timings_ms`` of each answer): decode + preprocess, the model call
  (batching and the model worker), the whole handler; served minus total is the HTTP/multipart part.
- **before**: what the service did before issue 14, emulated in-process: every frame converted to RGB
  (swscale's default threads) and resized, then sampled.

Target (issue 14): served p50 <= 1.2x raw p50 for the 720p and 1080p uploads. Prints a table and
writes ``benchmarks/results/serving_decode.json`` (with the load average before and after).

Run:  ``python benchmarks/bench_serving_decode.py [--requests 15]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the service tests' launcher (tests/served.py)

SHARED = Path(os.environ.get("SIGNFLOW_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
CLIP = SHARED / "wlasl100-videos" / "videos" / "00635.mp4"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "serving_decode.json"
SIZES = {"256x256": None, "720p": (1280, 720), "1080p": (1920, 1080)}


def make_uploads(folder: Path) -> dict[str, Path]:
    """The clip as it is, and scaled (aspect kept) and centred in 720p / 1080p frames (H.264, CRF 18)."""
    uploads = {}
    for name, size in SIZES.items():
        if size is None:
            uploads[name] = CLIP
            continue
        width, height = size
        out = folder / f"{name}.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(CLIP), "-vf",
             f"scale=-2:{height}:flags=bicubic,pad={width}:{height}:(ow-iw)/2:0", "-c:v", "libx264", "-crf", "18",
             "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an", str(out)],
            check=True,
        )  # fmt: skip
        uploads[name] = out
    return uploads


def make_model(folder: Path) -> Path:
    """The default params' RGB input (32 stored frames, 64x64, small_cnn CNN-LSTM), random weights."""
    from tiny_model import make_model_dir

    return make_model_dir(folder, seq_len=16, stored_frames=32, frame_size=64, hidden=128)


def before_path(path: Path, config) -> np.ndarray:  # noqa: ANN001 - RgbFeatureSpec
    """The pre-issue-14 serving decode: every frame converted (default swscale threads) and resized."""
    from av.video.reformatter import VideoReformatter

    from signflow import preprocess, sampling, video

    reformatter = VideoReformatter()
    small = [preprocess.resize_frame(reformatter.reformat(frame, format="rgb24").to_ndarray(), None, config)
             for _, frame in video.iter_lazy_frames(path)]
    return np.stack([small[i] for i in sampling.uniform_indices(len(small), config.stored_frames)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=15, help="requests (and raw runs) per upload size")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(REPO_ROOT)}")
    args = parser.parse_args(argv)

    import requests
    import torch

    from served import bentoml_serve
    from signflow import atomic, preprocess, video
    from signflow.inference import Predictor

    load_before = [round(v, 2) for v in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-serving-decode-"))
    uploads = make_uploads(work)
    # The service's own settings (params.yaml serve), one API and one model worker, 1 torch thread.
    serve = {"workers": 1, "model_workers": 1, "model_threads": 1}
    with bentoml_serve(work / "served", serve, make_model=make_model) as served:
        torch.set_num_threads(int(served.params["serve"]["model_threads"]))
        predictor = Predictor.load(work / "served" / "run" / "models")
        config = predictor.rgb_spec
        timings: dict[str, dict[str, list[float]]] = {}
        answers: dict[str, dict] = {}
        for name, path in uploads.items():  # one untimed round each: caches, first-call costs
            body = path.read_bytes()
            requests.post(f"{served.url}/predict_video", files={"video": (path.name, body, "video/mp4")}, timeout=60)
            predictor.logits(predictor.preprocess_video(path)[None])
        for _ in range(args.requests):
            for name, path in uploads.items():
                t = timings.setdefault(name, {"served": [], "raw": [], "decode_only": [], "before": []})
                body = path.read_bytes()
                began = time.perf_counter()
                response = requests.post(f"{served.url}/predict_video",
                                         files={"video": (path.name, body, "video/mp4")}, timeout=60)
                t["served"].append(time.perf_counter() - began)
                response.raise_for_status()
                answers[name] = response.json()
                for stage, ms in answers[name]["timings_ms"].items():  # the server's own clock: decode, model, total
                    t.setdefault(f"server_{stage}", []).append(ms / 1000.0)
                began = time.perf_counter()
                stored, _ = preprocess.decode_to_stored(path, config=config)
                predictor.logits(stored[None])
                t["raw"].append(time.perf_counter() - began)
                began = time.perf_counter()
                frames = sum(1 for _ in video.iter_lazy_frames(path))
                t["decode_only"].append(time.perf_counter() - began)
                began = time.perf_counter()
                old = before_path(path, config)
                predictor.logits(old[None])
                t["before"].append(time.perf_counter() - began)
                assert np.array_equal(old, stored), f"{name}: the fast path changed the stored pixels"
                assert frames == answers[name]["input"]["frames"]
    load_after = [round(v, 2) for v in os.getloadavg()]

    results: dict = {"clip": CLIP.name, "requests": args.requests, "concurrency": 1,
                     "load_average_before": load_before, "load_average_after": load_after,
                     "cpus": len(os.sched_getaffinity(0)), "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "uploads": {}}
    print(f"\n{CLIP.name}, {args.requests} requests per size at concurrency 1, load average {load_before} before, "
          f"{load_after} after, {results['cpus']} CPUs\n")
    print("| upload | frames | served p50 ms | raw decode+preprocess+forward p50 ms | served / raw | decode only p50 ms "
          "| server's decode+preprocess p50 ms | server's model call p50 ms | server's total p50 ms "
          "| before (every frame converted) p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, t in timings.items():
        p50 = {key: float(np.median(values)) * 1000.0 for key, values in t.items()}
        info = answers[name]["input"]
        entry = {"width": info["width"], "height": info["height"], "frames": info["frames"],
                 **{f"{key}_p50_ms": round(value, 1) for key, value in p50.items()},
                 "served_over_raw": round(p50["served"] / p50["raw"], 3)}
        results["uploads"][name] = entry
        print(f"| {name} ({info['width']}x{info['height']}) | {info['frames']} | {p50['served']:.0f} | {p50['raw']:.0f} "
              f"| {entry['served_over_raw']:.2f}x | {p50['decode_only']:.0f} | {p50['server_decode']:.0f} "
              f"| {p50['server_model']:.0f} | {p50['server_total']:.0f} | {p50['before']:.0f} |")
    if not args.no_write:
        atomic.write_json(RESULTS, results)
        print(f"\nwrote {RESULTS.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
