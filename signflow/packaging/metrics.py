"""A run's metrics as packaging reads them: numbers under one flat name each.

The evaluate stage writes flat names (``test_top1``: ``<split>_<metric>``, see
:func:`signflow.evaluation.flat_metrics`). A run folder from elsewhere may nest them
(``{"test": {"top1": ...}}``), and ``dvc metrics show`` prints nested ones dotted
(``test.top1``). All three spellings name the same number, so there is one rule: flatten
nesting with ``_`` and read ``.`` as ``_``; ``package.metric`` may use any of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# The one metric a run may carry its forward latency under (ms per clip); when a tie needs it and
# no run records it, packaging measures it (signflow.packaging.latency).
LATENCY_METRIC = "latency_ms"


def flat_names(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every finite number in ``metrics`` under its flat name; a flat key wins over the same name nested."""
    nested: dict[str, float] = {}
    direct: dict[str, float] = {}
    for key, value in metrics.items():
        name = str(key).replace(".", "_")
        if isinstance(value, Mapping):
            nested.update({f"{name}_{inner}": number for inner, number in flat_names(value).items()})
        elif _is_number(value):
            direct[name] = float(value)
    return {**nested, **direct}


def metric_value(metrics: Mapping[str, Any], name: str) -> float | None:
    """The number ``name`` (``test_top1``, ``test.top1``) names in ``metrics``; None when absent or not a number."""
    return flat_names(metrics).get(name.replace(".", "_"))


def _is_number(value: Any) -> bool:
    # A bool is not a score, and NaN/inf would rank arbitrarily.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))

