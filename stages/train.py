"""Train stage: extracted clips -> a trained model.

Inputs:  ``--features data/features`` (extract output: ``train/``, ``val/`` shard
         folders + ``preprocess.json``, which gives ``seq_len`` and the frame size),
         ``--labels data/split/label_map.json``, ``--weights data/weights`` (the weights
         stage's pretrained file, used when ``model.pretrained`` is true).
Outputs: ``--out models``: ``model.pt`` (weights + arch + params + label map +
         preprocessing, ``torch.load(weights_only=True)``), ``preprocess.json``,
         ``checkpoints/{last,best}.pt`` (resume after a kill; kept across
         ``dvc repro``), ``feature_cache/`` (frozen-backbone features);
         ``--live dvclive``: per-epoch metrics and plots (``dvc plots show``).
Params:  ``model``, ``train``.

Run::

    python -m stages.train --params params.yaml --features data/features \\
        --labels data/split/label_map.json --out models --live dvclive

Distributed (same entry point; ``train.batch_size`` is the global batch)::

    torchrun --standalone --nproc_per_node=2 -m stages.train --params params.yaml \\
        --features data/features --labels data/split/label_map.json --out models --live dvclive

A killed run resumes from ``models/checkpoints/last.pt`` when re-run with the
same params and data (``--resume auto``); ``--resume never`` starts fresh and
``--resume PATH`` continues a given checkpoint (refused if it does not fit).
"""

from __future__ import annotations

import logging
import os

from signflow import archs
from signflow.config import ParamsError
from signflow.stage_cli import StageCli

# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py).
PARAMS = ("model", "train")
CLI = StageCli("train", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--features", required=True, help="extract stage output folder")
    parser.add_argument("--labels", required=True, help="split stage label_map.json")
    parser.add_argument("--out", required=True, help="model output folder")
    parser.add_argument("--live", default=None, help="dvclive folder (metrics + plots)")
    parser.add_argument("--checkpoints", default=None, help="default: <out>/checkpoints")
    parser.add_argument("--feature-cache", default=None, help="default: <out>/feature_cache")
    parser.add_argument("--weights", default=None, help="weights stage output (model.pretrained: true)")
    parser.add_argument("--resume", default="auto", help="auto | never | path to a last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (CI logs)")
    rank = int(os.environ.get("RANK", "0"))
    args = CLI.parse(parser, argv, log_level=logging.INFO if rank == 0 else logging.WARNING)
    # Imported after logging is set up; torch import is slow and not needed for --help.
    from signflow.training.checkpoint import CheckpointError
    from signflow.training.data import DataError
    from signflow.training.run import TrainPaths, train

    try:
        params = archs.check_params(CLI.params(args))
        paths = TrainPaths(
            features=args.features, label_map=args.labels, out=args.out, live=args.live,
            checkpoints=args.checkpoints, feature_cache=args.feature_cache, weights=args.weights,
        )  # fmt: skip
        result = train(params.model, params.train, paths, resume=args.resume, progress=not args.no_progress)
    except (ParamsError, DataError, CheckpointError, FileNotFoundError) as error:
        return CLI.fail(error)
    if rank == 0:
        s = result.summary
        print(
            f"train: {params.model.arch} {s['epochs_trained']} epochs "
            f"(resumed after {result.resumed_from_epoch}), best epoch {s['best_epoch']} "
            f"{s['monitor']}={s['best_metric']:.4f}; wrote {result.model_path}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
