"""Small PromQL helpers shared by the builder and the tests (no PromQL parser needed for these)."""

from __future__ import annotations

import re

# Metric names the project owns or relies on. Recording rules use colons (signflow:...), so they
# never match these patterns: a rule's own output is not something the service must export.
_METRIC = re.compile(r"\b((?:signflow|bentoml)_[a-zA-Z0-9_]+)\b")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')  # a label value or regex: not a metric name
_GRAFANA_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def referenced_metrics(expr: str) -> set[str]:
    """Sample names (``signflow_*``, ``bentoml_*``) an expression reads, e.g. ``x_bucket``, ``x_total``."""
    return set(_METRIC.findall(_STRING.sub('""', expr)))


def substitute_variables(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables (``$job``, ``${job}``, ``$__rate_interval``) the way Grafana would.

    An unknown variable raises ``KeyError``: a panel querying a variable the dashboard does not
    define would show nothing in Grafana either.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _GRAFANA_VAR.sub(replace, expr)
