"""Stage ``package``: pick the winning model and save it to the BentoML model store.

Inputs:  ``--models`` (``model.pt``, ``preprocess.json`` of the current run), ``--metrics``
         (``reports/evaluate/metrics.json``), optional ``--drift-reference`` (shipped with the model),
         the run folders in ``package.candidates`` and the finished DVC experiments (``dvc.api.exp_show``).
Outputs: ``--out`` (``reports/package.json``): the model tag, the winner and why it won, the ranking.
         The model itself goes to the BentoML store (``$BENTOML_HOME``, default ``~/bentoml``),
         outside the repo; the service serves the tag recorded here.
         ``--export bento``: the same model as ``bento/model.bentomodel`` (+ ``model.json``), for a
         store that does not outlive the run (a Kubeflow pod): ``bentoml models import`` restores it.
Params:  ``package`` (model_name, metric, mode, candidates, experiments, tie_tolerance, measure_latency)
Run:     ``python -m stages.package --params params.yaml --models models --metrics reports/evaluate/metrics.json
         --out reports/package.json --export bento``
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow import packaging
from signflow.config import ParamsError
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.package")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("package", "evaluate.clips")
CLI = StageCli("package", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--models", required=True, help="the current run's model folder (model.pt)")
    parser.add_argument("--metrics", required=True, help="the current run's evaluate metrics.json")
    parser.add_argument("--drift-reference", default=None, help="drift reference JSON to ship with the model")
    parser.add_argument("--out", required=True, help="record of the choice (reports/package.json)")
    parser.add_argument("--export", default=None, help="folder for the exported model (model.bentomodel)")
    args = CLI.parse(parser, argv)

    try:
        params = CLI.params(args)
        record = packaging.package(
            params,
            model_dir=Path(args.models),
            metrics_path=Path(args.metrics),
            out=Path(args.out),
            repo=Path(args.params).resolve().parent,
            drift_reference=Path(args.drift_reference) if args.drift_reference else None,
            export=Path(args.export) if args.export else None,
        )
    except (ParamsError, packaging.PackagingError, FileNotFoundError, ValueError) as error:
        return CLI.fail(error)

    print(packaging.candidate_table(record))
    print(f"package: saved {record['model_tag']}: {record['reason']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
