"""WLASL100 results table: every ``wl100-*`` DVC experiment, grouped by model, next to the papers.

Reads what the stages wrote (``dvc exp show --json``: params, ``reports/evaluate/metrics.json``,
``dvclive/metrics.json``, ``reports/extract.json``) in one or more repositories, so no figure is
typed by hand. Runs named ``<model>-s<seed>`` are seeds of ``<model>``: mean and standard
deviation over them. Writes ``benchmarks/results/wlasl100.json`` and prints a Markdown table.

    python benchmarks/wlasl100.py --repo . [--repo ../other-clone] [--prefix wl100-]

Model choice is on val (``val_top1``); test is reported, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from signflow import archs

OUT = Path(__file__).resolve().parent / "results" / "wlasl100.json"
# Every run's own DVC metrics and the params sections that define it, so the table can be checked.
RUNS_OUT = OUT.with_name("wlasl100_runs.json")
RUN_PARAMS = ("extract", "landmarks", "model", "train", "evaluate")
PUBLISHED = {  # WLASL100 test, per-instance top-1 / top-5 (%), from the papers (see docs/benchmarks.md)
    "I3D (RGB, ImageNet+Kinetics pretrained)": (65.89, 84.11),
    "Pose-TGCN (pose)": (55.43, 78.68),
    "SPOTER (pose transformer)": (63.18, None),
    "VGG-GRU (RGB, ImageNet pretrained)": (25.97, None),
    "majority class": (1.9, None),
}
_SEED_SUFFIX = re.compile(r"^(?P<model>.+)-s(?P<seed>\d+)$")


def _file_data(data: dict[str, Any], section: str, suffix: str) -> dict[str, Any]:
    for path, entry in ((data or {}).get(section) or {}).items():
        if Path(path).as_posix().endswith(suffix) and isinstance(entry, dict):
            return entry.get("data") or {}
    return {}


def experiment_runs(repo: Path, prefix: str) -> list[dict[str, Any]]:
    """One dict per finished experiment whose name starts with ``prefix``."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo, capture_output=True, text=True, check=True
    )
    runs = []
    for baseline in json.loads(result.stdout or "[]"):
        for group in baseline.get("experiments") or []:
            for rev in group.get("revs") or []:
                name = rev.get("name") or ""
                data = rev.get("data") or {}
                metrics = _file_data(data, "metrics", "reports/evaluate/metrics.json")
                if rev.get("error") or not name.startswith(prefix) or "test_top1" not in metrics:
                    continue
                params = _file_data(data, "params", "params.yaml")
                runs.append({
                    "repo": str(repo), "name": name, "rev": rev.get("rev"), "params": params, "metrics": metrics,
                    "train": _file_data(data, "metrics", "dvclive/metrics.json"),
                    "extract": _file_data(data, "metrics", "reports/extract.json"),
                })  # fmt: skip
    return runs


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        match = _SEED_SUFFIX.match(run["name"])
        groups.setdefault(match["model"] if match else run["name"], []).append(run)
    table = {}
    for model, members in sorted(groups.items()):
        first = members[0]
        params = first["params"]
        arch = params["model"]["arch"]
        backbone_param = archs.get(arch).backbone_param  # the row names the 2D backbone of cnn_lstm
        if backbone_param:
            backbone: Any = params["model"]
            for key in backbone_param.split("."):
                backbone = backbone[key]
            arch = f"{arch}/{backbone}"

        def values(key: str, members: list[dict[str, Any]] = members) -> list[float]:
            return [float(m["metrics"][key]) for m in members if key in m["metrics"]]

        train_minutes = [m["train"].get("train_seconds") for m in members]
        row: dict[str, Any] = {
            "arch": arch,
            "representation": params["extract"]["representation"],
            "runs": [m["name"] for m in members],
            "seeds": [int(m["params"]["train"]["seed"]) for m in members],
            "test_top1": statistics.mean(values("test_top1")),
            "test_top1_std": _spread(values("test_top1")),
            "test_top5": statistics.mean(values("test_top5")),
            "test_per_class_top1": statistics.mean(values("test_per_class_top1")),
            "val_top1": statistics.mean(values("val_top1")),
            "val_top1_std": _spread(values("val_top1")),
            "train_minutes_cpu": (
                round(statistics.mean(t for t in train_minutes if t is not None) / 60.0, 1)
                if any(t is not None for t in train_minutes) else None
            ),
            "epochs": int(params["train"]["epochs"]),
        }  # fmt: skip
        for key in ("abstain_threshold", "test_coverage", "test_accepted_top1", "test_per_signer_top1_mean",
                    "test_unseen_signer_top1", "test_unseen_signer_clips"):  # fmt: skip
            if values(key):
                row[key] = statistics.mean(values(key))
        table[model] = row
    return table


def markdown(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| model | input | seeds | val top-1 | test top-1 | test top-5 | test per-class top-1 | train min (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    models = {name: row for name, row in table.items() if not name.startswith("_")}
    for model, row in sorted(models.items(), key=lambda item: -item[1]["val_top1"]):
        spread = f" ± {100 * row['test_top1_std']:.1f}" if len(row["seeds"]) > 1 else ""
        lines.append(
            f"| {model} ({row['arch']}) | {row['representation']} | {len(row['seeds'])} | "
            f"{100 * row['val_top1']:.1f} | **{100 * row['test_top1']:.1f}**{spread} | {100 * row['test_top5']:.1f} | "
            f"{100 * row['test_per_class_top1']:.1f} | {row['train_minutes_cpu']} |"
        )
    for name, (top1, top5) in PUBLISHED.items():
        lines.append(f"| {name} (published) | | | | {top1} | {top5 if top5 is not None else ''} | | |")
    return "\n".join(lines)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", action="append", type=Path, help="DVC repo(s) holding the experiments")
    parser.add_argument("--prefix", default="wl100-")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--runs-out", type=Path, default=RUNS_OUT)
    parser.add_argument(
        "--extraction-report", type=Path, action="append", default=[],
        help="reports/extract.json of a run that extracted every clip (an experiment's own report may "
        "come from the MediaPipe cache): recorded under '_extraction'",
    )  # fmt: skip
    args = parser.parse_args(argv)
    runs = [run for repo in args.repo or [Path(".")] for run in experiment_runs(repo, args.prefix)]
    if not runs:
        print(f"wlasl100: no finished '{args.prefix}*' experiment found", file=sys.stderr)
        return 1
    table: dict[str, Any] = summarise(runs)
    records = [
        {"name": run["name"], "rev": run["rev"], "params": {k: run["params"].get(k) for k in RUN_PARAMS},
         "evaluate": run["metrics"], "train": run["train"]}
        for run in sorted(runs, key=lambda run: run["name"])
    ]  # fmt: skip
    _write_json(args.runs_out, records)
    for report_path in args.extraction_report:
        report = json.loads(report_path.read_text())
        table.setdefault("_extraction", {})[report.get("representation", "rgb")] = {
            key: report[key] for key in ("videos", "extracted", "source_frames", "seconds", "frames_per_s",
                                         "videos_per_s", "detection_rate") if key in report
        }  # fmt: skip
    _write_json(args.out, table)
    print(markdown(table))
    print(f"\nwrote {args.out} and {args.runs_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
