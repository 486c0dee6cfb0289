"""The compiled Kubeflow pipeline: fresh, parsed back with kfp's own protobuf, in parity with dvc.yaml.

Also the compile-time refusals (bad image, unknown stage, params a pipeline parameter cannot
carry, dvc.yaml paths no step could receive) and the step runtime's file conversions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipelines import PipelineError
from pipelines import compile as compile_cli
from pipelines.components import validate_image
from pipelines.params import (
    parameter_defaults,
    parse_override,
    section_text,
    stage_params_text,
    with_values,
)
from pipelines.runtime import flatten_metrics, markdown_report, read_confusion
from pipelines.wiring import load_dvc, select, stages_from_dvc
from signflow.config import Params, ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
CHECKED_IN = REPO / "pipelines" / "signflow_pipeline.yaml"


def _documents(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader) if doc]
    return docs[0], (docs[1] if len(docs) > 1 else {})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    compile_cli.compile_pipeline(out, params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml")
    return out


@pytest.fixture(scope="module")
def spec() -> pipeline_spec_pb2.PipelineSpec:
    """The checked-in YAML through kfp's own schema (unknown fields are errors)."""
    pipeline, _ = _documents(CHECKED_IN)
    return json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def platform() -> dict[str, Any]:
    _, platform_doc = _documents(CHECKED_IN)
    return platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def dvc_stages() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def test_checked_in_yaml_is_fresh(compiled: Path) -> None:
    assert CHECKED_IN.is_file(), "run: python -m pipelines.compile"
    assert compiled.read_text(encoding="utf-8") == CHECKED_IN.read_text(encoding="utf-8"), (
        "pipelines/signflow_pipeline.yaml is stale (dvc.yaml, params.yaml or pipelines/ changed): "
        "run `python -m pipelines.compile` and commit the result"
    )


def test_task_names_equal_dvc_stage_names(spec: pipeline_spec_pb2.PipelineSpec, dvc_stages: dict[str, Any]) -> None:
    assert set(spec.root.dag.tasks) == set(dvc_stages)
    for name in dvc_stages:
        component = spec.components[spec.root.dag.tasks[name].component_ref.name]
        executor = spec.deployment_spec["executors"][component.executor_label]
        program = executor["container"]["command"][-1]
        # The step calls the very module dvc.yaml runs, through the shared runtime: no second implementation.
        module = dvc_stages[name]["cmd"].split()[2]
        assert f'"{module}"' in program and "run_stage(" in program


def test_artifacts_are_typed_and_chained(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    def output_type(task: str, name: str) -> str:
        component = spec.components[spec.root.dag.tasks[task].component_ref.name]
        return component.output_definitions.artifacts[name].artifact_type.schema_title

    assert output_type("download", "raw") == "system.Dataset"
    assert output_type("split", "split") == "system.Dataset"
    assert output_type("crop", "crop") == "system.Dataset"
    assert output_type("extract", "features") == "system.Dataset"
    assert output_type("train", "model") == "system.Model"
    assert output_type("package", "bento") == "system.Model"  # the exported BentoML model leaves the pipeline
    assert output_type("evaluate", "metrics") == "system.Metrics"
    assert output_type("evaluate", "confusion_matrix") == "system.ClassificationMetrics"
    assert output_type("evaluate", "report") == "system.Markdown"
    evaluate_inputs = spec.root.dag.tasks["evaluate"].inputs.artifacts
    assert evaluate_inputs["model"].task_output_artifact.producer_task == "train"
    assert evaluate_inputs["features"].task_output_artifact.producer_task == "extract"
    assert spec.root.dag.tasks["crop"].inputs.artifacts["split"].task_output_artifact.producer_task == "split"


def test_the_videos_move_once(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    """Issue 12: download's ``raw`` (every video) is an input of extract alone; split and crop get
    ``raw_index`` (index.json with each video's probe), so the launcher copies the videos into one pod."""
    readers: dict[str, set[str]] = {}
    for task_name, task in spec.root.dag.tasks.items():
        for artifact in task.inputs.artifacts.values():
            if artifact.task_output_artifact.producer_task == "download":
                readers.setdefault(artifact.task_output_artifact.output_artifact_key, set()).add(task_name)
    assert readers == {"raw": {"extract"}, "raw_index": {"split", "crop"}}
    component = spec.components[spec.root.dag.tasks["download"].component_ref.name]
    assert component.output_definitions.artifacts["raw_index"].artifact_type.schema_title == "system.Dataset"


def test_parameters_default_to_params_yaml_and_reach_their_steps(
    spec: pipeline_spec_pb2.PipelineSpec, dvc_stages: dict[str, Any]
) -> None:
    params = load_params(REPO / "params.yaml")
    root_inputs = spec.root.input_definitions.parameters
    sections = sorted({str(entry).split(".")[0] for stage in dvc_stages.values() for entry in stage.get("params", [])})
    run_names = sorted(name for name in root_inputs if "__" in name)
    assert {"train__epochs", "train__lr", "train__batch_size", "train__seed", "model__arch"} <= set(run_names)
    expected = parameter_defaults(params, sections, run_names)
    # Besides the params, only the GPU counts of GPU steps (cluster shape, no params.yaml key).
    assert set(root_inputs) == set(expected) | {"train_gpus", "evaluate_gpus"}
    assert json_format.MessageToDict(root_inputs["train_gpus"].default_value) == params.kubeflow.resources["train"].gpus
    for name, default in expected.items():
        assert json_format.MessageToDict(root_inputs[name].default_value) == default, name
    # The section texts are params.yaml's sections (nulls as YAML null), less the run parameters.
    train_text = yaml.safe_load(expected["params_train"])
    assert "epochs" not in train_text and train_text["backbone_lr"] is None and train_text["grad_clip"] == 1.0
    assert root_inputs["params_train"].parameter_type == pipeline_spec_pb2.ParameterType.STRING
    assert root_inputs["train__lr"].parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_DOUBLE
    assert root_inputs["train__epochs"].parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_INTEGER
    assert root_inputs["model__arch"].parameter_type == pipeline_spec_pb2.ParameterType.STRING
    # ...and the file says so: integer defaults are written as integers, not kfp's 25.0.
    pipeline, _ = _documents(CHECKED_IN)
    written = pipeline["root"]["inputDefinitions"]["parameters"]
    assert type(written["train__epochs"]["defaultValue"]) is int and type(written["train_gpus"]["defaultValue"]) is int
    assert f"#    train__epochs: int [Default: {params.train.epochs}]" in CHECKED_IN.read_text(encoding="utf-8")
    # Each step receives exactly the sections its dvc.yaml stage lists (so kfp caching follows the
    # same dependencies as DVC), each wired from the pipeline parameter.
    for name, stage in dvc_stages.items():
        wanted = {str(entry).split(".")[0] for entry in stage.get("params", [])}
        task_params = spec.root.dag.tasks[name].inputs.parameters
        got = {key: value for key, value in task_params.items() if key.startswith("params_") or "__" in key}
        assert {key.removeprefix("params_") for key in got if key.startswith("params_")} == wanted, name
        assert {key.split("__")[0] for key in got if "__" in key} <= wanted, name
        assert all(value.component_input_parameter == key for key, value in got.items())


def test_gpu_steps_request_gpus_resources_and_tolerations(
    spec: pipeline_spec_pb2.PipelineSpec, platform: dict[str, Any]
) -> None:
    kubeflow = load_params(REPO / "params.yaml").kubeflow
    for name in spec.root.dag.tasks:
        label = spec.components[spec.root.dag.tasks[name].component_ref.name].executor_label
        resources = spec.deployment_spec["executors"][label]["container"]["resources"]
        gpus = (kubeflow.resources.get(name) and kubeflow.resources[name].gpus) or kubeflow.default_resources.gpus
        if name in ("train", "evaluate"):
            assert gpus and gpus > 0
        if gpus:
            assert resources["accelerator"]["resourceType"] == kubeflow.accelerator_type
            # The count is the run parameter <stage>_gpus (default: the kubeflow section), not a constant.
            assert resources["accelerator"]["resourceCount"] == f"{{{{$.inputs.parameters['pipelinechannel--{name}_gpus']}}}}"
            task_inputs = spec.root.dag.tasks[name].inputs.parameters
            assert task_inputs[f"pipelinechannel--{name}_gpus"].component_input_parameter == f"{name}_gpus"
            assert platform[label]["tolerations"] == [
                {k: v for k, v in t.model_dump().items() if v is not None} for t in kubeflow.gpu_tolerations
            ]
            # DataLoader workers and NCCL need more than Docker's 64 MB of shared memory.
            (shm,) = [m for m in platform[label]["emptyDirMounts"] if m["mountPath"] == "/dev/shm"]
            assert shm["medium"] == "Memory" and shm["sizeLimit"] == kubeflow.resources[name].shm
        else:
            assert "accelerator" not in resources
        assert resources["resourceCpuRequest"] and resources["resourceMemoryLimit"]
        # Every step: local artifact copies and /tmp on size-limited emptyDirs, retries on failure.
        mounts = {m["mountPath"]: m for m in platform[label]["emptyDirMounts"]}
        assert {"/tmp", "/minio", "/s3", "/gcs"} <= set(mounts)
        assert mounts["/minio"]["sizeLimit"] == mounts["/tmp"]["sizeLimit"] == kubeflow.default_resources.scratch
        assert spec.root.dag.tasks[name].retry_policy.max_retry_count == kubeflow.retries
    train_inputs = spec.root.dag.tasks["train"].inputs.parameters
    # torchrun workers = GPUs of the run
    assert train_inputs["nproc_per_node"].component_input_parameter == "train_gpus"


def test_caching_on_by_default(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    assert all(task.caching_options.enable_cache for task in spec.root.dag.tasks.values())


def test_cluster_options_from_the_kubeflow_section(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    compile_cli.compile_pipeline(
        out,
        params_path=REPO / "params.yaml",
        dvc_path=REPO / "dvc.yaml",
        image="registry.example/signflow:1.2.3",
        overrides=[
            "kubeflow.resources.train.gpus=4",
            "kubeflow.pvc=signflow-data",
            "kubeflow.caching=false",
            "kubeflow.node_selector={pool: ml}",
            "kubeflow.gpu_node_selector={nvidia.com/gpu.product: H100}",
            "kubeflow.image_pull_secrets=[ghcr-pull]",
        ],
    )
    pipeline, platform_doc = _documents(out)
    spec = json_format.ParseDict(pipeline, pipeline_spec_pb2.PipelineSpec())
    executors = platform_doc["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = spec.root.dag.tasks["train"]
    label = spec.components[train.component_ref.name].executor_label
    assert spec.deployment_spec["executors"][label]["container"]["image"] == "registry.example/signflow:1.2.3"
    assert json_format.MessageToDict(spec.root.input_definitions.parameters["train_gpus"].default_value) == 4
    assert [s["secretName"] for s in executors[label]["imagePullSecret"]] == ["ghcr-pull"]
    train_env = {e["name"]: e["value"] for e in spec.deployment_spec["executors"][label]["container"]["env"]}
    assert train_env["SIGNFLOW_STATE_DIR"] == "/mnt/signflow/state" and train_env["BENTOML_HOME"] == "/mnt/signflow/bentoml"
    assert executors[label]["nodeSelector"]["labels"] == {"pool": "ml", "nvidia.com/gpu.product": "H100"}
    assert executors["exec-download"]["nodeSelector"]["labels"] == {"pool": "ml"}
    assert all(executor["pvcMount"][0]["mountPath"] == "/mnt/signflow" for executor in executors.values())
    assert not any(task.caching_options.enable_cache for task in spec.root.dag.tasks.values())


def test_raw_uri_imports_the_dataset_instead_of_downloading(tmp_path: Path) -> None:
    out = compile_cli.compile_pipeline(
        tmp_path / "p.yaml", params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml",
        overrides=["kubeflow.raw_uri=s3://bucket/signflow/raw"],
    )
    spec = json_format.ParseDict(_documents(out)[0], pipeline_spec_pb2.PipelineSpec())
    tasks = spec.root.dag.tasks
    assert "download" not in tasks and "params_data" not in spec.root.input_definitions.parameters
    importer = spec.deployment_spec["executors"][spec.components[tasks["importer"].component_ref.name].executor_label]
    assert importer["importer"]["artifactUri"]["runtimeParameter"] == "uri"
    assert tasks["importer"].inputs.parameters["uri"].component_input_parameter == "raw_uri"
    assert json_format.MessageToDict(spec.root.input_definitions.parameters["raw_uri"].default_value) == (
        "s3://bucket/signflow/raw"
    )
    # every reader of raw (split and crop: its index.json) reads the imported artifact
    for consumer, artifact in (("split", "raw_index"), ("crop", "raw_index"), ("extract", "raw")):
        assert tasks[consumer].inputs.artifacts[artifact].task_output_artifact.producer_task == "importer"
    with pytest.raises(ParamsError, match="kubeflow.raw_uri"):
        compile_cli.compile_pipeline(tmp_path / "q.yaml", params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml",
                                     overrides=["kubeflow.raw_uri=/local/path"])
    from pipelines import submit

    assert submit.build_arguments(out, ["raw_uri=gs://other/raw"]) == {"raw_uri": "gs://other/raw"}
    with pytest.raises(ParamsError, match="object-store folder"):
        submit.build_arguments(out, ["raw_uri=data/raw"])


def test_stage_subset_and_unknown_stage(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    compile_cli.compile_pipeline(
        out, params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml", stage_names=["download", "split"]
    )
    spec = json_format.ParseDict(_documents(out)[0], pipeline_spec_pb2.PipelineSpec())
    assert set(spec.root.dag.tasks) == {"download", "split"}
    stages = stages_from_dvc(load_dvc(REPO / "dvc.yaml"))
    with pytest.raises(PipelineError, match="unknown stage 'trian'"):
        select(stages, ["download", "trian"])
    with pytest.raises(PipelineError, match="add 'split' to --stages"):
        select(stages, ["download", "crop"])


@pytest.mark.parametrize(
    ("image", "message"),
    [("", "no component image"), ("   ", "no component image"), ("ghcr.io/x/signflow", "has no tag"),
     ("localhost:5000/signflow", "has no tag"), ("signflow:", "has no tag")],
)
def test_image_without_tag_is_refused(image: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        validate_image(image)


def test_image_with_tag_or_digest_is_accepted() -> None:
    assert validate_image("localhost:5000/signflow:0.1.0") == "localhost:5000/signflow:0.1.0"
    assert validate_image("ghcr.io/x/signflow@sha256:" + "a" * 64).startswith("ghcr.io")


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.yaml"
    base = ["--params", str(REPO / "params.yaml"), "--dvc", str(REPO / "dvc.yaml"), "--output", str(out)]
    assert compile_cli.main([*base, "--image", "signflow"]) == 2
    assert compile_cli.main([*base, "--stages", "download,trian"]) == 2
    assert compile_cli.main([*base, "-p", "kubeflow.resources={trian: {gpus: 1}}"]) == 2
    assert compile_cli.main([*base, "-p", "kubeflow.resources.train.cpu_limit=lots"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and all(line.startswith("compile: error: ") for line in errors)
    assert "has no tag" in errors[0] and "unknown stage 'trian'" in errors[1]
    assert "kubeflow.resources: unknown stage 'trian'" in errors[2]
    assert "kubeflow.resources.train.cpu_limit" in errors[3]
    assert not out.exists()


def test_unknown_params_section_fails_at_compile_time() -> None:
    with pytest.raises(PipelineError, match="unknown section 'trian'"):
        section_text(Params(), "trian")


def test_params_round_trip_through_pipeline_arguments() -> None:
    """Every section a stage reads survives params -> pipeline arguments -> a step's params file unchanged."""
    params = load_params(REPO / "params.yaml")
    sections = sorted({section for stage in stages_from_dvc(load_dvc(REPO / "dvc.yaml")) for section in stage.sections})
    assert {"data", "extract", "train", "model", "evaluate"} <= set(sections)
    run_names = ["train__epochs", "train__lr", "model__arch"]
    arguments = parameter_defaults(params, sections, run_names)
    texts = {section: arguments[f"params_{section}"] for section in sections}
    run_values = {name.replace("__", "."): arguments[name] for name in run_names}
    rebuilt = yaml.safe_load(stage_params_text(texts, run_values))
    assert set(rebuilt) == set(sections)
    for section in sections:
        assert rebuilt[section] == params.model_dump(mode="json")[section], section
    text = stage_params_text({"train": texts["train"], "model": texts["model"]}, run_values)
    assert set(yaml.safe_load(text)) == {"train", "model"}


def test_overrides_are_typed_and_validated() -> None:
    assert parse_override("train.lr=0.01") == ("train.lr", 0.01)
    assert parse_override("train__epochs=3") == ("train.epochs", 3)
    assert parse_override("train.lr=1") == ("train.lr", 1.0)
    assert parse_override("data.wlasl.subset=null") == ("data.wlasl.subset", None)
    assert parse_override("train.grad_clip=0.5") == ("train.grad_clip", 0.5)
    assert parse_override("evaluate.splits=[test]") == ("evaluate.splits", ["test"])
    with pytest.raises(ParamsError, match="train.lrr: unknown parameter"):
        parse_override("train.lrr=1")
    with pytest.raises(ParamsError, match="whole section"):
        parse_override("train.augment=1")
    with pytest.raises(ParamsError, match="expected key.path=value"):
        parse_override("train.lr")
    key, value = parse_override("data.wlasl.subset=0")
    with pytest.raises(ParamsError, match="data.wlasl.subset"):
        with_values(Params(), {key: value})


def test_runtime_confusion_matrix_and_report(tmp_path: Path) -> None:
    samples = tmp_path / "confusion.csv"
    samples.write_text("video_id,actual,predicted\nv1,book,book\nv2,book,drink\nv3,drink,drink\n", encoding="utf-8")
    assert read_confusion(samples) == (["book", "drink"], [[1, 1], [0, 1]])
    table = tmp_path / "table.csv"
    table.write_text("actual,book,drink\nbook,3,1\ndrink,0,2\n", encoding="utf-8")
    assert read_confusion(table) == (["book", "drink"], [[3, 1], [0, 2]])
    (tmp_path / "metrics.json").write_text(json.dumps({"test": {"top1": 0.5, "n": 4}, "note": "x"}), encoding="utf-8")
    (tmp_path / "per_class.csv").write_text("gloss,recall\nbook,0.5\n", encoding="utf-8")
    report = markdown_report("evaluate", tmp_path)
    assert "| test.top1 | 0.5 |" in report and "| book | 0.5 |" in report
    assert flatten_metrics({"a": {"b": 1, "c": True, "d": float("nan")}, "e": 2.5}) == {"a.b": 1.0, "e": 2.5}


def test_submit_validates_run_arguments_before_sending(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from pipelines import submit

    assert submit.build_arguments(CHECKED_IN, ["train.epochs=3", "train.lr=0.003"]) == {"train__epochs": 3}
    with pytest.raises(ParamsError, match="extract.stored_frames"):
        submit.build_arguments(CHECKED_IN, ["extract.stored_frames=2", "extract.seq_len=8"])
    with pytest.raises(ParamsError, match="monitoring.drift_window is not a parameter"):
        submit.build_arguments(CHECKED_IN, ["monitoring.drift_window=50"])
    other = tmp_path / "params.yaml"
    params = load_params(REPO / "params.yaml")
    other.write_text(
        yaml.safe_dump({**params.model_dump(mode="json"), "train": {**params.train.model_dump(mode="json"), "seed": 7}}),
        encoding="utf-8",
    )
    assert submit.build_arguments(CHECKED_IN, [], params_file=other) == {"train__seed": 7}
    common = ["--host", "http://127.0.0.1:9", "--experiment", "x", "--package", str(CHECKED_IN)]
    assert submit.main([*common, "-p", "train.epochs=3", "--no-cache", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"arguments": {"train__epochs": 3}, "enable_caching": False}
    assert submit.main([*common, "-p", "train.epochs=0"]) == 2
    assert capsys.readouterr().err.startswith("submit: error: run parameters: invalid parameters")


def _dvc(**stages: dict[str, Any]) -> dict[str, Any]:
    return {"vars": [{"paths": {"raw": "data/raw", "split": "data/split"}}], "stages": stages}


_DOWNLOAD = {"cmd": "python -m stages.download --params params.yaml --out ${paths.raw}", "outs": ["${paths.raw}"]}


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"cmd": "bash run.sh", "deps": []}, "cmd must be 'python -m stages.<name>"),
        ({"cmd": "python -m stages.split --params params.yaml --raw data/x --out ${paths.split}",
          "deps": ["${paths.raw}"], "outs": ["${paths.split}"]}, "depends on data/raw .* but its cmd does not pass it"),
        ({"cmd": "python -m stages.split --params params.yaml --index ${paths.raw}/../index.json --out ${paths.split}",
          "deps": ["data/index.json"], "outs": ["${paths.split}"]}, "cannot be passed between pipeline steps"),
        ({"cmd": "python -m stages.split --params params.yaml --raw ${paths.nope}", "deps": []}, r"\$\{paths.nope\} is not defined"),
        ({"cmd": "python -m stages.split --params other.yaml --raw ${paths.raw}", "deps": ["${paths.raw}"]}, "--params must be"),
    ],
)
def test_dvc_yaml_the_pipeline_cannot_wire_fails_at_compile_time(stage: dict[str, Any], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        stages_from_dvc(_dvc(download=_DOWNLOAD, split=stage))


def test_wiring_follows_dvc_yaml_paths() -> None:
    split = {
        "cmd": "python -m stages.split --params params.yaml --labels ${paths.raw}/index.json --out ${paths.split} "
               "--report reports/split.json --fast",
        "deps": ["${paths.raw}/index.json"], "params": ["split.seed", {"params.yaml": ["crop"]}],
        "outs": ["${paths.split}"], "metrics": ["reports/split.json"],
    }
    download, wired = stages_from_dvc(_dvc(split=split, download=_DOWNLOAD))  # dependency order, not file order
    assert download.name == "download" and wired.sections == ("split", "crop")
    assert [(a.flag, a.kind, a.artifact, a.subpath) for a in wired.args] == [
        ("--params", "params", "", ""), ("--labels", "input", "raw", "index.json"), ("--out", "output", "split", ""),
        ("--report", "output", "metrics", ""), ("--fast", "literal", "", ""),
    ]
    assert {(o.name, o.type_name) for o in wired.outputs} == {("split", "Dataset"), ("metrics", "Metrics")}
