"""Serving benchmark: the raw model forward (the limit) vs the served endpoints under load.

Run:  ``python benchmarks/bench_serving.py [--model-dir models] [--duration 60] [--concurrency 1 4 16]``

1. Raw: :class:`signflow.inference.Predictor` in this process: p50 of one clip's forward, and
   the throughput of a forward on a full batch (``serve.max_batch_size`` clips) - the best the
   served model can do on this machine. For video, also decode + preprocess + forward of one clip.
2. Served: the model is saved to a temporary BentoML store, ``bentoml serve`` starts on
   127.0.0.1, and an aiohttp client keeps ``c`` requests in flight for ``--duration`` seconds
   against ``/predict_frames`` (a clip already at the stored size, as a ``.npy`` upload; the JSON
   variant is ``--endpoints predict_frames_json``) and ``/predict_video`` (an mp4 upload). Reported: p50/p95/p99 latency, throughput, errors, and the ratios to raw.

Targets (issue 5): served throughput >= 0.8x raw batched forward; p50 overhead <= 20 ms over the
raw forward at c=1; zero errors over 60 s at c=16. ``--cold-start`` (issue 13) sends the first row's
load the moment ``/readyz`` turns 200, with no client-side warm-up: the service must have warmed
itself up (0 errors, also in the first 10 s); it records the time from launch to ready. Without ``--model-dir`` a random-init model of
the ``model`` params is used (speed does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the service tests' launcher (tests/served.py)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    p50, p95, p99 = np.percentile(np.asarray(values) * 1000.0, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def random_model_dir(params_path: Path, folder: Path) -> Path:
    """A model folder like the train stage writes, with random weights, for the params' arch."""
    import torch

    from signflow.config import load_params
    from signflow.feature_spec import RgbFeatureSpec
    from signflow.models import build_model, save_model_file

    params = load_params(params_path)
    torch.manual_seed(0)
    num_classes = params.data.synthetic.num_glosses if params.data.source == "synthetic" else 100
    model = build_model(params.model, num_classes, seq_len=params.extract.seq_len, frame_size=params.extract.frame_size)
    save_model_file(
        folder / "model.pt", model, arch=params.model.arch, model_params=params.model, num_classes=num_classes,
        label_map=[f"gloss{i}" for i in range(num_classes)],
        feature_spec=RgbFeatureSpec.from_params(params.extract, params.crop),
    )
    return folder


def bench_raw(model_dir: Path, clip: Path, batch_size: int, threads: int | None, seconds: float = 5.0) -> dict[str, float]:
    import torch

    from signflow.inference import Predictor

    # The raw baseline gets the served worker's thread count (serve.model_threads), or it
    # measures a different machine.
    if threads:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()

    predictor = Predictor.load(model_dir)
    one = predictor.preprocess_video(clip)[None]
    batch = np.repeat(one, batch_size, axis=0)

    def timed(fn, min_runs: int = 5) -> list[float]:
        fn()  # warm-up
        times, deadline = [], time.perf_counter() + seconds
        while len(times) < min_runs or time.perf_counter() < deadline:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times

    single = timed(lambda: predictor.logits(one))
    batched = timed(lambda: predictor.logits(batch, batch_size=batch_size))
    video = timed(lambda: predictor.logits(predictor.preprocess_video(clip)[None]))
    return {
        "forward_p50_ms": percentiles(single)[0],
        "batch_throughput": batch_size / float(np.median(batched)),
        "video_p50_ms": percentiles(video)[0],
        "video_throughput": 1.0 / float(np.median(video)),
        "batch_size": batch_size,
        "threads": threads,
        "stored_shape": list(one.shape[1:]),
    }


async def load(url: str, make_request, concurrency: int, duration: float) -> dict[str, float]:
    import aiohttp

    latencies: list[float] = []
    errors: dict[str, int] = {}
    early_errors = 0  # in the first 10 s (a cold start's 503 burst shows here)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal early_errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    async with make_request(session, url) as response:
                        await response.read()
                        if response.status == 200:
                            latencies.append(time.perf_counter() - start)
                            continue
                        kind = str(response.status)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    kind = type(error).__name__
                errors[kind] = errors.get(kind, 0) + 1
                early_errors += start < started + 10.0

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    p50, p95, p99 = percentiles(latencies)
    return {"ok": len(latencies), "errors": sum(errors.values()), "error_kinds": errors,
            "errors_first_10s": early_errors, "p50": p50, "p95": p95,
            "p99": p99, "throughput": len(latencies) / elapsed}


@contextlib.contextmanager
def serve(env: dict[str, str], port: int):
    """The real ``bentoml serve`` (same launch and readiness wait as the service tests)."""
    import requests

    from served import process_group, wait_until

    log = Path(env["BENTOML_HOME"]) / "serve.log"
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(port)]
    launched = time.perf_counter()
    with process_group(cmd, cwd=REPO_ROOT, env=env, log=log) as process:
        wait_until(lambda: requests.get(f"{url}/readyz", timeout=2).status_code == 200, 180, "bentoml serve ready",
                   process=process, log=log)  # fmt: skip
        yield url, time.perf_counter() - launched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"))
    parser.add_argument("--model-dir", default=None, help="trained model folder (default: random-init model)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per (endpoint, concurrency) run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--endpoints", nargs="+", default=["predict_frames", "predict_video"],
        help="predict_frames (.npy upload), predict_frames_json (JSON array), predict_video (mp4 upload)",
    )
    parser.add_argument("--cold-start", action="store_true",
                        help="no client warm-up: the first row's load starts the moment /readyz is 200")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    from signflow import atomic, video
    from signflow.config import load_params

    params = load_params(args.params)
    work = Path(tempfile.mkdtemp(prefix="signflow-bench-"))
    env = {**os.environ, "BENTOML_HOME": str(work / "bentoml"), "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1",
           "SIGNFLOW_PARAMS": str(Path(args.params).resolve())}
    os.environ.update({k: env[k] for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")})  # before bentoml is imported
    model_dir = Path(args.model_dir) if args.model_dir else random_model_dir(Path(args.params), work / "model")

    # A 2 s, 320x240 clip (the size of a cropped WLASL signer), lossy h264 like real uploads.
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 60, size=(50, 240, 320, 3), dtype=np.uint8)
    for i in range(50):
        frames[i, 90:150, 10 + 5 * i : 70 + 5 * i] = (230, 200, 40)
    clip = work / "clip.mp4"
    video.write_video(clip, frames, 25.0)
    video_bytes = clip.read_bytes()

    raw = bench_raw(model_dir, clip, params.serve.max_batch_size, params.serve.model_threads)

    from signflow import packaging
    from signflow.inference import Predictor

    candidate = packaging.Candidate(name="bench", model_dir=model_dir, metrics={"test_top1": 0.0}, value=0.0)
    tag = packaging.save_to_store(candidate, params, reason="benchmark")
    env["SIGNFLOW_MODEL_TAG"] = tag
    stored_clip = Predictor.load(model_dir).preprocess_video(clip)
    frames_body = json.dumps({"frames": stored_clip.tolist()}).encode()
    npy_buffer = io.BytesIO()
    np.save(npy_buffer, stored_clip)
    npy_bytes = npy_buffer.getvalue()

    def frames_request(session, url):
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("npy", npy_bytes, filename="clip.npy", content_type="application/octet-stream")
        return session.post(f"{url}/predict_frames", data=form)

    def frames_json_request(session, url):
        return session.post(f"{url}/predict_frames", data=frames_body, headers={"content-type": "application/json"})

    def video_request(session, url):
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("video", video_bytes, filename="clip.mp4", content_type="video/mp4")
        return session.post(f"{url}/predict_video", data=form)

    requests_by_endpoint = {
        "predict_frames": frames_request, "predict_frames_json": frames_json_request, "predict_video": video_request
    }
    results = []
    with serve(env, _free_port()) as (url, ready_s):
        for index, endpoint in enumerate(args.endpoints):
            if not (args.cold_start and index == 0):
                asyncio.run(load(url, requests_by_endpoint[endpoint], 2, 3.0))  # warm-up (batcher's optimizer)
            for concurrency in args.concurrency:
                result = asyncio.run(load(url, requests_by_endpoint[endpoint], concurrency, args.duration))
                results.append({"endpoint": endpoint, "concurrency": concurrency, **result})
                print(f"{endpoint} c={concurrency}: {result}", file=sys.stderr, flush=True)

    print_table(raw, results, args.duration)
    print(f"\n  launch -> /readyz 200: {ready_s:.1f} s; cold start: {args.cold_start}; load average {os.getloadavg()}")
    if args.json:
        record = {"raw": raw, "served": results, "ready_s": ready_s, "cold_start": args.cold_start,
                  "load_average": os.getloadavg(), "cpus": os.cpu_count()}
        atomic.write_json(Path(args.json), record)
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def print_table(raw: dict, results: list[dict], duration: float) -> None:
    cpu = os.cpu_count()
    print(f"\nRaw model (this process, {cpu} CPUs, {raw['threads']} torch thread(s), stored clip {raw['stored_shape']}):")
    print(f"  forward, 1 clip:            p50 {raw['forward_p50_ms']:.1f} ms")
    print(f"  forward, batch of {raw['batch_size']:<3}:      {raw['batch_throughput']:.1f} clips/s  (the limit)")
    print(f"  decode+preprocess+forward:  p50 {raw['video_p50_ms']:.1f} ms, {raw['video_throughput']:.1f} clips/s")
    print(f"\nServed ({duration:g} s per row):")
    header = ("endpoint", "c", "ok", "errors", "errors <10 s", "p50 ms", "p95 ms", "p99 ms", "req/s", "x raw batch", "p50 overhead ms")
    rows = [header]
    for r in results:
        base = raw["video_p50_ms"] if r["endpoint"] == "predict_video" else raw["forward_p50_ms"]
        limit = raw["batch_throughput"]
        rows.append((
            r["endpoint"], str(r["concurrency"]), str(r["ok"]), str(r["errors"]), str(r["errors_first_10s"]),
            f"{r['p50']:.1f}", f"{r['p95']:.1f}",
            f"{r['p99']:.1f}", f"{r['throughput']:.1f}", f"{r['throughput'] / limit:.2f}",
            f"{r['p50'] - base:+.1f}" if r["concurrency"] == 1 else "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    print("\n  p50 overhead: served p50 at c=1 minus the raw p50 (forward for frames; decode+forward for video).")


if __name__ == "__main__":
    raise SystemExit(main())
