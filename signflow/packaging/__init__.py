"""Choose the winning trained model and save it to the BentoML model store (the package stage).

One module per job:

* :mod:`~signflow.packaging.candidates`: what competes (current run, run folders), ``PackagingError``
* :mod:`~signflow.packaging.experiments`: DVC experiments as candidates (``dvc.api.exp_show``)
* :mod:`~signflow.packaging.metrics`: one rule for reading a metric out of a run's metrics
* :mod:`~signflow.packaging.latency`: forward latency, recorded or measured (the tie-breaker)
* :mod:`~signflow.packaging.choice`: the selection rule and its stated reason
* :mod:`~signflow.packaging.store`: the BentoML model store (save, export)
* :mod:`~signflow.packaging.run`: the stage's work, from candidates to ``reports/package.json``
* :mod:`~signflow.packaging.table`: the ranking as text for the CLI
"""

from signflow.packaging.candidates import Candidate, PackagingError, run_folder_candidate
from signflow.packaging.choice import Choice, choose
from signflow.packaging.experiments import experiment_candidates, finished_experiments
from signflow.packaging.metrics import metric_value
from signflow.packaging.run import package
from signflow.packaging.store import export_model, save_to_store
from signflow.packaging.table import candidate_table

__all__ = [
    "Candidate",
    "Choice",
    "PackagingError",
    "candidate_table",
    "choose",
    "experiment_candidates",
    "export_model",
    "finished_experiments",
    "metric_value",
    "package",
    "run_folder_candidate",
    "save_to_store",
]
