"""Stage ``download``: obtain the videos and write the ``data/raw`` contract.

Inputs:  ``data.source`` = ``synthetic`` (generated offline, the default), ``wlasl``
         (``data.wlasl.index`` path or URL; videos over HTTP(S)) or ``local`` (folder/archive)
Outputs: ``<out>/videos/<video_id>.<ext>``, ``<out>/index.json`` (WLASL schema + ``file`` and each
         obtained video's ``probe``), ``<out>/status.csv``; ``--report`` counts by status (DVC metrics);
         ``--index``: index.json once more, on its own (what split and crop read: in the Kubeflow
         pipeline a small artifact, so only extract receives the videos; in dvc.yaml ``<out>/index.json`` itself)
Params:  ``data``
Run:     ``python -m stages.download --params params.yaml --out data/raw --index data/raw/index.json
         --report reports/download.json``

``<out>`` is assembled in a temporary sibling folder and renamed into place, so a
killed run leaves no half-written ``data/raw``. WLASL downloads themselves are
kept in ``--cache-dir`` (outside the DVC output), so a killed or repeated run
resumes instead of downloading everything again; ``<out>/videos`` is then
hard-linked (or copied) from that cache.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from signflow import atomic
from signflow.config import ParamsError
from signflow.index import INDEX_NAME, IndexFormatError
from signflow.sources import SourceError, run_download
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.download")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("data",)
CLI = StageCli("download", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--out", required=True, help="output folder (data/raw)")
    parser.add_argument("--report", default=None, help="metrics json: counts by status")
    parser.add_argument("--index", default=None, help="also write index.json here (nothing when it is <out>/index.json)")
    parser.add_argument(
        "--cache-dir",
        default="data/.download-cache",
        help="persistent WLASL download cache, outside the DVC output (resumable downloads)",
    )
    args = CLI.parse(parser, argv)

    out = Path(args.out)
    try:
        params = CLI.params(args).data
        # Leftovers of a killed run of this stage only (other stages' temporaries are not ours).
        for pattern in (f"{atomic.TMP_PREFIX}{out.name}.*", ".extract-*"):
            for leftover in out.parent.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)
        with atomic.atomic_path(out, is_dir=True) as tmp:
            summary = run_download(params, tmp, cache_dir=args.cache_dir)
    except (ParamsError, IndexFormatError, SourceError, OSError) as error:
        return CLI.fail(error)
    index = out / INDEX_NAME
    if args.index and Path(args.index).resolve() != index.resolve():
        atomic.write_bytes(args.index, index.read_bytes())
    if args.report:
        atomic.write_json(args.report, summary)
    print(
        f"download ({summary['source']}): {summary['videos']} videos, {summary['ok']} ok, "
        f"{summary['missing']} missing, {summary['http_error']} http_error, {summary['corrupt']} corrupt, "
        f"{summary['skipped']} skipped -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
