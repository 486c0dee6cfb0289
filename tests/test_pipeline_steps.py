"""The checked-in step functions (``pipelines/steps.py``) against ``dvc.yaml`` and the params schema.

One step per stage, with the stage's artifacts; called with artifacts whose paths are the DVC
paths, each runs exactly the ``dvc.yaml`` command (same ``stages.<name>`` module, same flags)
with its params sections and run parameters; every run parameter is a params leaf whose type is
the schema's, typed exactly in the compiled IR. Plus the compile-time refusals of a drifted step
and the params file a step writes.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import dsl

from pipelines import PipelineError, steps
from pipelines import compile as compile_cli
from pipelines.components import check_step, interface
from pipelines.params import param_key, run_parameter_kind, stage_params_text
from pipelines.wiring import Stage, load_dvc, stages_from_dvc
from signflow.config import ParamsError, load_params

REPO = Path(__file__).resolve().parents[1]
ARTIFACT_CLASSES = {
    "Artifact": dsl.Artifact, "Dataset": dsl.Dataset, "Model": dsl.Model, "Metrics": dsl.Metrics,
    "ClassificationMetrics": dsl.ClassificationMetrics, "Markdown": dsl.Markdown,
}  # fmt: skip
IR_TYPES = {int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", str: "STRING", bool: "BOOLEAN"}
SAMPLE_VALUES = {int: 7, float: 0.25, str: "sample", bool: True}


@pytest.fixture(scope="module")
def dvc() -> dict[str, Any]:
    return load_dvc(REPO / "dvc.yaml")


@pytest.fixture(scope="module")
def stages(dvc: dict[str, Any]) -> dict[str, Stage]:
    return {stage.name: stage for stage in stages_from_dvc(dvc)}


def _producer_types(stages: dict[str, Stage]) -> dict[tuple[str, str], str]:
    return {(stage.name, output.name): output.type_name for stage in stages.values() for output in stage.outputs}


def _dvc_command(dvc: dict[str, Any], name: str) -> list[str]:
    """The stage's cmd with ``${paths.x}`` resolved, as ``dvc repro`` runs it."""
    paths = next(entry["paths"] for entry in dvc["vars"] if "paths" in entry)
    text = re.sub(r"\$\{\s*paths\.(\w+)\s*\}", lambda match: paths[match.group(1)], dvc["stages"][name]["cmd"])
    return shlex.split(text)


def test_one_step_per_stage_with_the_stage_artifacts(stages: dict[str, Stage]) -> None:
    assert set(steps.STEPS) == set(stages)
    producer_types = _producer_types(stages)
    for name, stage in stages.items():
        step = interface(steps.STEPS[name])
        check_step(step, stage, producer_types)  # raises on any difference
        assert set(step.inputs) == {item.name for item in stage.inputs}, name
        assert set(step.outputs) == {o.name for o in stage.outputs} | {d.name for d in stage.derived}, name
        assert sorted(step.sections) == sorted(stage.sections), name


def test_each_step_runs_its_dvc_command(
    dvc: dict[str, Any], stages: dict[str, Stage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Called with artifacts at the DVC paths, a step hands ``run_stage`` the dvc.yaml command itself."""
    from pipelines import runtime

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runtime, "run_stage", lambda module, argv, **kwargs: calls.append(
        {"module": module, "argv": list(argv), **kwargs}))  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the stage does not run: no reports for the log_* helpers to find
    paths = {(stage.name, output.name): output.path for stage in stages.values() for output in stage.outputs}
    for name, stage in stages.items():
        step = interface(steps.STEPS[name])
        arguments: dict[str, Any] = {}
        for item in stage.inputs:
            arguments[item.name] = ARTIFACT_CLASSES[step.inputs[item.name]](
                name=item.name, uri=paths[(item.producer, item.producer_output)], metadata={})
        for output_name, type_name in step.outputs.items():
            uri = paths.get((name, output_name), str(tmp_path / name / output_name))  # derived: a fresh file
            arguments[output_name] = ARTIFACT_CLASSES[type_name](name=output_name, uri=uri, metadata={})
        arguments.update({f"params_{section}": f"<{section} YAML>" for section in step.sections})
        arguments.update({run: SAMPLE_VALUES[kind] for run, kind in step.run_parameters.items()})
        steps.STEPS[name](**arguments)
        call = calls.pop()
        python, dash_m, module, *expected = _dvc_command(dvc, name)
        assert (python, dash_m) == ("python", "-m") and call["module"] == module == stage.module, name
        params_at = expected.index("--params")
        assert expected[params_at + 1] == "params.yaml"
        del expected[params_at : params_at + 2]  # run_stage puts the step's own params file there
        assert call["argv"] == expected, name
        assert call["params"] == {section: f"<{section} YAML>" for section in stage.sections}, name
        assert call.get("run_values", {}) == {
            param_key(run): SAMPLE_VALUES[kind] for run, kind in step.run_parameters.items()}, name  # fmt: skip


def test_run_parameters_are_params_leaves_typed_exactly_in_the_ir(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml")
    pipeline = yaml.safe_load_all((REPO / "pipelines" / "signflow_pipeline.yaml").read_text(encoding="utf-8"))
    spec = next(doc for doc in pipeline if doc)
    root = spec["root"]["inputDefinitions"]["parameters"]
    seen = 0
    for name, function in steps.STEPS.items():
        component = spec["components"][f"comp-{name}"]["inputDefinitions"]["parameters"]
        for run, kind in interface(function).run_parameters.items():
            seen += 1
            assert run_parameter_kind(run, kind)  # a params leaf of this very type
            assert component[run]["parameterType"] == root[run]["parameterType"] == IR_TYPES[kind], run
            assert "isOptional" not in component[run], f"{run}: a run parameter always has a value"
            value = params.model_dump(mode="json")
            for part in param_key(run).split("."):
                value = value[part]
            assert root[run]["defaultValue"] == value and type(root[run]["defaultValue"]) is kind, run
    assert seen >= 5
    # No parameter anywhere holds the string 'null' any more, and every section text is a YAML mapping.
    for name, definition in root.items():
        assert definition.get("defaultValue") != "null", name
        if name.startswith("params_"):
            assert isinstance(yaml.safe_load(definition["defaultValue"]), dict), name


@pytest.mark.parametrize(
    ("name", "annotation", "message"),
    [
        ("train__epochs", float, "train.epochs is int, but the step declares float"),
        ("train__backbone_lr", float, "optional value; leave it in the section text params_train"),
        ("evaluate__splits", list, "a list; leave it in the section text params_evaluate"),
        ("train__lrr", float, "train.lrr: unknown parameter"),
        ("train__augment", str, "whole section"),
    ],
)
def test_a_run_parameter_must_match_the_schema(name: str, annotation: type, message: str) -> None:
    with pytest.raises(ParamsError, match=re.escape(message)):
        run_parameter_kind(name, annotation)


def test_a_step_that_drifted_from_dvc_yaml_fails_the_compile(stages: dict[str, Stage]) -> None:
    producer_types = _producer_types(stages)

    def split(raw_index: dsl.Input[dsl.Dataset], manifest: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics],
              params_split: str) -> None:  # fmt: skip
        """Its output renamed: dvc.yaml calls it split."""

    with pytest.raises(PipelineError, match=r"artifact outputs \(manifest: Dataset, metrics: Metrics\) differ"):
        check_step(interface(split), stages["split"], producer_types)

    def crop(raw_index: dsl.Input[dsl.Dataset], split: dsl.Input[dsl.Dataset], crop: dsl.Output[dsl.Dataset],
             params_crop: str, params_extract: str) -> None:  # fmt: skip
        """A section dvc.yaml does not give crop."""

    with pytest.raises(PipelineError, match="params sections crop, extract differ"):
        check_step(interface(crop), stages["crop"], producer_types)

    def weights(weights: dsl.Output[dsl.Artifact], params_model: str, model__arch: str, train__epochs: int) -> None:
        """A run parameter of a section the stage does not read."""

    with pytest.raises(PipelineError, match="run parameter train__epochs is not in a section"):
        check_step(interface(weights), stages["weights"], producer_types)

    def download(raw: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics], params_data: str, gpus: int) -> None:
        """An input of no known kind."""

    with pytest.raises(PipelineError, match="input 'gpus' is none of"):
        interface(download)


def test_the_step_params_file_applies_run_parameters_once() -> None:
    texts = {"train": "epochs: 3\nlr: 0.1\n", "model": "arch: r3d_18\n"}
    with pytest.raises(ParamsError, match="train.epochs is the run parameter train__epochs; remove it from params_train"):
        stage_params_text(texts, {"train.epochs": 5})
    written = yaml.safe_load(stage_params_text({"train": "grad_clip: 0.5\nbackbone_lr: null\n", "model": ""},
                                               {"train.epochs": 5, "train.lr": 1e-05, "model.arch": "r3d_18"}))
    assert written["train"]["epochs"] == 5 and written["train"]["lr"] == 1e-05 and written["model"]["arch"] == "r3d_18"
    assert written["train"]["backbone_lr"] is None and written["train"]["grad_clip"] == 0.5
    with pytest.raises(ParamsError, match="params_train must be a mapping"):
        stage_params_text({"train": "- 1\n"}, {})
    with pytest.raises(ParamsError, match="train.epochs"):
        stage_params_text({"train": ""}, {"train.epochs": 0})


def test_a_claim_gives_the_train_step_nodes_and_its_pytorchjob(tmp_path: Path) -> None:
    out = compile_cli.compile_pipeline(tmp_path / "p.yaml", params_path=REPO / "params.yaml",
                                       dvc_path=REPO / "dvc.yaml", image="registry.example/signflow:1.2.3",
                                       overrides=["kubeflow.pvc=signflow-data"])  # fmt: skip
    spec = next(doc for doc in yaml.safe_load_all(out.read_text(encoding="utf-8")) if doc)
    train_inputs = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]
    assert train_inputs["train_nodes"]["componentInputParameter"] == "train_nodes"
    job = yaml.safe_load(train_inputs["pytorchjob"]["runtimeValue"]["constant"])
    assert job["image"] == "registry.example/signflow:1.2.3" and job["kubeflow"]["pvc"] == "signflow-data"
    assert spec["root"]["inputDefinitions"]["parameters"]["train_nodes"]["defaultValue"] == 1
