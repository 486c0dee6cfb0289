"""The compiled Kubeflow pipeline, run end to end with ``kfp.local``, gives the numbers ``dvc repro`` gives.

Both runs start from one small synthetic params.yaml in a temporary git+DVC copy of the project:
``dvc repro`` there, then the pipeline compiled from that copy's ``dvc.yaml``/``params.yaml`` under
``kfp.local.SubprocessRunner`` (every step a real subprocess running the lightweight component).
Same stage code, same params, same seeds -> the same evaluation metrics, confusion matrix and
split, exactly (the stages are deterministic on CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.compile import compile_pipeline
from pipelines.runtime import flatten_metrics, read_confusion
from signflow.config import apply_overrides, load_params

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Small and fast, but every stage does real work: 4 glosses x 3 signers x 2 repetitions.
SMALL = [
    "data.source=synthetic",
    "data.synthetic.num_glosses=4",
    "data.synthetic.signers=3",
    "data.synthetic.repetitions=2",
    "data.synthetic.frames=12",
    "data.synthetic.lead_frames=2",
    "data.synthetic.width=48",
    "data.synthetic.height=48",
    "split.strategy=random",
    "split.val_fraction=0.25",
    "split.test_fraction=0.25",
    "extract.seq_len=4",
    "extract.stored_frames=8",
    "extract.frame_size=24",
    "extract.num_workers=1",
    "model.arch=cnn_lstm",
    "model.cnn_lstm.hidden=16",
    "train.epochs=2",
    "train.batch_size=4",
    "train.device=cpu",
    "train.num_workers=0",
    "evaluate.top_k=[1, 2]",
    "package.experiments=false",
    "package.measure_latency=false",
]


def _project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a fresh clone plus the work in progress holds."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    return [name for name in listing.split("\0") if name and (REPO / name).is_file()]


def _env(bentoml_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        BENTOML_HOME=str(bentoml_home),
        BENTOML_DO_NOT_TRACK="True",
        DO_NOT_TRACK="1",
        DVC_NO_ANALYTICS="1",
    )
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git+DVC copy of the project with the small params, after a real ``dvc repro``."""
    if shutil.which("git") is None or not (BIN / "dvc").exists():
        pytest.skip("needs git and dvc (make setup)")
    repo = tmp_path_factory.mktemp("signflow") / "repo"
    for name in _project_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, repo / name)
    params = apply_overrides(load_params(repo / "params.yaml"), SMALL)
    (repo / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    env = _env(repo.parent / "bentoml-dvc")
    # `dvc init -f`: the project may already carry a .dvc/ folder (a fresh clone does). The commit:
    # dvclive (train) reads the baseline revision, which an empty repository does not have.
    git = ["git", "-c", "user.name=signflow-test", "-c", "user.email=test@localhost", "-c", "commit.gpgsign=false"]
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q", "-f"],
        ["dvc", "config", "core.analytics", "false"],
        [*git, "add", "-A"],
        [*git, "commit", "-q", "-m", "snapshot"],
    ):
        subprocess.run(command, cwd=repo, env=env, check=True, capture_output=True, text=True)
    result = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"dvc repro failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return repo


def _run_locally(package: Path, project: Path, root: Path) -> Path:
    """Run a compiled pipeline (its defaults) with kfp.local from ``project``; returns the run folder."""
    from kfp import components, local

    root.mkdir()  # outside the repo copy: kfp.local writes every artifact here
    env_before = dict(os.environ)
    cwd_before = Path.cwd()
    os.environ.update(_env(root.parent / f"bentoml-{root.name}"))
    os.chdir(project)  # steps run in the working directory, like `dvc repro`
    try:
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
        pipeline = components.load_component_from_file(str(package))
        with warnings.catch_warnings():
            # SubprocessRunner warns that the step image is not a python image; it runs this venv instead.
            warnings.simplefilter("ignore", RuntimeWarning)
            # ...and that Kubernetes resources (CPU, memory, GPUs) mean nothing locally.
            warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current local runner")
            pipeline()
    finally:
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(env_before)
    (run,) = [path for path in root.iterdir() if path.is_dir()]
    return run


@pytest.fixture(scope="module")
def kfp_run(project: Path) -> Path:
    """The compiled pipeline (defaults = the small params) run by kfp.local; returns the run folder."""
    package = compile_pipeline(
        project.parent / "signflow_pipeline.yaml",
        params_path=project / "params.yaml",
        dvc_path=project / "dvc.yaml",
    )
    return _run_locally(package, project, project.parent / "kfp-root")


def _executor_output(run: Path, task: str) -> dict[str, Any]:
    return json.loads((run / task / "executor_output.json").read_text(encoding="utf-8"))


def _artifact_metadata(run: Path, task: str, output: str) -> dict[str, Any]:
    artifacts = _executor_output(run, task)["artifacts"][output]["artifacts"]
    return artifacts[0]["metadata"]


def test_every_dvc_stage_ran_as_a_step(project: Path, kfp_run: Path) -> None:
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    assert {path.name for path in kfp_run.iterdir() if path.is_dir()} == set(stages)


def test_evaluation_metrics_equal_dvc_repro(project: Path, kfp_run: Path) -> None:
    dvc_metrics = json.loads((project / "reports" / "evaluate" / "metrics.json").read_text(encoding="utf-8"))
    kfp_metrics = json.loads((kfp_run / "evaluate" / "evaluate" / "metrics.json").read_text(encoding="utf-8"))
    assert kfp_metrics == dvc_metrics
    # ...and the Metrics artifact the Kubeflow UI shows holds the same numbers.
    assert _artifact_metadata(kfp_run, "evaluate", "metrics") == pytest.approx(flatten_metrics(dvc_metrics))


def test_confusion_matrix_artifact_equals_dvc_plot(project: Path, kfp_run: Path) -> None:
    categories, matrix = read_confusion(project / "reports" / "evaluate" / "confusion.csv")
    logged = _artifact_metadata(kfp_run, "evaluate", "confusion_matrix")["confusionMatrix"]
    assert [item["displayName"] for item in logged["annotationSpecs"]] == categories
    assert [row["row"] for row in logged["rows"]] == matrix
    report = (kfp_run / "evaluate" / "report").read_text(encoding="utf-8")
    assert "## Metrics" in report


def test_data_stages_agree_byte_for_byte(project: Path, kfp_run: Path) -> None:
    for dvc_path, kfp_path in [
        ("data/split/manifest.csv", "split/split/manifest.csv"),
        ("data/split/label_map.json", "split/split/label_map.json"),
        ("data/crop/plans.jsonl", "crop/crop/plans.jsonl"),
    ]:
        assert (kfp_run / kfp_path).read_bytes() == (project / dvc_path).read_bytes(), dvc_path
    assert _artifact_metadata(kfp_run, "split", "metrics") == pytest.approx(
        flatten_metrics(json.loads((project / "reports" / "split.json").read_text(encoding="utf-8")))
    )


def test_model_leaves_as_an_exported_bento_and_without_checkpoints(project: Path, kfp_run: Path) -> None:
    """The Model artifacts: train's holds the model only; package's is the importable BentoML export."""
    assert sorted(p.name for p in (kfp_run / "train" / "model").iterdir()) == ["model.pt", "preprocess.json"]
    exported = kfp_run / "package" / "bento"
    assert sorted(p.name for p in exported.iterdir()) == ["model.bentomodel", "model.json"]
    record = json.loads((kfp_run / "package" / "package").read_text(encoding="utf-8"))
    assert json.loads((exported / "model.json").read_text(encoding="utf-8"))["model_tag"] == record["model_tag"]
    # dvc repro writes the same export as a DVC out.
    assert (project / "bento" / "model.bentomodel").is_file()


def test_train_step_runs_torchrun_with_one_worker_per_gpu(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """gpus: 2 -> the train step launches torchrun with 2 workers (gloo on CPU stands in for NCCL on GPUs)."""
    package = compile_pipeline(
        tmp_path / "ddp.yaml",
        params_path=project / "params.yaml",
        dvc_path=project / "dvc.yaml",
        stage_names=["download", "split", "crop", "extract", "weights", "train"],
        overrides=["kubeflow.resources.train.gpus=2"],
    )
    run = _run_locally(package, project, tmp_path / "kfp-ddp")
    log = capsys.readouterr().out
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m stages.train" in log
    assert "process group: backend=gloo rank=0/2" in log
    assert (run / "train" / "model" / "model.pt").is_file()
