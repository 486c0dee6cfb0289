"""Stage ``extract``: decode every planned video once into fixed-size training clips, sharded per split.

Inputs:  ``<crop>/plans.jsonl`` and ``<crop>/skipped.csv`` (crop stage), the videos under ``<raw>``
Outputs: ``<out>/{train,val,test}/`` shard folders (field ``frames``: uint8 ``(stored_frames, S, S, 3)``),
         ``<out>/preprocess.json`` (the feature spec, :mod:`signflow.feature_spec`), ``<out>/skipped.csv``;
         ``--report`` summary (DVC metrics)
Params:  ``extract`` (+ ``crop`` for the crop policy recorded in the RGB spec; ``landmarks`` when
         ``extract.representation`` is ``landmarks``, which hands the work to :mod:`signflow.extract.landmarks`)
Run:     ``python -m stages.extract --params params.yaml --raw data/raw --crop data/crop --out data/features
         --report reports/extract.json``
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from signflow import atomic
from signflow.config import ParamsError
from signflow.extract import rgb
from signflow.extract.plans import PLANS_NAME, SKIPPED_NAME, carried_skips, read_plans
from signflow.feature_spec import RgbFeatureSpec
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.extract")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("extract", "crop", "landmarks")
CLI = StageCli("extract", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--raw", required=True, help="download output folder (videos)")
    parser.add_argument("--crop", required=True, help="crop output folder (plans.jsonl)")
    parser.add_argument("--out", required=True, help="output folder for the per-split shards")
    parser.add_argument("--report", required=True, help="metrics json: counts, frames, bytes")
    parser.add_argument(
        "--landmark-cache",
        default="data/.landmark-cache",
        help="folder of MediaPipe results kept across runs (representation: landmarks), reused by content; "
        "'' = none",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args)
        if not Path(args.raw).is_dir():
            raise FileNotFoundError(f"{args.raw}: raw data folder not found; run the download stage first")
        plans_path = Path(args.crop) / PLANS_NAME
        plans = [dataclasses.asdict(plan) for plan in read_plans(plans_path)]
        crop_skips = carried_skips(plans_path)
    except (ParamsError, FileNotFoundError, ValueError) as error:
        return CLI.fail(error)

    if params.extract.representation == "landmarks":
        # Helper process pool in its own venv (MediaPipe); same plans, same output layout.
        from signflow.extract import landmarks
        from signflow.landmarks.pool import LandmarkEnvError

        try:
            summary = landmarks.extract_all(
                plans_path,
                args.raw,
                args.out,
                params,
                progress=not args.no_progress,
                cache_dir=args.landmark_cache or None,
            )
        except LandmarkEnvError as error:  # no .venv-landmarks: one line saying how to make it
            return CLI.fail(error)
    else:
        summary = rgb.extract_features(
            plans,
            args.raw,
            args.out,
            RgbFeatureSpec.from_params(params.extract, params.crop),
            shard_bytes=params.extract.shard_mb * 1024**2,
            num_workers=params.extract.num_workers,
            chunk_size=params.extract.chunk_size,
            carried_skips=crop_skips,
            progress=not args.no_progress,
        )
    atomic.write_json(args.report, summary)
    skipped_csv = Path(args.out) / SKIPPED_NAME
    per_split = summary.get("per_split", summary.get("written", {}))
    if plans and not any(per_split.values()):
        # Every video failed: no point handing empty shards to training (DVC keeps the old outputs).
        return CLI.fail(f"none of the {len(plans)} planned videos could be extracted; see {skipped_csv}", code=1)
    if summary.get("skipped"):
        log.warning("%d videos skipped; see %s", summary["skipped"], skipped_csv)
    print(
        f"extract ({params.extract.representation}): {sum(per_split.values())} clips {per_split}, "
        f"{summary.get('skipped')} skipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
