"""Served top-1 on WLASL100 test clips as users send them, against the 256x256 originals.

Users do not upload the benchmark's letterboxed 256x256 squares: they send a phone or webcam clip,
full frame, the signer anywhere in it, in whatever codec. This re-encodes each test clip the way
such an upload looks (upscaled into a 1280x720 frame, off-centre on a plain grey background) as
H.264 (mp4) and VP9 (webm), uploads original and re-encoded clips to a running ``bentoml serve``,
and compares served top-1 accuracy (and agreement with the original's answer).

    BENTOML_HOME=... bentoml serve serving.service:Signflow --port 3000 &
    python benchmarks/bench_wlasl100_uploads.py --url http://127.0.0.1:3000 [--clips 258]

Writes ``benchmarks/results/wlasl100_uploads.json`` and prints a table (with the load average:
the machine is shared).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO.parent / "shared" / "data" / "wlasl100-videos"
OUT = REPO / "benchmarks" / "results" / "wlasl100_uploads.json"
# Upscale 256 -> 576 and place the square left of centre, a bit low: a signer off-centre in a 720p frame.
PLACEMENT = "scale=576:576:flags=bicubic,pad=1280:720:120:110:color=0x808080"
ENCODINGS = {
    "h264_720p_offcentre": ("mp4", ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]),
    "vp9_720p_offcentre": ("webm", ["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "34", "-deadline", "realtime",
                                   "-cpu-used", "8", "-row-mt", "1"]),
}  # fmt: skip


def reencode(source: Path, target: Path, codec_args: list[str]) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-vf", PLACEMENT, *codec_args, "-an", str(target)],
        check=True,
    )


def served_top1(url: str, path: Path) -> str:
    with open(path, "rb") as handle:
        response = requests.post(f"{url}/predict_video", files={"video": (path.name, handle)}, timeout=300)
    response.raise_for_status()
    return response.json()["top_k"][0]["gloss"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a running signflow server")
    parser.add_argument("--clips", type=int, default=258, help="N test clips, evenly spaced over the sorted ids")
    parser.add_argument("--data", type=Path, default=CLIPS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with open(args.data / "manifest.csv", newline="", encoding="utf-8") as handle:
        every = sorted((row["video_id"], row["gloss"]) for row in csv.DictReader(handle) if row["split"] == "test")
    # Ids are grouped by gloss: an even spread covers many glosses, not the first few.
    test = [every[round(i * len(every) / args.clips)] for i in range(min(args.clips, len(every)))]
    answers: dict[str, dict[str, str]] = {name: {} for name in ("original_256", *ENCODINGS)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for number, (video_id, _gloss) in enumerate(test, 1):
            original = args.data / "videos" / f"{video_id}.mp4"
            answers["original_256"][video_id] = served_top1(args.url, original)
            for name, (suffix, codec_args) in ENCODINGS.items():
                upload = Path(scratch) / f"{video_id}.{suffix}"
                reencode(original, upload, codec_args)
                answers[name][video_id] = served_top1(args.url, upload)
                upload.unlink()
            if number % 20 == 0:
                print(f"{number}/{len(test)} clips, {time.perf_counter() - started:.0f} s", flush=True)
    truth = dict(test)
    base = answers["original_256"]
    results = {
        name: {
            "clips": len(given),
            "top1": sum(given[v] == truth[v] for v in given) / len(given),
            "agrees_with_original": sum(given[v] == base[v] for v in given) / len(given),
        }
        for name, given in answers.items()
    }
    for name in ENCODINGS:
        results[name]["top1_drop_vs_original"] = results["original_256"]["top1"] - results[name]["top1"]
    results["_meta"] = {
        "model_tag": requests.get(f"{args.url}/ui/config.json", timeout=10).json().get("model_tag"),
        "placement": PLACEMENT,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("| upload | clips | served top-1 | drop vs 256x256 | same answer as 256x256 |\n|---|---|---|---|---|")
    for name, row in results.items():
        if name.startswith("_"):
            continue
        drop = row.get("top1_drop_vs_original", 0.0)
        print(f"| {name} | {row['clips']} | {100 * row['top1']:.1f} | {100 * drop:.1f} | "
              f"{100 * row['agrees_with_original']:.1f} |")  # fmt: skip
    print(f"load average {os.getloadavg()}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
