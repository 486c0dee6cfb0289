"""The Kubeflow Pipelines (kfp v2) face of signflow: the same ``stages/`` as ``dvc repro``, wired from ``dvc.yaml``.

- :mod:`pipelines.wiring`: ``dvc.yaml`` -> which artifacts each stage reads and writes;
- :mod:`pipelines.steps`: the checked-in step functions, one kfp component per stage, each running
  the stage's ``dvc.yaml`` command;
- :mod:`pipelines.params`: ``params.yaml`` <-> pipeline parameters (one YAML text per section, typed
  run parameters);
- :mod:`pipelines.components`: a step's interface, checked against its stage; the kfp component;
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
