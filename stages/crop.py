"""Stage ``crop``: plan each video's signer crop and frame range (extract applies the plans).

Inputs:  ``<split>/manifest.csv`` (split stage), the videos under ``<raw>`` (probed, not decoded)
Outputs: ``<out>/plans.jsonl`` (one plan per usable video), ``<out>/skipped.csv`` (unreadable videos, with reasons)
Params:  ``crop`` (use_bbox, margin, square)
Run:     ``python -m stages.crop --params params.yaml --raw data/raw --split data/split --out data/crop``
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow import crop, splits
from signflow.config import ParamsError
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.crop")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("crop",)
CLI = StageCli("crop", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--raw", required=True, help="download output folder (videos)")
    parser.add_argument("--split", required=True, help="split output folder (manifest.csv)")
    parser.add_argument("--out", required=True, help="output folder for plans.jsonl and skipped.csv")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args).crop
        if not Path(args.raw).is_dir():
            raise FileNotFoundError(f"{args.raw}: raw data folder not found; run the download stage first")
        records = splits.read_manifest(Path(args.split) / splits.MANIFEST_NAME)
    except (ParamsError, FileNotFoundError, ValueError) as error:
        return CLI.fail(error)

    summary = crop.write_plans(crop.plan_all(records, args.raw, params), args.out)
    if summary["skipped"]:
        log.warning("%d videos could not be read; see %s", summary["skipped"], Path(args.out) / crop.SKIPPED_NAME)
    print(
        f"crop: {summary['planned']} plans ({summary['full_frame']} full frame, {summary['noted']} with notes), "
        f"{summary['skipped']} skipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
