"""The Kubeflow Pipelines (kfp v2) face of signflow: the same ``stages/`` as ``dvc repro``, wired from ``dvc.yaml``.

- :mod:`pipelines.wiring`: ``dvc.yaml`` -> which artifacts each stage reads and writes;
- :mod:`pipelines.params`: ``params.yaml`` <-> typed pipeline parameters (one per leaf key);
- :mod:`pipelines.components`: one lightweight component per stage, calling the stage's ``main``;
- :mod:`pipelines.runtime`: what runs inside the step's container;
- :mod:`pipelines.pipeline`: the DAG, resources, GPUs, scheduling;
- :mod:`pipelines.compile` / :mod:`pipelines.submit`: the command lines;
- :mod:`pipelines.connect`: host, authentication and namespace for submit;
- :mod:`pipelines.images`: image tag -> registry digest (``--pin-digest``);
- :mod:`pipelines.trainjob` / :mod:`pipelines.sweep` / :mod:`pipelines.manifests`: multi-node
  PyTorchJob and Katib Experiment manifests; :mod:`pipelines.trial`: one Katib trial.
"""


class PipelineError(ValueError):
    """The pipeline cannot be built from dvc.yaml/params.yaml as they are; says what to change."""
