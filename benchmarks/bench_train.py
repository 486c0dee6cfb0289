"""Training benchmark: throughput per arch, the frozen-backbone feature cache, DDP scaling.

(a) *throughput*: clips/s of one optimiser step (forward + backward + AdamW) per arch on
    random ``(B, 16, 64, 64)`` clips (the synthetic default's shape), CPU and CUDA when present.
(b) *feature cache*: epoch time of a cnn_lstm with a frozen MobileNetV2 backbone trained
    on clips (backbone recomputed every epoch) vs on cached per-frame features (head only),
    both through the real datasets and :func:`signflow.training.loop.train_one_epoch`.
    Target: >= 20x.
(c) *DDP*: wall time of the train stage on the same tiny data with 1 and 2 CPU processes
    (``torchrun --nproc_per_node``); on a 2-core machine shared by other jobs expect little.

Run: ``python benchmarks/bench_train.py`` (``--quick`` for fewer steps/clips). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

import torch  # noqa: E402
import yaml  # noqa: E402

from signflow.config import ModelParams  # noqa: E402


def throughput(arch: str, device: torch.device, batch: int, steps: int, backbone: str = "small_cnn") -> float:
    from signflow.models import build_model, input_layout

    params = ModelParams.model_validate({"arch": arch, "cnn_lstm": {"backbone": backbone}})
    model = build_model(params, 10, seq_len=16, frame_size=64).to(device).train()
    shape = (batch, 16, 3, 64, 64) if input_layout(arch) == "TCHW" else (batch, 3, 16, 64, 64)
    x, y = torch.randn(shape, device=device), torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up (allocations, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def feature_cache_speedup(root: Path, per_class: int) -> tuple[float, float, float]:
    """(cache build s, epoch s recomputing the backbone, epoch s on cached features)."""
    from torch.utils.data import DataLoader

    from signflow.config import Params, apply_overrides
    from signflow.models import build_model, param_groups
    from signflow.training import feature_cache
    from signflow.training.data import open_split
    from signflow.training.distributed import DistContext
    from signflow.training.loop import LoopConfig, train_one_epoch
    from signflow.training.optim import Schedule, build_optimizer
    from signflow.training.sampler import EpochSampler
    from signflow.transforms import input_config_for
    from training_data import make_features

    features, labels = make_features(root, num_classes=10, per_class={"train": per_class}, stored=32, seq_len=16, size=64)
    glosses = [f"gloss{i}" for i in range(10)]
    params = apply_overrides(Params(), ["model.cnn_lstm.backbone=mobilenet_v2", "model.cnn_lstm.freeze=all", "train.epochs=1"])
    device, ctx = torch.device("cpu"), DistContext()
    cfg = LoopConfig.from_params(params.train, device, progress=False)
    input_config = input_config_for("cnn_lstm")

    def epoch_time(model: torch.nn.Module, trainable: torch.nn.Module, dataset) -> float:
        loader = DataLoader(dataset, batch_size=16, sampler=EpochSampler(dataset.labels, seed=0))
        optimizer = build_optimizer(param_groups(model), params.train)
        schedule = Schedule(optimizer, params.train, steps_per_epoch=len(loader), epochs=1)
        start = time.perf_counter()
        train_one_epoch(trainable, loader, torch.nn.CrossEntropyLoss(), optimizer, schedule, None, cfg, ctx, 0)
        return time.perf_counter() - start

    torch.manual_seed(0)
    model = build_model(params.model, 10, seq_len=16, frame_size=64)
    clips = open_split(features / "train", glosses=glosses, seq_len=16, input_config=input_config, train=True)
    recompute = epoch_time(model, model, clips)
    start = time.perf_counter()
    cached_dir = feature_cache.ensure_cache(model, features / "train", root / "cache", input_config=input_config, device=device, progress=False)
    build = time.perf_counter() - start
    cached = feature_cache.open_cached_split(cached_dir, seq_len=16, train=True, augment=params.train.augment, seed=0)
    return build, recompute, epoch_time(model, feature_cache.TemporalHead(model), cached)


def ddp_scaling(root: Path, per_class: int) -> dict[int, float]:
    from training_data import make_features, tiny_params

    features, labels = make_features(root, num_classes=4, per_class={"train": per_class, "val": 2}, stored=16, seq_len=8, size=64)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params("train.epochs=2", "train.batch_size=8").model_dump(mode="json")))
    times = {}
    for procs in (1, 2):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "stages.train", "--params", str(params), "--features", str(features), "--labels", str(labels),
               "--out", str(root / f"m{procs}"), "--resume", "never", "--no-progress"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // procs))}
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        times[procs] = time.perf_counter() - start
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and clips")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "cache", "ddp"])
    args = parser.parse_args()
    steps, per_class = (2, 3) if args.quick else (5, 6)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, cuda={torch.cuda.is_available()}\n")

    if "throughput" not in args.skip:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        print("| arch | device | batch | clips/s |\n|---|---|---:|---:|")
        for arch, backbone in (("cnn_lstm", "small_cnn"), ("cnn_lstm", "mobilenet_v2"), ("r3d_18", ""), ("r2plus1d_18", "")):
            for device in devices:
                batch = 8 if device.type == "cpu" else 32
                rate = throughput(arch, device, batch, steps if device.type == "cpu" else 20, backbone or "small_cnn")
                name = f"{arch} ({backbone})" if backbone else arch
                print(f"| {name} | {device.type} | {batch} | {rate:.1f} |", flush=True)
        print()

    with tempfile.TemporaryDirectory() as tmp:
        if "cache" not in args.skip:
            build, recompute, cached = feature_cache_speedup(Path(tmp) / "cache", per_class)
            clips = 10 * per_class
            print("| frozen mobilenet_v2 cnn_lstm, one epoch | seconds | clips/s | speed-up |\n|---|---:|---:|---:|")
            print(f"| recompute backbone every epoch | {recompute:.2f} | {clips / recompute:.1f} | 1.0x |")
            print(f"| cached features (head only) | {cached:.3f} | {clips / cached:.1f} | {recompute / cached:.1f}x |")
            print(f"| (one-off cache build) | {build:.2f} | {clips / build:.1f} | |\n", flush=True)
        if "ddp" not in args.skip:
            times = ddp_scaling(Path(tmp) / "ddp", per_class)
            print("| train stage, 2 epochs, CPU | wall s | speed-up |\n|---|---:|---:|")
            for procs, seconds in times.items():
                print(f"| {procs} process{'es' if procs > 1 else ''} (gloo) | {seconds:.1f} | {times[1] / seconds:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
