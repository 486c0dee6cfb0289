"""Write the Kubernetes manifests for multi-node training and sweeps, for ``kubectl apply -f``.

Run::

    python -m pipelines.manifests pytorchjob --name signflow-ddp --nodes 2 \\
        --data /mnt/signflow/runs/base --out /mnt/signflow/runs/ddp [-p train.epochs=50] > job.yaml
    python -m pipelines.manifests katib --name signflow-sweep --data /mnt/signflow/runs/base > sweep.yaml

Both read ``params.yaml`` (``-p`` overrides, checked) and its ``kubeflow`` section (image, claim,
resources, tolerations, pull secrets); ``katib`` also reads ``sweep.yaml``. Each prints a
ConfigMap with the params and the PyTorchJob (:mod:`pipelines.trainjob`) or Katib Experiment
(:mod:`pipelines.sweep`). ``--data`` is a folder on ``kubeflow.pvc`` with the train stage's inputs
(``features/``, ``split/label_map.json``, ``weights/``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from pipelines import PipelineError
from pipelines.components import validate_image
from pipelines.sweep import experiment, load_sweep
from pipelines.trainjob import params_configmap, pytorchjob
from signflow import archs
from signflow.config import ParamsError, apply_overrides, load_params

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.manifests", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["pytorchjob", "katib"])
    parser.add_argument("--name", required=True, help="resource name (lowercase, digits, '-')")
    parser.add_argument("--data", required=True, help="folder on the claim with the train stage's inputs")
    parser.add_argument("--out", default=None, help="pytorchjob: folder on the claim for the model")
    parser.add_argument("--nodes", type=int, default=2, help="pytorchjob: pods (GPUs each: resources.train.gpus)")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--image", default=None, help="default: kubeflow.image")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--sweep", type=Path, default=Path("sweep.yaml"))
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        if not _NAME.match(args.name):
            raise PipelineError(f"--name {args.name!r}: lowercase letters, digits and '-', at most 52 characters")
        params = archs.check_params(apply_overrides(load_params(args.params), args.param))
        image = validate_image(args.image or params.kubeflow.image)
        if args.kind == "pytorchjob":
            if not args.out:
                raise PipelineError("pytorchjob needs --out (a folder on the claim for the model)")
            resource = pytorchjob(params, name=args.name, image=image, nodes=args.nodes, data=args.data,
                                  out=args.out, namespace=args.namespace)  # fmt: skip
        else:
            sweep = load_sweep(args.sweep, params)
            resource = experiment(params, sweep, name=args.name, image=image, data=args.data, namespace=args.namespace)
    except (PipelineError, ParamsError) as error:
        print(f"manifests: error: {error}", file=sys.stderr)
        return 2
    configmap = params_configmap(f"{args.name}-params", params, args.namespace)
    print(yaml.safe_dump_all([configmap, resource], sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
