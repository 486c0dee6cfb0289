"""The Kubeflow pipeline's steps: one kfp lightweight component per ``dvc.yaml`` stage, as plain Python.

Each function below is a component: kfp copies its source into the compiled YAML and runs it in
the signflow image, so it imports what it uses inside its body (nothing at module level reaches
the pod). Its body is the stage's ``dvc.yaml`` command line with artifact paths in place of the
DVC paths, run by :func:`pipelines.runtime.run_stage`, which calls the very ``stages.<name>.main``
that ``dvc repro`` runs. Change a step here, then run ``python -m pipelines.compile``.

A step's inputs, by kind (:mod:`pipelines.components` reads the signature):

- ``Input[...]``/``Output[...]``: the artifacts, one per ``dvc.yaml`` dep or out another stage
  writes or this stage writes, named and typed as :mod:`pipelines.wiring` derives them;
- ``params_<section>: str``: one ``params.yaml`` section as YAML text, for each section the stage
  lists in ``dvc.yaml`` (so kfp caching follows DVC's dependencies);
- ``<section>__<key>``: a typed run parameter, the params leaf ``<section>.<key>`` (the knobs a
  sweep changes); it is not in the section text, and its type is the schema's;
- ``nproc_per_node``, ``train_nodes``, ``pytorchjob``: cluster shape, set by the pipeline.

``tests/test_pipeline_steps.py`` holds every step to its stage: the artifacts equal the stage's
deps/outs, the command line equals the ``dvc.yaml`` cmd, the module is ``stages.<name>``, the
run parameters are params leaves of the right type.
"""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output


def download(raw: Output[Dataset], raw_index: Output[Dataset], metrics: Output[Metrics], params_data: str):
    """dvc.yaml stage download: the raw videos and index.json (synthetic, WLASL or a local folder).

    index.json goes out twice: inside ``raw`` and alone as ``raw_index``, the small artifact split and
    crop take, so only extract's pod receives the videos.
    """
    from pipelines.runtime import log_metrics, run_stage

    run_stage(
        "stages.download",
        ["--out", raw.path, "--index", raw_index.path, "--report", metrics.path],
        params={"data": params_data},
    )
    log_metrics(metrics, metrics.path)


def split(raw_index: Input[Dataset], split: Output[Dataset], metrics: Output[Metrics], params_split: str):
    """dvc.yaml stage split: train/val/test manifest and label map (from the index; no video)."""
    from pipelines.runtime import log_metrics, run_stage

    run_stage(
        "stages.split",
        ["--index", raw_index.path, "--out", split.path, "--report", metrics.path],
        params={"split": params_split},
    )
    log_metrics(metrics, metrics.path)


def crop(raw_index: Input[Dataset], split: Input[Dataset], crop: Output[Dataset], params_crop: str):
    """dvc.yaml stage crop: per-video crop and trim plans (from the probes in the index; no video)."""
    from pipelines.runtime import run_stage

    run_stage(
        "stages.crop",
        ["--index", raw_index.path, "--split", split.path, "--out", crop.path],
        params={"crop": params_crop},
    )


def extract(
    raw: Input[Dataset],
    crop: Input[Dataset],
    features: Output[Dataset],
    metrics: Output[Metrics],
    params_extract: str,
    params_crop: str,
    params_landmarks: str,
):
    """dvc.yaml stage extract: stored frames (or MediaPipe landmarks) per clip, sharded by split."""
    from pipelines.runtime import log_metrics, run_stage

    run_stage(
        "stages.extract",
        ["--raw", raw.path, "--crop", crop.path, "--out", features.path, "--report", metrics.path],
        params={"extract": params_extract, "crop": params_crop, "landmarks": params_landmarks},
    )
    log_metrics(metrics, metrics.path)


def weights(weights: Output[Artifact], params_model: str, model__arch: str):
    """dvc.yaml stage weights: the pretrained backbone file, SHA-256 checked (a record when not pretrained)."""
    from pipelines.runtime import run_stage

    run_stage(
        "stages.weights",
        ["--out", weights.path],
        params={"model": params_model},
        run_values={"model.arch": model__arch},
    )


def train(
    features: Input[Dataset],
    split: Input[Dataset],
    weights: Input[Artifact],
    model: Output[Model],
    live: Output[Artifact],
    metrics: Output[Metrics],
    params_model: str,
    params_train: str,
    model__arch: str,
    train__epochs: int,
    train__batch_size: int,
    train__lr: float,
    train__seed: int,
    nproc_per_node: int = 1,
    train_nodes: int = 1,
    pytorchjob: str = "",
):
    """dvc.yaml stage train: fit the model on the extracted clips.

    nproc_per_node > 1 runs torchrun with one DDP worker per GPU of the pod; train_nodes > 1 (compiled
    with kubeflow.pvc, which also sets pytorchjob: YAML with the image and the kubeflow section) hands
    training to a PyTorchJob. Checkpoints and the feature cache stay out of the model artifact, keyed by the
    params and ``inputs``, so a retried pod resumes.
    """
    from pipelines.runtime import log_metrics, run_stage

    run_stage(
        "stages.train",
        [
            "--features", features.path,
            "--labels", f"{split.path}/label_map.json",
            "--weights", weights.path,
            "--out", model.path,
            "--live", live.path,
            "--no-progress",
        ],
        params={"model": params_model, "train": params_train},
        run_values={
            "model.arch": model__arch,
            "train.epochs": train__epochs,
            "train.batch_size": train__batch_size,
            "train.lr": train__lr,
            "train.seed": train__seed,
        },
        inputs=[features, split, weights],
        nproc_per_node=nproc_per_node,
        train_nodes=train_nodes,
        pytorchjob=pytorchjob,
    )  # fmt: skip
    log_metrics(metrics, f"{live.path}/metrics.json")


def evaluate(
    features: Input[Dataset],
    model: Input[Model],
    split: Input[Dataset],
    evaluate: Output[Artifact],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    report: Output[Markdown],
    params_evaluate: str,
):
    """dvc.yaml stage evaluate: metrics, confusion matrix and per-class table of the trained model."""
    from pipelines.runtime import log_confusion_matrix, log_metrics, run_stage, write_report

    run_stage(
        "stages.evaluate",
        [
            "--features", features.path,
            "--model", model.path,
            "--out", evaluate.path,
            "--split-manifest", f"{split.path}/manifest.csv",
            "--no-progress",
        ],
        params={"evaluate": params_evaluate},
    )  # fmt: skip
    log_metrics(metrics, f"{evaluate.path}/metrics.json")
    log_confusion_matrix(confusion_matrix, f"{evaluate.path}/confusion.csv")
    write_report(report, "evaluate", evaluate.path)


def package(
    model: Input[Model],
    evaluate: Input[Artifact],
    package: Output[Artifact],
    bento: Output[Model],
    params_package: str,
    params_evaluate: str,
):
    """dvc.yaml stage package: the winning model into the BentoML store, exported as the bento artifact."""
    from pipelines.runtime import run_stage

    run_stage(
        "stages.package",
        [
            "--models", model.path,
            "--metrics", f"{evaluate.path}/metrics.json",
            "--drift-reference", f"{evaluate.path}/prediction_reference.json",
            "--out", package.path,
            "--export", bento.path,
        ],
        params={"package": params_package, "evaluate": params_evaluate},
    )  # fmt: skip


# Every step, in dvc.yaml order; pipelines.pipeline builds the DAG from these and dvc.yaml.
STEPS = {step.__name__: step for step in (download, split, crop, extract, weights, train, evaluate, package)}
