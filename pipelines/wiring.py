"""``dvc.yaml`` -> what each pipeline step reads and writes, so the pipeline cannot drift from DVC.

Each DVC stage ``cmd`` is ``python -m stages.<module> --params params.yaml --flag PATH ...``.
For every ``--flag PATH``:

- a path another stage writes (equal to, or inside, one of that stage's ``--flag`` outputs)
  becomes an **input artifact** of this step (plus the sub-path inside it: ``label_map.json``);
- a path this stage declares (``outs``/``metrics``/``plots``, or a folder holding them) becomes an
  **output artifact**, typed by its ``vars.paths`` name (:data:`ARTIFACT_TYPES`; metrics files are
  ``Metrics``);
- ``--params`` becomes the step's rebuilt params file; values without ``${...}`` pass through.

Metrics files inside an output folder get their own ``Metrics`` output, and a ``confusion.csv``
plot gets a ``ClassificationMetrics`` output plus a Markdown ``report``. Anything the pipeline
cannot pass between pods (a dependency no stage writes, an undeclared path, a cmd of another
shape) is a :class:`PipelineError` at compile time.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines import PipelineError

log = logging.getLogger("pipelines.wiring")
# kfp artifact class per `vars.paths` name; anything else is a plain Artifact.
ARTIFACT_TYPES = {
    "raw": "Dataset",
    "raw_index": "Dataset",  # download's index.json alone: what split and crop read (not the videos)
    "split": "Dataset",
    "crop": "Dataset",
    "features": "Dataset",
    "landmarks": "Dataset",
    "model": "Model",
    "bento": "Model",  # package --export: the exported BentoML model a serving deployment imports
}
CONFUSION_FILE = "confusion.csv"
_VAR = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*\}")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_PYTHON = {"python", "python3"}


@dataclass(frozen=True)
class StageArg:
    """One ``--flag value`` of a stage command, resolved to what the step passes."""

    flag: str
    kind: Literal["params", "input", "output", "literal"]
    artifact: str = ""  # component input/output name (input, output)
    subpath: str = ""  # inside the artifact (input)
    value: str = ""  # literal text (literal)


@dataclass(frozen=True)
class StageInput:
    name: str
    producer: str  # stage name
    producer_output: str


@dataclass(frozen=True)
class StageOutput:
    name: str
    type_name: str  # Dataset | Model | Metrics | Artifact
    path: str  # the DVC path it stands for (docs, error messages)


@dataclass(frozen=True)
class DerivedOutput:
    """A typed output filled from a file inside another output once the stage has run."""

    name: str
    type_name: str  # Metrics | ClassificationMetrics | Markdown
    source: str  # output artifact holding the file
    subpath: str


@dataclass(frozen=True)
class Stage:
    name: str
    module: str
    sections: tuple[str, ...]
    args: tuple[StageArg, ...]
    inputs: tuple[StageInput, ...]
    outputs: tuple[StageOutput, ...]
    derived: tuple[DerivedOutput, ...] = field(default=())


def _resolve(text: str, variables: Mapping[str, Any], where: str) -> str:
    def lookup(match: re.Match[str]) -> str:
        node: Any = variables
        for part in match.group(1).split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise PipelineError(f"{where}: ${{{match.group(1)}}} is not defined in dvc.yaml vars")
            node = node[part]
        if isinstance(node, (Mapping, list)):
            raise PipelineError(f"{where}: ${{{match.group(1)}}} is not a single value")
        return str(node)

    return _VAR.sub(lookup, text)


def _var_name(text: str) -> str | None:
    """``${paths.raw}`` -> ``raw`` when the whole value is one ``paths`` variable."""
    match = _VAR.fullmatch(text.strip())
    if match and match.group(1).startswith("paths."):
        return match.group(1).split(".", 1)[1]
    return None


def _entries(items: Iterable[Any] | None) -> list[str]:
    """dvc.yaml list entries are ``path`` or ``{path: {options}}``."""
    paths: list[str] = []
    for item in items or []:
        if isinstance(item, str):
            paths.append(item)
        elif isinstance(item, Mapping):
            paths.extend(str(key) for key in item)
    return paths


def _norm(path: str) -> str:
    return Path(os.path.normpath(path)).as_posix()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


def _split_cmd(name: str, cmd: Any) -> tuple[str, list[tuple[str, str | None]]]:
    if not isinstance(cmd, str):
        raise PipelineError(f"dvc.yaml stage {name!r}: cmd must be one command line (got {type(cmd).__name__})")
    tokens = shlex.split(cmd)
    if len(tokens) < 3 or tokens[0] not in _PYTHON or tokens[1] != "-m" or not tokens[2].startswith("stages."):
        raise PipelineError(
            f"dvc.yaml stage {name!r}: cmd must be 'python -m stages.<name> --flag value ...' for the "
            f"pipeline to call the same entry point (got {cmd!r})"
        )
    pairs: list[tuple[str, str | None]] = []
    rest = tokens[3:]
    index = 0
    while index < len(rest):
        token = rest[index]
        if not token.startswith("--"):
            raise PipelineError(f"dvc.yaml stage {name!r}: positional argument {token!r}; use --flag value")
        if "=" in token:
            flag, value = token.split("=", 1)
            pairs.append((flag, value))
        elif index + 1 < len(rest) and not rest[index + 1].startswith("--"):
            pairs.append((token, rest[index + 1]))
            index += 1
        else:
            pairs.append((token, None))
        index += 1
    return tokens[2], pairs


def _sections(name: str, entries: Any) -> tuple[str, ...]:
    sections: list[str] = []
    for entry in entries or []:
        keys = [entry] if isinstance(entry, str) else []
        if isinstance(entry, Mapping):  # {params.yaml: [keys]}: only the default params file is supported
            for file_name, file_keys in entry.items():
                if file_name != "params.yaml":
                    raise PipelineError(f"dvc.yaml stage {name!r}: params file {file_name!r} is not params.yaml")
                keys.extend(file_keys or [])
        for key in keys:
            section = str(key).split(".", 1)[0]
            if section not in sections:
                sections.append(section)
    return tuple(sections)


def _flag_path(raw: str | None, variables: Mapping[str, Any], declared: list[str], where: str) -> str | None:
    """The path a flag value stands for, or None for a plain option value (``--device cpu``).

    A value is a path when it uses ``${...}`` or names (or contains, or lies inside) a path the
    stage declares in deps/outs/metrics/plots.
    """
    if raw is None:
        return None
    if "${" in raw:
        return _norm(_resolve(raw, variables, where))
    path = _norm(raw)
    return path if any(_inside(path, item) or _inside(item, path) for item in declared) else None


def _output_name(raw_value: str, path: str, is_metrics: bool) -> str:
    var = _var_name(raw_value)
    name = var if var else ("metrics" if is_metrics else Path(path).stem)
    name = re.sub(r"\W", "_", name).lower()
    return name


def load_dvc(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: dvc.yaml not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data.get("stages"), Mapping) or not data["stages"]:
        raise PipelineError(f"{path}: no stages")
    return data


def _variables(dvc: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    for entry in dvc.get("vars") or []:
        if not isinstance(entry, Mapping):
            raise PipelineError(f"dvc.yaml vars: only inline mappings are supported (got {entry!r})")
        variables.update(entry)
    return variables


def stages_from_dvc(dvc: Mapping[str, Any]) -> list[Stage]:
    """Every DVC stage as pipeline wiring, in dependency order."""
    variables = _variables(dvc)
    parsed: dict[str, dict[str, Any]] = {}
    for name, spec in dvc["stages"].items():
        where = f"dvc.yaml stage {name!r}"
        if not _IDENTIFIER.match(name):
            raise PipelineError(f"{where}: the name must be a Python identifier to become a pipeline step")
        if not isinstance(spec, Mapping) or "foreach" in spec or "matrix" in spec:
            raise PipelineError(f"{where}: foreach/matrix stages are not supported by the pipeline")
        module, pairs = _split_cmd(name, spec.get("cmd"))
        declared = {
            kind: [_norm(_resolve(entry, variables, where)) for entry in _entries(spec.get(kind))]
            for kind in ("deps", "outs", "metrics", "plots")
        }
        declared_paths = [path for paths in declared.values() for path in paths]
        flags = [(flag, raw, _flag_path(raw, variables, declared_paths, where)) for flag, raw in pairs]
        parsed[name] = {"module": module, "flags": flags, "declared": declared, "spec": spec}

    # Pass 1: the paths each stage writes (its output flags).
    produced: dict[str, list[tuple[str, str]]] = {}  # stage -> [(path, output name)]
    stages_out: dict[str, list[StageOutput]] = {}
    for name, info in parsed.items():
        declared = info["declared"]
        writes = declared["outs"] + declared["metrics"] + declared["plots"]
        produced[name], stages_out[name] = [], []
        for flag, raw, path in info["flags"]:
            if path is None or flag == "--params":
                continue
            is_output = any(_inside(path, out) or _inside(out, path) for out in writes)
            if not is_output:
                continue
            is_metrics = path in declared["metrics"]
            out_name = _output_name(raw, path, is_metrics)
            if any(existing.name == out_name for existing in stages_out[name]):
                raise PipelineError(f"dvc.yaml stage {name!r}: two outputs would both be named {out_name!r}")
            var = _var_name(raw)
            type_name = "Metrics" if is_metrics else ARTIFACT_TYPES.get(var or "", "Artifact")
            stages_out[name].append(StageOutput(out_name, type_name, path))
            produced[name].append((path, out_name))

    # Pass 2: inputs, args, derived outputs.
    stages: dict[str, Stage] = {}
    for name, info in parsed.items():
        where = f"dvc.yaml stage {name!r}"
        declared = info["declared"]
        own = dict(produced[name])
        args: list[StageArg] = []
        inputs: list[StageInput] = []
        for flag, raw, path in info["flags"]:
            if flag == "--params":
                if raw != "params.yaml":
                    raise PipelineError(f"{where}: --params must be params.yaml (got {raw!r})")
                args.append(StageArg(flag, "params"))
            elif path is None:
                args.append(StageArg(flag, "literal", value="" if raw is None else raw))
            elif path in own:
                args.append(StageArg(flag, "output", artifact=own[path]))
            else:
                found = [
                    (producer, out_path, out_name)
                    for producer, outs in produced.items()
                    if producer != name
                    for out_path, out_name in outs
                    if _inside(path, out_path)
                ]
                if not found:
                    declared_dep = any(_inside(path, dep) or _inside(dep, path) for dep in declared["deps"])
                    reason = "no stage writes it" if declared_dep else "it is not declared in deps or outs"
                    raise PipelineError(
                        f"{where}: {flag} {raw} cannot be passed between pipeline steps: {reason} "
                        "(give it as a param, e.g. a URL or a path on the mounted PVC)"
                    )
                producer, out_path, out_name = max(found, key=lambda item: len(item[1]))
                input_name = out_name if out_name not in own.values() else f"{producer}_{out_name}"
                if not any(existing.name == input_name for existing in inputs):
                    inputs.append(StageInput(input_name, producer, out_name))
                subpath = path[len(out_path) + 1 :] if path != out_path else ""
                args.append(StageArg(flag, "input", artifact=input_name, subpath=subpath))
        # A dependency on another stage's output that the command never receives would silently
        # read a missing path in the pod: refuse it.
        for dep in declared["deps"]:
            for producer, outs in produced.items():
                for out_path, _ in outs:
                    if producer != name and _inside(dep, out_path):
                        passed = any(_inside(dep, f[2]) or _inside(f[2], dep) for f in info["flags"] if f[2])
                        if not passed:
                            raise PipelineError(
                                f"{where}: depends on {dep} (written by {producer!r}) but its cmd does not pass it"
                            )
        derived = _derived_outputs(name, declared, stages_out[name])
        kept = [output.path for output in stages_out[name]]
        for path in declared["outs"] + declared["metrics"] + declared["plots"]:
            if not any(_inside(path, folder) for folder in kept):
                # The stage writes it at a fixed path inside the pod: nothing keeps it after the step.
                log.warning("dvc.yaml stage %r: %s is not under any --flag path; the pipeline step drops it", name, path)
        names = [i.name for i in inputs] + [o.name for o in stages_out[name]] + [d.name for d in derived]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PipelineError(f"{where}: artifact names collide: {', '.join(duplicates)}")
        stages[name] = Stage(
            name=name,
            module=info["module"],
            sections=_sections(name, info["spec"].get("params")),
            args=tuple(args),
            inputs=tuple(inputs),
            outputs=tuple(stages_out[name]),
            derived=derived,
        )
    return _topological(stages)


def _derived_outputs(name: str, declared: Mapping[str, list[str]], outputs: list[StageOutput]) -> tuple[DerivedOutput, ...]:
    folders = [output for output in outputs if output.type_name != "Metrics"]
    derived: list[DerivedOutput] = []
    metrics_inside = [
        (path, folder) for path in declared["metrics"] for folder in folders if path != folder.path and _inside(path, folder.path)
    ]
    for path, folder in metrics_inside:
        out_name = "metrics" if len(metrics_inside) == 1 else f"{Path(path).stem}_metrics"
        derived.append(DerivedOutput(out_name, "Metrics", folder.name, path[len(folder.path) + 1 :]))
    for path in declared["plots"]:
        if Path(path).name != CONFUSION_FILE:
            continue
        folder = next((f for f in folders if path != f.path and _inside(path, f.path)), None)
        if folder is None:
            raise PipelineError(f"dvc.yaml stage {name!r}: plot {path} is not inside an output folder the cmd writes")
        subpath = path[len(folder.path) + 1 :]
        derived.append(DerivedOutput("confusion_matrix", "ClassificationMetrics", folder.name, subpath))
        derived.append(DerivedOutput("report", "Markdown", folder.name, str(Path(subpath).parent)))
    return tuple(derived)


def _topological(stages: dict[str, Stage]) -> list[Stage]:
    ordered: list[Stage] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise PipelineError(f"dvc.yaml: stages form a cycle through {name!r}")
        visiting.add(name)
        for item in stages[name].inputs:
            visit(item.producer)
        visiting.discard(name)
        done.add(name)
        ordered.append(stages[name])

    for name in stages:
        visit(name)
    return ordered


def select(stages: list[Stage], names: Iterable[str] | None) -> list[Stage]:
    """The stages named (all when None), refusing unknown names and missing upstream stages."""
    if names is None:
        return stages
    wanted = [name.strip() for name in names if name.strip()]
    known = {stage.name for stage in stages}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise PipelineError(f"unknown stage {', '.join(map(repr, unknown))} (dvc.yaml stages: {', '.join(known)})")
    chosen = [stage for stage in stages if stage.name in wanted]
    for stage in chosen:
        for item in stage.inputs:
            if item.producer not in wanted:
                raise PipelineError(
                    f"stage {stage.name!r} needs {item.name!r} from {item.producer!r}; add {item.producer!r} to --stages"
                )
    return chosen
