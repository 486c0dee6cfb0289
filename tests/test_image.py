"""The built image as a KFP v2 step runs it (scripts/run_image_step.py), and the executor input it uses.

Fast (no container): the executor input built from the compiled ``pipelines/signflow_pipeline.yaml``
is read by kfp's own ``Executor`` with each step's own component function: every parameter arrives
with its declared type and every output artifact's local path is under ``/minio/`` (what the image
must let uid 10001 create).

Slow (``-m slow``; skipped with the reason when no podman/docker answers or the image is absent):
the ``download`` step's compiled command in the image, as uid 10001 with ``minio://`` outputs ->
exit 0 and the raw dataset + executor output copied out; ``split`` then reads that dataset as its
input artifact; the same download as a uid that does not own ``/minio`` fails with the
``PermissionError`` of issue 12 (the control that shows the test would catch it). The image:
``$SIGNFLOW_IMAGE``, else the first present of ``signflow:dev-cpu``, ``signflow:dev-cu130`` (``make
image``). The build itself is not run here (minutes and GBs; docs/kubeflow.md records it).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shlex
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from kfp.dsl import executor as kfp_executor
from kfp.dsl import utils as kfp_utils

REPO = Path(__file__).resolve().parents[1]
TINY = {  # 2 glosses x 3 signers (train, val, test) x 1 repetition of 8 small frames: the data section's text
    "params_data": yaml.safe_dump({"source": "synthetic", "synthetic": {
        "num_glosses": 2, "signers": 3, "repetitions": 1, "frames": 8, "lead_frames": 1, "height": 32, "width": 32,
        "num_workers": 1}}),
}  # fmt: skip


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_image_step", REPO / "scripts" / "run_image_step.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


step = _script()


def _component_function(spec: dict, name: str, tmp_path: Path) -> typing.Callable:
    """The step's function from the compiled command, loaded the way ``kfp.dsl.executor_main`` does."""
    command, args = step.container_argv(spec, name, {})
    source = command[3]  # sh -ec <script> <component source>: "$0" of the script
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ephemeral_component.py").write_text(source, encoding="utf-8")
    module = kfp_utils.load_module(module_name="ephemeral_component", module_directory=str(folder))
    return getattr(module, args[args.index("--function_to_execute") + 1])


DUMMY = {"NUMBER_INTEGER": 1, "NUMBER_DOUBLE": 1.0, "BOOLEAN": True, "STRING": "x", "LIST": [], "STRUCT": {}}


def _from_other_tasks(spec: dict, name: str) -> dict:
    """Values for parameters another task produces at run time (the launcher would resolve them)."""
    task = spec["root"]["dag"]["tasks"][name]
    declared = spec["components"][task["componentRef"]["name"]].get("inputDefinitions", {}).get("parameters", {})
    return {key: DUMMY[declared[key]["parameterType"]] for key, binding in task["inputs"].get("parameters", {}).items()
            if "taskOutputParameter" in binding}


def test_executor_input_is_what_kfp_reads_for_every_step(tmp_path: Path) -> None:
    spec = step.load_spec()
    for name in spec["root"]["dag"]["tasks"]:
        payload = step.executor_input(spec, name, _from_other_tasks(spec, name), run_id="r1")
        command, args = step.container_argv(spec, name, payload)
        assert command[:2] == ["sh", "-ec"] and "kfp.dsl.executor_main" in command[2]
        assert json.loads(args[args.index("--executor_input") + 1]) == payload
        function = _component_function(spec, name, tmp_path)
        executor = kfp_executor.Executor(executor_input=payload, function_to_execute=function)
        hints = typing.get_type_hints(function)
        for parameter in inspect.signature(function).parameters:
            if parameter in payload["inputs"]["parameterValues"]:
                value = executor.get_input_parameter_value(parameter)
                expected = hints[parameter]
                if expected in (int, float, bool, str):
                    assert type(value) is expected or (expected is float and type(value) is int), (name, parameter)
        for output in payload["outputs"]["artifacts"]:
            path = executor.get_output_artifact_path(output)
            assert path == f"/minio/mlpipeline/v2/artifacts/signflow/r1/{name}/{output}", path
        for artifact in payload["inputs"].get("artifacts", {}):
            assert executor.get_input_artifact_path(artifact).startswith("/minio/mlpipeline/")


def test_executor_input_rejects_unknown_steps_and_parameters() -> None:
    spec = step.load_spec()
    with pytest.raises(ValueError, match="unknown step 'downlaod'"):
        step.executor_input(spec, "downlaod", {}, run_id="r1")
    with pytest.raises(ValueError, match="has no parameter params_dta"):
        step.executor_input(spec, "download", {"params_dta": "source: synthetic"}, run_id="r1")
    with pytest.raises(ValueError, match="train__epochs: 2.5 is not an integer"):
        step.executor_input(spec, "train", {"train__epochs": 2.5}, run_id="r1")
    values = step.executor_input(spec, "download", TINY, run_id="r1")["inputs"]["parameterValues"]
    data = yaml.safe_load(values["params_data"])
    assert data["synthetic"]["num_glosses"] == 2 and data["source"] == "synthetic"


def test_local_paths_follow_kfp() -> None:
    from kfp.dsl.types import artifact_types

    assert step.local_path("minio://b/k/raw") == artifact_types._MINIO_LOCAL_MOUNT_PREFIX + "b/k/raw"
    assert step.local_path("gs://b/k") == artifact_types._GCS_LOCAL_MOUNT_PREFIX + "b/k"
    assert step.local_path("s3://b/k") == artifact_types._S3_LOCAL_MOUNT_PREFIX + "b/k"


def _engine() -> str:
    for engine in ("podman", "docker"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True).returncode == 0:
            return engine
    pytest.skip("no container engine answers (podman info / docker info): install podman to run the image")


def _can_start_a_container(engine: str, name: str) -> None:
    """Skip, with the engine's own words, where this machine cannot start any container (a sandbox
    kernel refusing the engine's default rlimits, say): that is the host, not the image."""
    probe = subprocess.run(
        [engine, "run", "--rm", "--no-healthcheck", *shlex.split(os.environ.get("SIGNFLOW_ENGINE_FLAGS", "")),
         "--entrypoint", "true", name],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"{engine} cannot start a container from {name} here ({reason}); engine flags go in "
                    "SIGNFLOW_ENGINE_FLAGS, e.g. '--ulimit nofile=20000:20000 --ulimit nproc=32768:32768' "
                    "(docs/kubeflow.md)")


@pytest.fixture(scope="module")
def image() -> tuple[str, str]:
    engine = _engine()
    candidates = [os.environ["SIGNFLOW_IMAGE"]] if os.environ.get("SIGNFLOW_IMAGE") else [
        "signflow:dev-cpu", "signflow:dev-cu130"]
    for name in candidates:
        if subprocess.run([engine, "image", "exists" if engine == "podman" else "inspect", name],
                          capture_output=True).returncode == 0:
            _can_start_a_container(engine, name)
            return engine, name
    pytest.skip(f"no image {' or '.join(candidates)} in {engine} (build it: make image; or set SIGNFLOW_IMAGE)")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_download_then_split_run_in_the_image_as_kfp_steps(image: tuple[str, str], tmp_path: Path) -> None:
    engine, name = image
    out = tmp_path / "download"
    code = step.run_step(name, "download", out, engine, TINY, {})
    assert code == 0, "the download step failed in the image (its log is above)"
    (raw,) = list((out / "minio").glob("mlpipeline/v2/artifacts/signflow/*/download/raw"))
    videos = [path for path in _files(raw) if path.endswith(".mp4")]
    assert len(videos) == 2 * 3 * 1, _files(raw)
    metadata = json.loads((out / "output_metadata.json").read_text(encoding="utf-8"))
    assert set(metadata["artifacts"]) >= {"raw", "metrics"}
    assert metadata["artifacts"]["raw"]["artifacts"][0]["uri"].startswith("minio://mlpipeline/")

    # The next step reads that dataset where the launcher would have downloaded it.
    split_out = tmp_path / "split"
    overrides = {key: value for key, value in TINY.items()
                 if key in step.executor_input(step.load_spec(), "split", {}, "x")["inputs"]["parameterValues"]}
    assert step.run_step(name, "split", split_out, engine, overrides, {"raw": raw}) == 0
    (split,) = list((split_out / "minio").glob("mlpipeline/v2/artifacts/signflow/*/split/split"))
    assert _files(split), "split wrote nothing"


@pytest.mark.slow
def test_a_user_that_does_not_own_minio_gets_the_issue_12_error(image: tuple[str, str], tmp_path: Path,
                                                                 capfd: pytest.CaptureFixture[str]) -> None:
    """Control: uid 10002 (not the owner, not in group 0) is the image without writable /minio."""
    engine, name = image
    code = step.run_step(name, "download", tmp_path / "out", engine, TINY, {}, user="10002:10002")
    assert code != 0
    captured = capfd.readouterr()
    assert "PermissionError" in captured.out + captured.err


def test_script_help_runs() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "run_image_step.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--executor_input" not in result.stdout and "--image" in result.stdout
