"""Stage ``split``: assign every downloaded video to train/val/test and a class label.

Inputs:  ``<raw>/index.json`` (WLASL_v0.3 schema; instances with ``file`` were obtained)
Outputs: ``<out>/manifest.csv``, ``<out>/label_map.json``; ``--report`` counts per split and class (DVC metrics)
Params:  ``split`` (strategy official | random | signer, nslt_file, val/test fractions, seed)
Run:     ``python -m stages.split --params params.yaml --raw data/raw --out data/split --report reports/split.json``
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow import atomic, splits
from signflow.config import ParamsError
from signflow.index import IndexFormatError, load_index
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.split")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("split",)
CLI = StageCli("split", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--raw", required=True, help="download output folder (index.json + videos)")
    parser.add_argument("--out", required=True, help="output folder for manifest.csv and label_map.json")
    parser.add_argument("--report", required=True, help="metrics json: counts per split and per class")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args).split
        raw = Path(args.raw)
        if not (raw / "index.json").is_file():
            raise FileNotFoundError(f"{raw / 'index.json'} not found; run the download stage first")
        entries, missing = splits.drop_missing_files(load_index(raw / "index.json"), raw)
        result = splits.split_index(entries, params, base_dir=Path(args.params).resolve().parent)
    except (ParamsError, IndexFormatError, splits.SplitError, FileNotFoundError) as error:
        return CLI.fail(error)

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
