"""One Katib trial: ``stages.train`` with the trial's values set, then ``<metric>=<value>`` on stdout.

Run (what the Experiment from :mod:`pipelines.sweep` runs in each trial pod)::

    python -m pipelines.trial --params /etc/signflow/params.yaml --data /mnt/signflow/runs/base \\
        --out /scratch/trial -p train.lr=0.003 -p train.batch_size=16 [--metric val_top1]

``--data`` holds the train stage's inputs in the dvc.yaml layout (``features/``,
``split/label_map.json``, ``weights/``). The overrides are checked with the params schema before
training. The last line is ``val_top1=0.8125`` (the best epoch's value, the weights train keeps),
the format Katib's StdOut metrics collector parses; exit 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


from pipelines.trainjob import train_args, train_params_yaml
from signflow.config import ParamsError, apply_overrides, load_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.trial", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True, help="base params (the sweep's ConfigMap)")
    parser.add_argument("--data", required=True, help="folder with features/, split/label_map.json, weights/")
    parser.add_argument("--out", type=Path, required=True, help="trial output folder (scratch)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="trial value")
    parser.add_argument("--metric", default="val_top1", choices=["val_top1", "val_top5", "val_loss"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        params = apply_overrides(load_params(args.params), args.param)
    except ParamsError as error:
        print(f"trial: error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    params_file = args.out / "params.yaml"
    params_file.write_text(train_params_yaml(params), encoding="utf-8")

    from signflow.models import read_model_file
    from stages.train import main as train_main

    code = train_main(train_args(str(params_file), args.data, str(args.out), str(args.out / "state")))
    if code != 0:
        return code
    summary = read_model_file(args.out / "model" / "model.pt")["extra"]["train"]
    value = summary.get(f"best_{args.metric}")
    if value is None:
        print(f"trial: error: training recorded no {args.metric} (no validation split?)", file=sys.stderr)
        return 2
    print(f"{args.metric}={float(value):.6f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
