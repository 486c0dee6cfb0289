"""Stage ``crop``: plan each video's signer crop and frame range (extract applies the plans).

Inputs:  ``<split>/manifest.csv`` (split stage), ``<index>`` = download's ``index.json``: each video's
         recorded probe (width, height, fps, frames); the videos themselves are not read
Outputs: ``<out>/plans.jsonl`` (one plan per usable video), ``<out>/skipped.csv`` (unusable videos, with reasons)
Params:  ``crop`` (use_bbox, margin, square)
Run:     ``python -m stages.crop --params params.yaml --index data/raw/index.json --split data/split --out data/crop``

``--raw DIR`` (the whole download folder) instead of ``--index`` reads ``DIR/index.json`` when
there is one and probes, under ``DIR``, each video whose record has no probe (an index written
before download recorded them), noting it in the plan. So does ``--index`` given a folder (the
Kubeflow pipeline's imported dataset, ``kubeflow.raw_uri``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow import crop, splits
from signflow.config import ParamsError
from signflow.index import INDEX_NAME, VideoProbe, load_index, recorded_probes
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.crop")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("crop",)
CLI = StageCli("crop", PARAMS, __doc__)


def _probes(path: Path) -> tuple[dict[str, VideoProbe] | None, Path | None]:
    """The recorded probes (None: no index) and the folder to probe videos lacking one in (None: none)."""
    if path.is_dir():  # a whole download folder: its index, and its videos for the fallback
        index = path / INDEX_NAME
        return (recorded_probes(load_index(index)) if index.is_file() else None), path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: index not found; run the download stage first")
    return recorded_probes(load_index(path)), None


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", help="download's index.json (recorded probes), or a download folder")
    source.add_argument("--raw", help="download output folder: its index.json, videos probed where it lacks a probe")
    parser.add_argument("--split", required=True, help="split output folder (manifest.csv)")
    parser.add_argument("--out", required=True, help="output folder for plans.jsonl and skipped.csv")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args).crop
        if args.raw is not None and not Path(args.raw).is_dir():
            raise FileNotFoundError(f"{args.raw}: raw data folder not found; run the download stage first")
        records = splits.read_manifest(Path(args.split) / splits.MANIFEST_NAME)
        recorded, raw = _probes(Path(args.index or args.raw))
    except (ParamsError, FileNotFoundError, ValueError) as error:
        return CLI.fail(error)

    summary = crop.write_plans(crop.plan_all(records, raw, params, recorded=recorded), args.out)
    if summary["skipped"]:
        log.warning("%d videos could not be read; see %s", summary["skipped"], Path(args.out) / crop.SKIPPED_NAME)
    print(
        f"crop: {summary['planned']} plans ({summary['full_frame']} full frame, {summary['noted']} with notes), "
        f"{summary['skipped']} skipped"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
