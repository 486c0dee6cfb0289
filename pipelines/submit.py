"""Submit the compiled signflow pipeline to a Kubeflow Pipelines endpoint.

Run::

    python -m pipelines.submit --host https://kubeflow.example.com/pipeline --token-file token \\
        --namespace team-ml --experiment signflow -p train.epochs=30 -p train.lr=0.001 \\
        [--run-name NAME] [--no-cache] [--dry-run]

``-p key=value`` overrides one params.yaml value for this run (YAML-typed, as in ``dvc exp run -S``):
a run parameter (``train.epochs``, or its name ``train__epochs``) is sent as itself, any other
leaf inside its section's text (``params_data`` for ``data.source``); ``train_gpus=4``
sets a GPU step's accelerator count, and the train step's torchrun workers); every override is
type- and range-checked with the stages' own schema *before* anything is sent, so a typo fails
here, not twenty minutes into the run. ``--params-file other.yaml`` sends every stage value of
another params file. ``--no-cache`` reruns every step (kfp caching is on by default).
Host, authentication (``--token``, ``--token-file``, ``--cookie``, ``--sa-token``, ``--no-auth``)
and namespace: :mod:`pipelines.connect`; docs/kubeflow.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipelines import PipelineError, images
from pipelines.compile import DEFAULT_OUTPUT
from pipelines.connect import ConnectError, add_arguments, check_namespace, client, resolve
from pipelines.params import (
    SEPARATOR,
    param_key,
    param_name,
    parameter_defaults,
    parse_override,
    parse_section_texts,
    section_input,
    section_of_input,
    with_values,
)
from signflow import archs
from signflow.config import KubeflowParams, ParamsError, load_params, parse_params

log = logging.getLogger("pipelines.submit")


def package_defaults(package: Path) -> dict[str, Any]:
    """The pipeline parameters a compiled package declares, with their compile-time defaults."""
    if not package.is_file():
        raise PipelineError(f"{package}: no compiled pipeline; run `python -m pipelines.compile` first")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the package is ~100 kB of YAML
    document = next(doc for doc in yaml.load_all(package.read_text(encoding="utf-8"), Loader=loader) if doc)
    inputs = document.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: spec.get("defaultValue") for name, spec in inputs.items()}


def pin_package(package: Path) -> Path:
    """A temporary copy of ``package`` whose step images carry their registry digest."""
    documents = list(yaml.safe_load_all(package.read_text(encoding="utf-8")))
    executors = documents[0].get("deploymentSpec", {}).get("executors", {})
    pinned: dict[str, str] = {}
    for executor in executors.values():
        container = executor.get("container") or {}
        image = container.get("image", "")
        if image and "@" not in image:
            if image not in pinned:
                pinned[image] = images.pin(image)
            container["image"] = pinned[image]
    for image, reference in pinned.items():
        log.info("pinned %s -> %s", image, reference)
    # A temporary copy: the checked-in package stays the tag-based one the stale-YAML test compares.
    target = Path(tempfile.mkdtemp(prefix="signflow-submit-")) / package.name
    target.write_text(yaml.safe_dump_all(documents, sort_keys=True), encoding="utf-8")
    return target


def _cluster_override(text: str, defaults: dict[str, Any]) -> tuple[str, Any] | None:
    """``train_gpus=4``, ``raw_uri=s3://...``: run parameters with no params.yaml key; None otherwise."""
    name, _, value_text = (part.strip() for part in text.partition("="))
    if SEPARATOR in name or "." in name or name not in defaults:
        return None
    if section_of_input(name) is not None:
        raise ParamsError(
            f"override {text!r}: {name} is a whole params section; set one key at a time "
            f"(-p {section_of_input(name)}.<key>=...) or send a params file (--params-file)"
        )
    if isinstance(defaults[name], str):  # raw_uri: checked as kubeflow.raw_uri is
        try:
            KubeflowParams(raw_uri=value_text)
        except ValidationError:
            raise ParamsError(
                f"override {text!r}: {name} is an object-store folder, e.g. s3://bucket/signflow/raw"
            ) from None
        return name, value_text
    try:
        value = yaml.safe_load(value_text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 64:
        raise ParamsError(f"override {text!r}: {name} is a count (GPUs, nodes), an integer from 0 to 64")
    return name, value


def build_arguments(package: Path, overrides: list[str], params_file: Path | None = None) -> dict[str, Any]:
    """The run's arguments: only values that differ from the package defaults, validated as a whole.

    A ``-p key=value`` for a run parameter sets that parameter; any other params leaf is set inside
    its section's YAML text (``params_<section>``), which is then sent whole.
    """
    defaults = package_defaults(package)
    sections = [section for name in defaults if (section := section_of_input(name)) is not None]
    run_keys = [param_key(name) for name in defaults if SEPARATOR in name]
    if params_file is not None:
        base = load_params(params_file)
    else:
        # The package's own values: its section texts with its run parameters' defaults.
        texts = {section: defaults[section_input(section)] for section in sections}
        base = with_values(
            parse_params(parse_section_texts(texts, str(package)), str(package)),
            {key: defaults[param_name(key)] for key in run_keys},
            str(package),
        )
    cluster: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for override in overrides:
        found = _cluster_override(override, defaults)
        if found is not None:
            cluster[found[0]] = found[1]
            continue
        key, value = parse_override(override)
        if key.split(".", 1)[0] not in sections:
            raise ParamsError(
                f"override {override!r}: {key} is not a parameter of {package.name} "
                "(no stage in it reads that section)"
            )
        values[key] = value
    # Validate the complete set of values the run will use, as the steps will.
    params = archs.check_params(with_values(base, values, "run parameters"))
    arguments = parameter_defaults(params, sections, [param_name(key) for key in run_keys])
    arguments.update(cluster)
    return {name: value for name, value in arguments.items() if value != defaults.get(name)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="experiment name (created when missing)")
    parser.add_argument("--package", type=Path, default=DEFAULT_OUTPUT, help="compiled pipeline YAML")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one params value for this run (repeatable), e.g. -p train.lr=0.001")
    parser.add_argument("--params-file", type=Path, default=None, help="send every value of this params.yaml")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--pipeline-root", default=None,
                        help="where artifacts go, e.g. s3://bucket/signflow or gs://... (default: the cluster's)")
    parser.add_argument("--service-account", default=None, help="Kubernetes service account of the steps")
    parser.add_argument("--no-cache", action="store_true", help="disable step caching for this run")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the arguments, send nothing")
    parser.add_argument("--pin-digest", action="store_true",
                        help="resolve the package's image tag to its registry digest before sending")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        arguments = build_arguments(args.package, args.param, args.params_file)
    except (PipelineError, ParamsError) as error:
        print(f"submit: error: {error}", file=sys.stderr)
        return 2
    package = args.package
    if args.pin_digest:
        try:
            package = pin_package(args.package)
        except PipelineError as error:
            print(f"submit: error: {error}", file=sys.stderr)
            return 2
    if args.dry_run:
        print(yaml.safe_dump({"arguments": arguments, "enable_caching": not args.no_cache}, sort_keys=True))
        return 0

    from kfp_server_api import ApiException  # the API bindings kfp installs

    try:
        connection = resolve(args)
        namespace = check_namespace(connection)
        kfp_client = client(connection, namespace)
        log.info("submitting to %s", connection.describe())
        run = kfp_client.create_run_from_pipeline_package(
            str(package),
            arguments=arguments,
            run_name=args.run_name,
            experiment_name=args.experiment,
            namespace=namespace,
            pipeline_root=args.pipeline_root,
            service_account=args.service_account,
            # None keeps the compiled per-step setting (kubeflow.caching); False turns caching off for this run.
            enable_caching=False if args.no_cache else None,
        )
    except ConnectError as error:
        print(f"submit: error: {error}", file=sys.stderr)
        return 2
    except ApiException as error:
        hint = " (check --token/--cookie/--sa-token and --namespace)" if error.status in (401, 403) else ""
        print(f"submit: error: the Pipelines API answered {error.status} {error.reason}{hint}: "
              f"{(error.body or '').strip()[:300]}", file=sys.stderr)
        return 1
    print(f"submit: run {run.run_id} in experiment {args.experiment!r}: {connection.host}/#/runs/details/{run.run_id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
