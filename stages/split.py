"""Stage ``split``: assign every downloaded video to train/val/test and a class label.

Inputs:  ``<index>`` = download's ``index.json`` (WLASL_v0.3 schema; instances with ``file`` were obtained
         and verified by download, so ``file`` is trusted: no video is read)
Outputs: ``<out>/manifest.csv``, ``<out>/label_map.json``; ``--report`` counts per split and class (DVC metrics)
Params:  ``split`` (strategy official | random | signer, nslt_file, val/test fractions, seed)
Run:     ``python -m stages.split --params params.yaml --index data/raw/index.json --out data/split --report reports/split.json``

``--raw DIR`` (the whole download folder) instead of ``--index`` reads ``DIR/index.json`` and, since
the videos are at hand, leaves out instances whose ``file`` is not under ``DIR`` (reported as
``missing_on_disk``). ``--index`` given a folder reads its ``index.json`` and trusts ``file``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow import atomic, splits
from signflow.config import ParamsError
from signflow.index import INDEX_NAME, IndexFormatError, load_index
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.split")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("split",)
CLI = StageCli("split", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", help="download's index.json, or a folder holding it (file is trusted; no video is read)")
    source.add_argument("--raw", help="download output folder: its index.json, instances missing on disk left out")
    parser.add_argument("--out", required=True, help="output folder for manifest.csv and label_map.json")
    parser.add_argument("--report", required=True, help="metrics json: counts per split and per class")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args).split
        given = Path(args.index or args.raw)
        # --index may name a download folder (the pipeline's imported dataset): its index.json.
        index = given / INDEX_NAME if args.raw or given.is_dir() else given
        if not index.is_file():
            raise FileNotFoundError(f"{index} not found; run the download stage first")
        entries, missing = load_index(index), None
        if args.raw:
            entries, missing = splits.drop_missing_files(entries, args.raw)
        result = splits.split_index(entries, params, base_dir=Path(args.params).resolve().parent)
    except (ParamsError, IndexFormatError, splits.SplitError, FileNotFoundError) as error:
        return CLI.fail(error)

    if missing is not None:
        result.report["missing_on_disk"] = len(missing)
    splits.write_outputs(result, args.out)
    atomic.write_json(args.report, result.report)
    counts = result.report["counts"]
    print(
        f"split ({params.strategy}): {result.report['videos']} videos, {result.report['classes']} classes; "
        + ", ".join(f"{s} {n}" for s, n in counts.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
