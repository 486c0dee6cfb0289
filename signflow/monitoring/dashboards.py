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
from signflow.monitoring.rules import BURN_WINDOWS, FAILED_CODES, MODEL_SERVICE, api_selector, endpoint_path

DASHBOARD_UID = "signflow-serving"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
JOB = 'job="$job", instance=~"$instance"'
API = api_selector(JOB)
RATE = "[$__rate_interval]"
# Panel kinds that show Grafana's own data (alert states), not queries.
NO_QUERY_KINDS = ("alertlist", "text", "row")
# Joins a per-instance series to the model it serves: `<expr> * on (job, instance) group_left(model_tag) MODEL`.
FAILED = f', http_response_code=~"{FAILED_CODES}"'
CLIENT_ERRORS = ', http_response_code=~"4..", http_response_code!="429"'
MODEL = f"max by (job, instance, model_tag) (signflow_model_info{{{JOB}}})"


def red_from(value: float) -> list[tuple[str, float | None]]:
    return [("green", None), ("red", value)]


def red_below(value: float) -> list[tuple[str, float | None]]:
    return [("red", None), ("green", value)]


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
    # Colour steps [(colour, from value)]; on a time series the non-base steps are drawn as lines.
    thresholds: list[tuple[str, float | None]] | None = None
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


def _requests(extra: str = "", window: str = RATE) -> str:
    return f"rate(bentoml_service_request_total{{{API}{extra}}}{window})"


def slo_panels(mp: MonitoringParams) -> list[Panel]:
    """Error-budget burn and budget left, per endpoint with an SLO (params monitoring.slos)."""
    # One query per SLI for all endpoints: each ratio divided by its endpoint's budget series
    # (recording rules signflow:slo_*:budget), so endpoints without traffic simply have no line.
    per_budget = "/ on (endpoint) group_left signflow:slo_{sli}:budget"
    burn = [
        Target(f'signflow:slo_errors:ratio_rate1h{{job="$job"}} {per_budget.format(sli="errors")}', "{{endpoint}} errors"),
        Target(f'signflow:slo_slow:ratio_rate1h{{job="$job"}} {per_budget.format(sli="slow")}', "{{endpoint}} latency"),
    ]
    total = f"sum by (endpoint) (increase(bentoml_service_request_total{{{API}}}[$__range]))"
    # No failure yet means no failed series: count it as 0, not as no data.
    failed = (f'sum by (endpoint) (increase(bentoml_service_request_total{{{API}, http_response_code=~"{FAILED_CODES}"}}'
              f"[$__range])) or {total} * 0")  # fmt: skip
    budget_left = [Target(f"1 - (({failed}) / {total}) {per_budget.format(sli='errors')}", "{{endpoint}}", instant=True)]
    fast, slow = BURN_WINDOWS
    return [
        Panel(
            "SLO: error-budget burn rate (1h) by endpoint",
            f"How many times faster than the SLO allows each endpoint spends its budget (1 = exactly on budget over "
            f"{mp.slo_window_days} days). Alerts need the short window too: {slow.factor:g}x over {slow.long} and "
            f"{slow.short} ({slow.severity}), {fast.factor:g}x over {fast.long} and {fast.short} ({fast.severity}).",
            burn,
            thresholds=[("green", None), ("orange", slow.factor), ("red", fast.factor)],
        ),
        Panel(
            "SLO: availability budget left over the time range",
            "Share of each endpoint's availability error budget (failed = 5xx or 429) not spent in the selected "
            "time range; set the range to the SLO period for the budget left this period. Below 0 = SLO missed.",
            budget_left,
            kind="stat",
            unit="percentunit",
            thresholds=[("red", None), ("orange", 0.0), ("green", 0.25)],
            options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        ),
    ]


def panels(mp: MonitoringParams) -> list[Panel]:
    """Every panel of the dashboard, in display order (rows of up to 24 columns)."""
    top = mp.dashboard_top_glosses
    return [
        Panel(
            "Service health",
            "Scrape targets up, replicas with a loaded and warmed-up model, and samples per scrape (0 = /metrics "
            "answers empty: the service is blind, see SignflowMetricsMissing). Red = none.",
            [
                Target(f"sum(up{{{JOB}}})", "targets up", instant=True),
                Target(f"sum(signflow_model_ready{{{JOB}}})", "model ready", instant=True),
                Target(f"min(scrape_samples_scraped{{{JOB}}})", "samples per scrape (min)", instant=True),
            ],
            kind="stat",
            width=8,
            thresholds=red_below(1),
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
        Panel(
            "Firing alerts",
            "signflow's alerts (rules in monitoring/rules/alerts.yml; each links to its runbook in docs/runbooks.md).",
            [],
            kind="alertlist",
            width=24,
            height=6,
            options={"alertName": "Signflow", "showOptions": "current", "maxItems": 20, "sortOrder": 3,
                     "stateFilter": {"firing": True, "pending": True, "noData": True, "error": True}},  # fmt: skip
        ),
        *slo_panels(mp),
        Panel(
            "Request rate by endpoint",
            "Prediction requests per second by endpoint and served model (health probes, scrapes, the web page and "
            "404s are not API traffic).",
            [Target(f"sum by (endpoint, model_tag) ({_requests()} * on (job, instance) group_left(model_tag) {MODEL})",
                    "{{endpoint}} ({{model_tag}})")],  # fmt: skip
            unit="reqps",
        ),
        Panel(
            "Failed requests (5xx, 429) by endpoint",
            "Share of prediction requests the service failed: server errors, overload (503), timeouts (504) and "
            "the concurrency limit (429). What the availability SLO counts; client errors (4xx) are not failures.",
            [Target(f"sum by (endpoint) ({_requests(FAILED)}) / sum by (endpoint) ({_requests()})", "{{endpoint}}")],
            unit="percentunit",
        ),
        Panel(
            "Client errors (4xx) by status",
            "Share of prediction requests refused as the client's fault (bad input, limits, auth); "
            "'Rejected requests by reason' says why. A rise is a broken client, not a broken service.",
            [Target(f"sum by (http_response_code) ({_requests(CLIENT_ERRORS)}) / scalar(sum({_requests()}))",
                    "HTTP {{http_response_code}}")],  # fmt: skip
            unit="percentunit",
            thresholds=red_from(mp.rejected_rate_threshold),
        ),
        Panel(
            "Rejected requests by reason",
            "Uploads refused before the model ran (not a video, too long, too large, ...), per second.",
            [Target(f"sum by (endpoint, reason) (rate(signflow_rejected_requests_total{{{JOB}}}{RATE}))",
                    "{{endpoint}}: {{reason}}")],  # fmt: skip
            unit="reqps",
        ),
        Panel(
            "Request latency p50 / p95 by endpoint",
            "Latency of successful (2xx) prediction requests by endpoint; fast refusals are left out. The SLO "
            "thresholds are in params monitoring.slos (latency_s per endpoint).",
            _quantiles("bentoml_service_request_duration_seconds", f'{API}, http_response_code=~"2.."', "endpoint",
                       "{{endpoint}} ", (0.5, 0.95)),  # fmt: skip
            unit="s",
        ),
        Panel(
            "Latency by stage (decode / preprocess / model) p95",
            "Where the time goes, per endpoint: video decoding, frame preprocessing, the model call (batching "
            "queue included).",
            _quantiles("signflow_stage_latency_seconds", JOB, "endpoint, stage", "{{endpoint}} {{stage}} ", (0.95,)),
            unit="s",
        ),
        Panel(
            "Model service: /logits latency p95 and errors",
            "The model service (signflow_model) behind the batcher: its own request latency and failed calls per "
            "second. A slow or failing model shows here before it shows in the API panels.",
            [
                *_quantiles("bentoml_service_request_duration_seconds",
                            f'{JOB}, runner_name="{MODEL_SERVICE}", endpoint="/logits"', "", "latency ", (0.95,)),
                Target(f'sum(rate(bentoml_service_request_total{{{JOB}, runner_name="{MODEL_SERVICE}", '
                       f'endpoint="/logits", http_response_code=~"5.."}}{RATE}))', "failed calls/s"),
            ],  # fmt: skip
            unit="s",
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "failed calls/s"},
                    "properties": [{"id": "unit", "value": "reqps"}, {"id": "custom.axisPlacement", "value": "right"}],
                }
            ],
        ),
        Panel(
            "In-flight requests",
            "Requests being processed right now; a steady climb means the service cannot keep up.",
            [Target(f"sum by (endpoint) (bentoml_service_request_in_progress{{{API}}})", "{{endpoint}}")],
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
            "Process CPU by service",
            "CPU cores used by the server's worker processes: the API service (decode, preprocess) and the model "
            "service.",
            [Target(f"sum by (service) (rate(signflow_process_cpu_seconds_total{{{JOB}}}{RATE}))", "{{service}}")],
        ),
        Panel(
            "Process memory by service",
            "Resident memory of the server's live worker processes.",
            [Target(f"sum by (service) (signflow_process_resident_memory_bytes{{{JOB}}})", "{{service}}")],
            unit="bytes",
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
            f"Least confident glosses (mean top-1 probability, bottom {top})",
            "Mean confidence of the predictions of each gloss over the time range: the signs the model is unsure "
            "of (new signers, a camera angle, a confusable pair). Glosses never predicted are left out.",
            [
                Target(
                    f"bottomk({top}, sum by (gloss) (increase(signflow_top1_confidence_by_gloss_total{{{JOB}}}[$__range]))"
                    f" / sum by (gloss) (increase(signflow_predictions_total{{{JOB}}}[$__range])) > 0)",
                    "{{gloss}}",
                    instant=True,
                )
            ],
            kind="bargauge",
            unit="percentunit",
            thresholds=red_below(0.5),
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
            thresholds=red_from(mp.low_confidence_rate_threshold),
        ),
        Panel(
            "Prediction drift (PSI)",
            "Population stability index of recent predictions vs evaluation time (max of class and confidence"
            f" PSI, window {mp.drift_window}); red line = alert threshold.",
            [Target(f"max by (instance) (signflow_prediction_drift_psi{{{JOB}}})", "{{instance}}")],
            thresholds=red_from(mp.drift_psi_threshold),
        ),
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    field_config: dict[str, Any] = {"defaults": {"unit": panel.unit}, "overrides": panel.overrides}
    if panel.thresholds is not None:
        field_config["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [{"color": color, "value": value} for color, value in panel.thresholds],
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
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "options": panel.options,
    }
    if panel.kind not in NO_QUERY_KINDS:
        result.update({"datasource": DATASOURCE, "fieldConfig": field_config, "targets": targets})
    if panel.transformations:
        result["transformations"] = panel.transformations
    return result


def annotations() -> list[dict[str, Any]]:
    """Deploys on the time axis: a model tag that was not served 5 minutes earlier (its labels name it).

    Only the fields of Grafana's typed annotation model (checked by grafana-foundation-sdk)."""
    return [
        {
            "name": "Model deploys",
            "datasource": DATASOURCE,
            "enable": True,
            "iconColor": "blue",
            "expr": f"count by (model_tag) (signflow_model_info{{{JOB}}})"
            f" unless count by (model_tag) (signflow_model_info{{{JOB}}} offset 5m)",
        }
    ]


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
        "annotations": {"list": annotations()},
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
                    "current": {"text": "signflow", "value": "signflow"},
                    "refresh": 2,
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "sort": 1,
                },
                {
                    "name": "instance",
                    "label": "Instance",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {"query": 'label_values(up{job="$job"}, instance)', "refId": "instance"},
                    "current": {"text": "All", "value": "$__all"},
                    "refresh": 2,
                    "hide": 0,
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
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
