"""Stage ``evaluate``: score the trained model on the test (and val) split and write the reports.

Inputs:  ``--features data/features`` (extract output: ``<split>/`` shard folders),
         ``--model models`` (train output: ``model.pt`` with its preprocessing and label map)
Outputs: ``--out reports/evaluate``: ``metrics.json`` (DVC metrics, flat keys such as
         ``test_top1``, ``test_per_class_top1``, ``test_macro_f1``, ``val_top1``),
         ``confusion.csv`` (DVC confusion plot), ``confusion.png``, ``per_class.csv``,
         ``predictions.csv``, ``prediction_reference.json`` (drift monitoring baseline)
Params:  ``evaluate`` (splits, test-time ``clips``, ``top_k``, ``batch_size``, ``device``)
Run:     ``python -m stages.evaluate --params params.yaml --features data/features --model models
         --out reports/evaluate``

Scoring goes through :class:`signflow.inference.Predictor`, the class the service uses,
so served and evaluated logits come from the same code.
"""

from __future__ import annotations

import logging
from pathlib import Path

from signflow.config import ParamsError
from signflow.stage_cli import StageCli

log = logging.getLogger("stages.evaluate")


# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("evaluate",)
CLI = StageCli("evaluate", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--features", required=True, help="extract output folder (per-split shards)")
    parser.add_argument("--model", required=True, help="train output folder (model.pt) or a model file")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument(
        "--split-manifest",
        default=None,
        help="split stage's manifest.csv (video_id, signer, split): adds per-signer accuracy",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = CLI.parse(parser, argv)

    # torch is slow to import and not needed for --help or a params typo.
    from signflow import evaluation
    from signflow.device import select_device
    from signflow.inference import Predictor

    try:
        params = CLI.params(args).evaluate
        device = select_device(params.device, setting="evaluate.device")
        predictor = Predictor.load(args.model, device=device)
        predictions = {}
        for split in params.splits:
            result = evaluation.predict_split(
                predictor,
                Path(args.features) / split,
                split,
                clips=params.clips,
                batch_size=params.batch_size,
                progress=not args.no_progress,
            )
            if len(result.labels) == 0:
                log.warning("split %r has no clips; it is left out of the metrics", split)
                continue
            predictions[split] = result
        if not predictions:
            raise ValueError(f"{args.features}: none of the splits {params.splits} has any clip")
        # The first split listed in evaluate.splits gets the confusion plot and drift reference.
        honest = evaluation.honesty_metrics(
            predictions, args.out, abstain_precision=params.abstain_precision, manifest=args.split_manifest
        )
        flat = evaluation.write_reports(
            args.out, predictions, predictor.label_map, top_k=params.top_k, primary=next(iter(predictions)),
            extra_metrics=honest,
        )  # fmt: skip
    except (ParamsError, FileNotFoundError, ValueError) as error:
        return CLI.fail(error)

    names = ("top1", "top5", "per_class_top1", "macro_f1", "coverage", "accepted_top1")
    summary_keys = [f"{split}_{name}" for split in predictions for name in names]
    shown = ", ".join(f"{key}={flat[key]:.3f}" for key in summary_keys if key in flat)
    if "abstain_threshold" in flat:
        shown += f", abstain_threshold={flat['abstain_threshold']:.3f}"
    print(f"evaluate ({predictor.arch}, clips={params.clips}): {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
