"""The Grafana dashboard for the served model, built as plain JSON from Python.

Why a builder instead of a hand-exported JSON: thresholds (SLO, PSI, low-confidence share) come
from ``params.yaml``, every panel is declared in one readable list, and the tests can walk the
same structure to run every query against a real Prometheus. Grafana's own JSON model is used
directly (no grafanalib dependency); the data source is the ``${datasource}`` variable, so the
dashboard works on any Grafana whatever the Prometheus data source's uid.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from signflow.config import MonitoringParams
from signflow.monitoring.rules import api_selector

DASHBOARD_UID = "signflow-serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job="$job"'
API = api_selector(JOB)
RATE = "[$__rate_interval]"


@dataclass
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"


@dataclass
class Panel:
    title: str
    description: str
    targets: list[Target]
    kind: str = "timeseries"
    unit: str = "short"
    width: int = 12
    height: int = 8
    threshold: float | None = None  # drawn as a red line / red colour from this value up
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)


def _quantiles(metric: str, selector: str, by: str, legend_prefix: str, qs: tuple[float, ...]) -> list[Target]:
    by_le = ", ".join([*filter(None, [by]), "le"])
    return [
        Target(
            f"histogram_quantile({q}, sum by ({by_le}) (rate({metric}_bucket{{{selector}}}{RATE})))",
            f"{legend_prefix}p{round(q * 100)}",
        )
        for q in qs
    ]


def panels(mp: MonitoringParams) -> list[Panel]:
    """Every panel of the dashboard, in display order (rows of two 12-wide panels)."""
    top = mp.dashboard_top_glosses
    return [
        Panel(
            "Request rate by endpoint",
            "API requests per second (health probes and metric scrapes excluded).",
            [Target(f"sum by (endpoint) (rate(bentoml_service_request_total{{{API}}}{RATE}))", "{{endpoint}}")],
            unit="reqps",
        ),
        Panel(
            "Error ratio by status code",
            "Share of API requests answered with a non-2xx status: 4xx = rejected input, 5xx = server errors.",
            [
                Target(
                    "sum by (http_response_code) "
                    f'(rate(bentoml_service_request_total{{{API}, http_response_code!~"2.."}}{RATE}))'
                    f" / scalar(sum(rate(bentoml_service_request_total{{{API}}}{RATE})))",
                    "HTTP {{http_response_code}}",
                )
            ],
            unit="percentunit",
            threshold=mp.error_rate_threshold,
        ),
        Panel(
            "Rejected requests by reason",
            "Uploads refused before the model ran (not a video, too long, too large, ...), per second.",
            [Target(f"sum by (reason) (rate(signflow_rejected_requests_total{{{JOB}}}{RATE}))", "{{reason}}")],
            unit="reqps",
        ),
        Panel(
            "In-flight requests",
            "Requests being processed right now; a steady climb means the service cannot keep up.",
            [Target(f"sum by (endpoint) (bentoml_service_request_in_progress{{{API}}})", "{{endpoint}}")],
        ),
        Panel(
            "Request latency p50 / p95 / p99",
            "End-to-end API latency; the red line is the p95 SLO "
            f"({mp.latency_slo_p95_s:g} s, params monitoring.latency_slo_p95_s).",
            _quantiles("bentoml_service_request_duration_seconds", API, "", "", (0.5, 0.95, 0.99)),
            unit="s",
            threshold=mp.latency_slo_p95_s,
        ),
        Panel(
            "Latency by stage (decode / preprocess / model)",
            "Where the time goes: video decoding, frame preprocessing, the model forward pass.",
            _quantiles("signflow_stage_latency_seconds", JOB, "stage", "{{stage}} ", (0.5, 0.95, 0.99)),
            unit="s",
        ),
        Panel(
            "Adaptive batch size",
            "Clips per model call chosen by BentoML's adaptive batching (mean and p95).",
            [
                Target(
                    f"sum(rate(bentoml_service_adaptive_batch_size_sum{{{JOB}}}{RATE}))"
                    f" / sum(rate(bentoml_service_adaptive_batch_size_count{{{JOB}}}{RATE}))",
                    "mean",
                ),
                *_quantiles("bentoml_service_adaptive_batch_size", JOB, "", "", (0.95,)),
            ],
        ),
        Panel(
            "Input clips: frames and duration (p50 / p95)",
            "What clients send; a shift here explains shifts in latency and confidence.",
            [
                *_quantiles("signflow_input_frames", JOB, "", "frames ", (0.5, 0.95)),
                *_quantiles("signflow_input_duration_seconds", JOB, "", "seconds ", (0.5, 0.95)),
            ],
            # Two units in one panel: durations on a right-hand axis in seconds.
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "^seconds "},
                    "properties": [{"id": "unit", "value": "s"}, {"id": "custom.axisPlacement", "value": "right"}],
                }
            ],
        ),
        Panel(
            f"Predictions per gloss (top {top})",
            "Most frequently predicted glosses over the dashboard's time range.",
            [
                Target(
                    f"topk({top}, sum by (gloss) (increase(signflow_predictions_total{{{JOB}}}[$__range])))",
                    "{{gloss}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
        ),
        Panel(
            "Top-1 confidence distribution",
            "Histogram of the winning class probability over time (brighter = more predictions).",
            [
                Target(
                    f"sum by (le) (increase(signflow_top1_confidence_bucket{{{JOB}}}{RATE}))",
                    "{{le}}",
                    format="heatmap",
                )
            ],
            kind="heatmap",
            options={
                "calculate": False,
                "yAxis": {"unit": "percentunit"},
                "color": {"mode": "scheme", "scheme": "Oranges"},
                "cellGap": 1,
            },
        ),
        Panel(
            "Low-confidence share",
            "Share of predictions under serve.low_confidence; the red line is the alert threshold.",
            [
                Target(
                    f"sum(rate(signflow_low_confidence_total{{{JOB}}}{RATE}))"
                    f" / sum(rate(signflow_predictions_total{{{JOB}}}{RATE}))",
                    "low-confidence",
                )
            ],
            unit="percentunit",
            threshold=mp.low_confidence_rate_threshold,
        ),
        Panel(
            "Prediction drift (PSI)",
            "Population stability index of recent predictions vs evaluation time (max of class and confidence"
            f" PSI, window {mp.drift_window}); red line = alert threshold.",
            [Target(f"max by (instance) (signflow_prediction_drift_psi{{{JOB}}})", "{{instance}}")],
            threshold=mp.drift_psi_threshold,
        ),
        Panel(
            "Service health",
            "Scrape targets up and replicas with a loaded model.",
            [
                Target(f"sum(up{{{JOB}}})", "targets up", instant=True),
                Target(f"sum(signflow_model_ready{{{JOB}}})", "model ready", instant=True),
            ],
            kind="stat",
            width=8,
            options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        ),
        Panel(
            "Model",
            "The served model: BentoML tag, architecture and its evaluation metric.",
            [Target(f"signflow_model_info{{{JOB}}}", instant=True, format="table")],
            kind="table",
            width=16,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True},
                        "indexByName": {"model_tag": 0, "arch": 1, "metric": 2, "metric_value": 3, "instance": 4},
                    },
                }
            ],
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    field_config: dict[str, Any] = {"defaults": {"unit": panel.unit}, "overrides": panel.overrides}
    if panel.threshold is not None:
        field_config["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": "green", "value": None}, {"color": "red", "value": panel.threshold}],
        }
        if panel.kind == "timeseries":
            field_config["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
    targets = []
    for index, target in enumerate(panel.targets):
        targets.append(
            {
                "refId": chr(ord("A") + index),
                "datasource": DATASOURCE,
                "expr": target.expr,
                "legendFormat": target.legend,
                "instant": target.instant,
                "range": not target.instant,
                "format": target.format,
            }
        )
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": field_config,
        "options": panel.options,
        "targets": targets,
    }
    if panel.transformations:
        result["transformations"] = panel.transformations
    return result


def build_dashboard(mp: MonitoringParams) -> dict[str, Any]:
    """The dashboard JSON model (Grafana 10+)."""
    out = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels(mp), start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": DASHBOARD_UID,
        "title": "signflow: serving",
        "description": "Generated by `python -m signflow.monitoring.build` from params.yaml; edit the builder.",
        "tags": ["signflow", "bentoml", "sign-language"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "annotations": {"list": []},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "includeAll": False,
                    "multi": False,
                },
                {
                    "name": "job",
                    "label": "Job",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": "label_values(signflow_model_ready, job)", "refId": "job"},
                    "definition": "label_values(signflow_model_ready, job)",
                    "current": {"text": "signflow", "value": "signflow"},
                    "refresh": 2,
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "sort": 1,
                },
            ]
        },
        "panels": out,
    }


def iter_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(panel title, refId, target)`` for every query of every panel, rows included."""
    stack = list(dashboard.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack[:0] = panel.get("panels", [])  # collapsed rows hold their panels inside
        for target in panel.get("targets", []):
            yield panel.get("title", f"panel {panel.get('id')}"), target.get("refId", "?"), target
