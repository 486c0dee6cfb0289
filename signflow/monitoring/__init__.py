"""Monitoring as code: Prometheus rules, their unit tests and Grafana dashboards, built from params.

``python -m signflow.monitoring.build`` writes the generated files under ``monitoring/``
(thresholds come from ``params.yaml`` ``monitoring:``); ``--check`` fails when they are stale.

* :mod:`signflow.monitoring.rules`: recording rules, alert rules, promtool tests for the alerts.
* :mod:`signflow.monitoring.dashboards`: the Grafana dashboard JSON.
* :mod:`signflow.monitoring.promql`: metric names in an expression, Grafana variable substitution.
"""
