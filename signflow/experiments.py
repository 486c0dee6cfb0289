"""Named DVC experiments declared in a YAML file, run as ``dvc exp run -n NAME -S key=value ...``.

Why a file: a benchmark such as WLASL100 needs a dozen ``-S`` overrides (source, index, split
file, crop, representation...) shared by every model tried on it. Writing them once, next to
``params.yaml``, keeps the command short and the experiments comparable; each run is still a
plain DVC experiment of the same ``dvc.yaml`` (run cache, ``dvc exp show``, the package stage).

File shape (``experiments/wlasl100.yaml``)::

    base: {data.source: local, ...}          # -S overrides shared by every experiment
    experiments:
      wl100-landmark-gcn: {model.arch: landmark_gcn, ...}

Every experiment's overrides are validated against ``params.yaml`` (unknown key, wrong type,
out-of-range value) before the first ``dvc exp run`` starts, so a typo in the last entry
cannot waste an hour of extraction first. ``--seeds 0 1 2`` runs each chosen experiment once
per ``train.seed`` as ``NAME-s<seed>``: the spread the benchmark table reports.

    python -m signflow.experiments experiments/wlasl100.yaml [NAME ...] [--seeds 0 1 2] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from signflow import archs
from signflow.config import DEFAULT_PARAMS_PATH, ParamsError, apply_overrides, load_params

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ExperimentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(default_factory=dict, description="overrides shared by every experiment")
    experiments: dict[str, dict[str, Any]] = Field(min_length=1)


def format_value(value: Any) -> str:
    """A YAML value as DVC's ``-S`` (Hydra override) parser reads it back."""
    if isinstance(value, str):
        return value
    return json.dumps(value)  # bool -> true, None -> null, lists -> [1, 5]


def overrides(spec: ExperimentFile, name: str, seed: int | None = None) -> list[str]:
    merged = {**spec.base, **spec.experiments[name]}
    if seed is not None:
        merged["train.seed"] = seed
    return [f"{key}={format_value(value)}" for key, value in merged.items()]


def load_experiments(path: str | os.PathLike[str], params_path: str | os.PathLike[str]) -> ExperimentFile:
    """Read and validate the file; every experiment must give valid params. Raises ParamsError."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: experiments file not found")
    try:
        spec = ExperimentFile.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as error:
        raise ParamsError(f"{path}: {error}") from None
    params = load_params(params_path)
    for name in spec.experiments:
        if not re.match(NAME_PATTERN, name):
            raise ParamsError(f"{path}: experiment name {name!r} must match {NAME_PATTERN}")
        try:
            archs.check_params(apply_overrides(params, overrides(spec, name)))
        except ParamsError as error:
            raise ParamsError(f"{path}: experiment {name!r}: {error}") from None
    return spec


def commands(spec: ExperimentFile, names: list[str], seeds: list[int] | None) -> list[list[str]]:
    runs = []
    for name in names:
        for seed in seeds or [None]:
            run_name = name if seed is None else f"{name}-s{seed}"
            sets = [arg for override in overrides(spec, name, seed) for arg in ("-S", override)]
            runs.append(["dvc", "exp", "run", "-n", run_name, *sets])
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="experiments YAML (e.g. experiments/wlasl100.yaml)")
    parser.add_argument("names", nargs="*", help="experiments to run (default: all, in file order)")
    parser.add_argument("--seeds", type=int, nargs="+", help="one run per train.seed, named NAME-s<seed>")
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH), help="base params file")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands only")
    args = parser.parse_args(argv)
    try:
        spec = load_experiments(args.file, args.params)
    except ParamsError as error:
        print(f"experiments: error: {error}", file=sys.stderr)
        return 2
    unknown = [name for name in args.names if name not in spec.experiments]
    if unknown:
        print(
            f"experiments: error: unknown experiment(s) {unknown}; the file has {list(spec.experiments)}",
            file=sys.stderr,
        )
        return 2
    for command in commands(spec, args.names or list(spec.experiments), args.seeds):
        print("+ " + shlex.join(command), flush=True)
        if args.dry_run:
            continue
        code = subprocess.call(command)
        if code != 0:
            print(f"experiments: error: {command[4]} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
