"""Stage ``weights``: the pretrained backbone file as a tracked, cached DVC input.

Inputs:  nothing but params; with ``model.pretrained: true`` the network (torchvision's URL, or
         ``model.weights_url``) or a local copy (``model.weights_path``, the torch hub cache).
Outputs: ``--out data/weights``: ``weights.json`` (what was fetched, from where, its SHA-256; or
         ``{"pretrained": false}``) and the weights file itself, which train reads (``--weights``).
Params:  ``model`` (``pretrained``, ``arch``, each arch's backbone key (``cnn_lstm.backbone``), ``weights_url``,
         ``weights_sha256``, ``weights_path``).

Run once: DVC caches the output, so later runs (and ``dvc exp run``s) never download again, and
the checksum is part of the lock file. Offline without a local copy: a one-line error saying
where to put the file; with ``pretrained: false`` (the default) the stage writes only the record.
"""

from __future__ import annotations

from pathlib import Path

from signflow import archs, atomic
from signflow.config import ParamsError
from signflow.stage_cli import StageCli

# The params keys this stage reads: exactly its dvc.yaml params (tests/test_dvc_deps.py). The backbone
# keys come from the arch registry, so an arch with its own backbone choice fails that test until listed.
PARAMS = (
    "model.pretrained",
    "model.arch",
    *(f"model.{spec.backbone_param}" for spec in archs.BUILTIN if spec.backbone_param),
    "model.weights_url",
    "model.weights_sha256",
    "model.weights_path",
)
CLI = StageCli("weights", PARAMS, __doc__)


def main(argv: list[str] | None = None) -> int:
    parser = CLI.parser()
    parser.add_argument("--out", required=True, help="output folder (data/weights)")
    args = CLI.parse(parser, argv)
    from signflow.models.weights import RECORD_NAME, WeightsNotFoundError, fetch_weights, pretrained_backbone

    try:
        model = archs.check_params(CLI.params(args)).model
        backbone = pretrained_backbone(model) if model.pretrained else None
        with atomic.atomic_path(args.out, is_dir=True) as tmp:
            if backbone is None:
                record = {"pretrained": False}
            else:
                record = {"pretrained": True, **fetch_weights(
                    backbone, tmp, url=model.weights_url, sha256=model.weights_sha256, weights_path=model.weights_path
                )}  # fmt: skip
            atomic.write_json(Path(tmp) / RECORD_NAME, record)
    except (ParamsError, WeightsNotFoundError, ValueError) as error:
        return CLI.fail(error)
    print(f"weights: {record.get('file', 'none (model.pretrained: false)')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
