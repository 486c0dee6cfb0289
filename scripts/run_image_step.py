"""Run one compiled pipeline step in the built image the way a KFP v2 pod runs it, without a cluster.

    python scripts/run_image_step.py --image signflow:dev-cpu                  # the download step
    python scripts/run_image_step.py --image signflow:dev-cpu --step download --out /tmp/step \\
        --set 'params_data={source: synthetic, synthetic: {num_glosses: 2, repetitions: 1}}'

What a KFP v2 pod does, and what this does instead:

- command: the step's ``command`` + ``args`` from ``pipelines/signflow_pipeline.yaml`` verbatim
  (``sh -ec ... python3 -m kfp.dsl.executor_main ... --executor_input {{$}}``), as uid 10001 (the
  pod's ``runAsUser``; also the image's USER);
- executor input: the launcher replaces ``{{$}}`` with JSON holding the parameter values and one
  URI per output artifact under the pipeline root; here the values are the compiled defaults (plus
  ``--set``) and the root is ``minio://mlpipeline/v2/artifacts``, KFP's default. The executor turns
  ``minio://bucket/key`` into the local path ``/minio/bucket/key`` inside the container, and the
  launcher uploads from there after the step: that folder must be writable by uid 10001;
- input artifacts (``--input name=DIR``): the launcher downloads them to ``/minio/...`` before the
  step; here they are copied into the created container at the same path;
- after the step: ``/minio`` and ``/tmp/kfp_outputs/output_metadata.json`` (the executor output:
  logged metrics, artifact metadata) are copied out to ``--out``, as the launcher would upload them.

Engine flags for every ``create``: ``--engine-flag`` and ``$SIGNFLOW_ENGINE_FLAGS`` (e.g. a sandbox
whose kernel refuses podman's default ulimits: ``--ulimit nofile=20000:20000 --ulimit nproc=32768:32768``).

Not emulated: the launcher binary itself (``/kfp-launcher/launch``: MLMD, the object-store
upload/download, caching), Kubernetes (volumes, resources, GPUs). Exit status = the step's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "pipelines" / "signflow_pipeline.yaml"
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
STEP_USER = "10001:10001"
log = logging.getLogger("run_image_step")


def local_path(uri: str) -> str:
    """Where the KFP executor keeps the artifact at ``uri`` (kfp.dsl.types.artifact_types)."""
    for scheme, prefix in (("minio://", "/minio/"), ("gs://", "/gcs/"), ("s3://", "/s3/")):
        if uri.startswith(scheme):
            return prefix + uri[len(scheme):]
    raise ValueError(f"{uri}: not a minio://, gs:// or s3:// URI")


def load_spec(path: Path = PIPELINE) -> dict[str, Any]:
    """The PipelineSpec document of the compiled YAML (the second document is the platform spec)."""
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return documents[0]


def _typed(value: Any, parameter_type: str, name: str) -> Any:
    """A parameter value as the KFP driver hands it over (JSON numbers, booleans, strings, lists)."""
    if parameter_type == "NUMBER_INTEGER":
        if isinstance(value, str) or int(value) != value:
            raise ValueError(f"{name}: {value!r} is not an integer")
        return int(value)
    if parameter_type == "NUMBER_DOUBLE":
        return float(value)
    if parameter_type == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: {value!r} is not a boolean (true/false)")
        return value
    if parameter_type == "STRING":
        return value if isinstance(value, str) else json.dumps(value)
    return value


def executor_input(spec: dict[str, Any], step: str, overrides: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The ``{{$}}`` JSON for ``step``: compiled defaults (+ ``overrides``) and ``minio://`` artifact URIs."""
    tasks = spec["root"]["dag"]["tasks"]
    if step not in tasks:
        raise ValueError(f"unknown step {step!r}; the pipeline has {', '.join(sorted(tasks))}")
    task = tasks[step]
    component = spec["components"][task["componentRef"]["name"]]
    root_parameters = spec["root"]["inputDefinitions"]["parameters"]
    declared = component.get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise ValueError(f"step {step} has no parameter {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, definition in declared.items():
        binding = task.get("inputs", {}).get("parameters", {}).get(name, {})
        if name in overrides:
            value = overrides[name]
        elif "componentInputParameter" in binding:
            value = root_parameters[binding["componentInputParameter"]].get("defaultValue")
        elif "runtimeValue" in binding:
            value = binding["runtimeValue"]["constant"]
        elif "defaultValue" in definition:  # an input the task leaves unset: the component's default
            value = definition["defaultValue"]
        else:
            raise ValueError(f"step {step}: parameter {name} comes from another task; pass it with --set")
        values[name] = _typed(value, definition["parameterType"], name)
    inputs: dict[str, Any] = {"parameterValues": values}
    input_artifacts = component.get("inputDefinitions", {}).get("artifacts", {})
    if input_artifacts:
        inputs["artifacts"] = {
            name: {"artifacts": [_artifact(name, definition, f"{PIPELINE_ROOT}/signflow/{run_id}/inputs/{name}")]}
            for name, definition in input_artifacts.items()
        }
    outputs = {
        name: {"artifacts": [_artifact(name, definition, f"{PIPELINE_ROOT}/signflow/{run_id}/{step}/{name}")]}
        for name, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items()
    }
    return {"inputs": inputs, "outputs": {"artifacts": outputs, "outputFile": OUTPUT_FILE}}


def _artifact(name: str, definition: dict[str, Any], uri: str) -> dict[str, Any]:
    return {"name": name, "type": dict(definition["artifactType"]), "uri": uri, "metadata": {}}


def container_argv(spec: dict[str, Any], step: str, payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(command, args) of the step's container with ``{{$}}`` replaced, as the launcher does."""
    executor = spec["root"]["dag"]["tasks"][step]["componentRef"]["name"].replace("comp-", "exec-", 1)
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    text = json.dumps(payload)
    args = [text if arg == "{{$}}" else arg for arg in container.get("args", [])]
    return list(container["command"]), args


def container_env(spec: dict[str, Any], step: str) -> dict[str, str]:
    executor = spec["root"]["dag"]["tasks"][step]["componentRef"]["name"].replace("comp-", "exec-", 1)
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    return {item["name"]: str(item.get("value", "")) for item in container.get("env", [])}


def _override(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected name=value")
    return name.strip(), yaml.safe_load(raw)  # YAML scalars: 2 -> int, true -> bool, 0.5 -> float


def default_engine() -> str:
    for engine in ("podman", "docker"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True).returncode == 0:
            return engine
    raise SystemExit("run_image_step: no container engine answers (podman info / docker info)")


def run_step(image: str, step: str, out: Path, engine: str, overrides: dict[str, Any],
             inputs: dict[str, Path], network: str = "none", extra: list[str] | None = None,
             user: str = STEP_USER, spec_path: Path = PIPELINE) -> int:
    """Create the step's container, place input artifacts, run it, copy /minio + executor output to ``out``."""
    spec = load_spec(spec_path)
    run_id = uuid.uuid4().hex[:12]
    payload = executor_input(spec, step, overrides, run_id)
    command, args = container_argv(spec, step, payload)
    name = f"signflow-step-{step}-{run_id}"
    # --no-healthcheck: Kubernetes ignores the image's HEALTHCHECK (the serving probe), so does a step.
    create = [engine, "create", "--name", name, "--user", user, "--network", network, "--no-healthcheck",
              "--entrypoint", command[0]]
    create += shlex.split(os.environ.get("SIGNFLOW_ENGINE_FLAGS", ""))
    for key, value in container_env(spec, step).items():
        create += ["--env", f"{key}={value}"]
    create += [*(extra or []), image, *command[1:], *args]
    out.mkdir(parents=True, exist_ok=True)
    (out / "executor_input.json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    subprocess.run(create, check=True, stdout=subprocess.DEVNULL)
    try:
        if inputs:
            # The launcher downloads inputs before the step, to the executor's local path of each URI.
            with tempfile.TemporaryDirectory() as staging:
                for artifact, source in inputs.items():
                    items = payload["inputs"].get("artifacts", {}).get(artifact)
                    if items is None:
                        raise SystemExit(f"run_image_step: step {step} has no input artifact {artifact!r}")
                    target = local_path(items["artifacts"][0]["uri"]).removeprefix("/minio/")
                    shutil.copytree(source, Path(staging) / target)
                subprocess.run([engine, "cp", f"{staging}/.", f"{name}:/minio/"], check=True)
        log.info("%s start -a %s (user %s, %s)", engine, name, user, image)
        code = subprocess.run([engine, "start", "--attach", name], check=False).returncode
        for source, target in (("/minio/.", out / "minio"), (OUTPUT_FILE, out / "output_metadata.json")):
            copied = subprocess.run([engine, "cp", f"{name}:{source}", str(target)], capture_output=True, text=True)
            if copied.returncode != 0:
                log.warning("nothing copied from %s: %s", source, copied.stderr.strip())
    finally:
        subprocess.run([engine, "rm", "--force", name], check=False, capture_output=True)
    log.info("step %s exited %d; artifacts under %s", step, code, out / "minio")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--image", required=True, help="the built image (make image)")
    parser.add_argument("--step", default="download", help="a task of the compiled pipeline")
    parser.add_argument("--out", type=Path, default=Path("build/image-step"), help="where the artifacts are copied")
    parser.add_argument("--engine", default=None, help="podman or docker (default: the one that answers)")
    parser.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                        metavar="NAME=VALUE", help="a step parameter (pipeline parameter name), YAML value")
    parser.add_argument("--input", dest="inputs", action="append", default=[], metavar="NAME=DIR",
                        help="an input artifact's content, placed where the launcher would download it")
    parser.add_argument("--network", default="none", help="container network (none: the synthetic source needs none)")
    parser.add_argument("--user", default=STEP_USER, help="uid:gid the step runs as (the pod's runAsUser)")
    parser.add_argument("--engine-flag", dest="extra", action="append", default=[],
                        help="one more flag for `create` (e.g. --engine-flag=--runtime=runc)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    inputs = {}
    for item in args.inputs:
        name, sep, folder = item.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"--input {item!r}: expected NAME=DIR with an existing folder")
        inputs[name] = Path(folder).resolve()
    if args.out.exists():
        shutil.rmtree(args.out)
    try:
        return run_step(args.image, args.step, args.out, args.engine or default_engine(), dict(args.overrides),
                        inputs, network=args.network, extra=args.extra, user=args.user)
    except ValueError as error:
        parser.error(str(error))
    return 2  # pragma: no cover - parser.error exits


if __name__ == "__main__":
    sys.exit(main())
