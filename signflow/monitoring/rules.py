"""Prometheus recording rules, alert rules and promtool unit tests for the alerts.

Thresholds come from ``params.yaml`` ``monitoring:`` so the SLO lives in one place. The alert
tests are generated too: their synthetic series are placed far on either side of each threshold
(a bad case must fire, a healthy one stay silent) so they stay valid when a threshold is tuned.
"""

from __future__ import annotations

import math
import re
from typing import Any

from signflow.config import MonitoringParams

# The Prometheus job that scrapes the service. prometheus.yml's job_name, the docker-compose service
# and the Kubernetes Service (a ServiceMonitor names the job after the Service) must all use it.
JOB = "signflow"
# BentoML labels request metrics with the *service* that answered (runner_name). The entry service
# (serving/service.py, name="signflow") answers clients; its dependency (signflow_model) answers the
# entry service's internal /logits calls, which would count every prediction twice.
ENTRY_SERVICE = "signflow"
# Requests that are not predictions: the metrics scrape, health probes, docs, the web page and its
# files. They would dilute error ratios and latency quantiles, and they never stop while the service is up.
INFRA_ENDPOINTS = "/(metrics|healthz|livez|readyz|health|docs.json|schema.json|ui/.*|static/.*|static_content/.*)?"


def api_selector(job_matcher: str) -> str:
    """Label matchers for client-facing API requests of the jobs ``job_matcher`` selects."""
    return f'{job_matcher}, runner_name="{ENTRY_SERVICE}", endpoint!~"{INFRA_ENDPOINTS}"'


API = api_selector(f'job="{JOB}"')
SEL = f'job="{JOB}"'

# A low-confidence *ratio* over a handful of predictions is noise (1 of 1 = 100 %).
LOW_CONFIDENCE_MIN_PREDICTIONS = 20
LOW_CONFIDENCE_WINDOW_S = 15 * 60

RECORDING_GROUP = "signflow.recording"
ALERT_GROUP = "signflow.alerts"


def recording_rules() -> dict[str, Any]:
    """The queries alerts (and people) need over and over, computed once per evaluation."""
    rules = [
        ("signflow:api_requests:rate5m",
         f"sum by (job, endpoint, http_response_code) (rate(bentoml_service_request_total{{{API}}}[5m]))"),
        ("signflow:api_errors:ratio_rate5m",
         'sum by (job) (signflow:api_requests:rate5m{http_response_code=~"5.."})'
         " / sum by (job) (signflow:api_requests:rate5m)"),
        ("signflow:rejected_requests:ratio_rate5m",
         f"sum by (job) (rate(signflow_rejected_requests_total{{{SEL}}}[5m]))"
         " / sum by (job) (signflow:api_requests:rate5m)"),
        ("signflow:api_latency_seconds:p95_5m",
         "histogram_quantile(0.95, sum by (job, le) "
         f"(rate(bentoml_service_request_duration_seconds_bucket{{{API}}}[5m])))"),
        ("signflow:stage_latency_seconds:p95_5m",
         "histogram_quantile(0.95, sum by (job, stage, le) "
         f"(rate(signflow_stage_latency_seconds_bucket{{{SEL}}}[5m])))"),
        ("signflow:predictions:rate15m",
         f"sum by (job) (rate(signflow_predictions_total{{{SEL}}}[15m]))"),
        ("signflow:low_confidence:ratio_rate15m",
         f"sum by (job) (rate(signflow_low_confidence_total{{{SEL}}}[15m])) / signflow:predictions:rate15m"),
    ]  # fmt: skip
    return {"groups": [{"name": RECORDING_GROUP, "rules": [{"record": r, "expr": e} for r, e in rules]}]}


def _alerts(mp: MonitoringParams) -> list[dict[str, Any]]:
    """Alert definitions: name, expr, for, severity, summary, description."""
    slo = mp.latency_slo_p95_s
    return [
        {
            "alert": "SignflowServiceDown",
            "expr": f"up{{{SEL}}} == 0",
            "for": "2m",
            "severity": "critical",
            "summary": "signflow target {{ $labels.instance }} is down",
            "description": "Prometheus has not scraped {{ $labels.instance }} (job {{ $labels.job }}) for 2 minutes: "
            "the service is down or unreachable. Check the pod/container logs.",
        },
        {
            "alert": "SignflowModelNotReady",
            "expr": f"signflow_model_ready{{{SEL}}} == 0",
            # Loading a model takes a while after a (re)start; only a stuck load is an incident.
            "for": "5m",
            "severity": "critical",
            "summary": "signflow on {{ $labels.instance }} runs without a ready model",
            "description": "signflow_model_ready has been 0 for 5 minutes on {{ $labels.instance }}: "
            "the model failed to load, predictions are refused. Check the model tag and the service logs.",
        },
        {
            "alert": "SignflowHighErrorRate",
            "expr": f"signflow:api_errors:ratio_rate5m > {mp.error_rate_threshold:g}",
            "for": "5m",
            "severity": "critical",
            "summary": f"More than {mp.error_rate_threshold:.0%} of signflow requests fail with 5xx",
            "description": "Server errors (HTTP 5xx) above "
            f"{mp.error_rate_threshold:.0%} of API requests for 5 minutes (job {{{{ $labels.job }}}}). "
            "See the 'Error ratio by status code' panel and the service logs.",
        },
        {
            "alert": "SignflowHighRejectionRate",
            "expr": f"signflow:rejected_requests:ratio_rate5m > {mp.rejected_rate_threshold:g}",
            "for": "15m",
            "severity": "warning",
            "summary": f"More than {mp.rejected_rate_threshold:.0%} of signflow requests are rejected as bad input",
            "description": "Rejected uploads (not a video, too long, too large, ...) above "
            f"{mp.rejected_rate_threshold:.0%} of API requests for 15 minutes (job {{{{ $labels.job }}}}): "
            "a client is broken or the limits in params.yaml serve: are too strict. "
            "See 'Rejected requests by reason'.",
        },
        {
            "alert": "SignflowLatencySLOBreach",
            "expr": f"signflow:api_latency_seconds:p95_5m > {slo:g}",
            "for": "10m",
            "severity": "warning",
            "summary": f"signflow p95 latency above the {slo:g} s SLO",
            "description": f"The 95th percentile of API request latency has exceeded {slo:g} s for 10 minutes "
            "(job {{ $labels.job }}). 'Latency by stage' shows whether decode, preprocess or the model is slow.",
        },
        {
            "alert": "SignflowLowConfidenceSpike",
            "expr": f"signflow:low_confidence:ratio_rate15m > {mp.low_confidence_rate_threshold:g}"
            f" and signflow:predictions:rate15m * {LOW_CONFIDENCE_WINDOW_S} >= {LOW_CONFIDENCE_MIN_PREDICTIONS}",
            "for": "15m",
            "severity": "warning",
            "summary": f"More than {mp.low_confidence_rate_threshold:.0%} of signflow predictions are low-confidence",
            "description": "The share of predictions whose top-1 probability is under serve.low_confidence "
            f"exceeded {mp.low_confidence_rate_threshold:.0%} for 15 minutes (job {{{{ $labels.job }}}}): "
            "inputs no longer look like the training data (camera, framing, signers) or a new sign vocabulary.",
        },
        {
            "alert": "SignflowPredictionDrift",
            "expr": f"max by (job) (signflow_prediction_drift_psi{{{SEL}}}) > {mp.drift_psi_threshold:g}",
            # PSI over a sliding window moves with every batch; only a sustained shift matters.
            "for": "30m",
            "severity": "warning",
            "summary": f"signflow prediction distribution drifted (PSI > {mp.drift_psi_threshold:g})",
            "description": "The population stability index between recent predictions and the evaluation-time "
            f"distribution has exceeded {mp.drift_psi_threshold:g} for 30 minutes (job {{{{ $labels.job }}}}). "
            "Compare 'Predictions per gloss' and 'Top-1 confidence' with the evaluation report; consider retraining.",
        },
        {
            "alert": "SignflowNoTraffic",
            # Expected = this hour yesterday had traffic. `unless` (not `== 0`) also covers request series
            # that vanished after a restart; a down target is SignflowServiceDown's job, not this one's.
            "expr": f"sum by (job) (rate(bentoml_service_request_total{{{API}}}[1h] offset 1d))"
            f" > {mp.expected_min_rps:g}"
            f" unless sum by (job) (rate(bentoml_service_request_total{{{API}}}[15m])) > 0"
            f" unless on (job) (up{{{SEL}}} == 0)",
            "for": "15m",
            "severity": "warning",
            "summary": "signflow receives no requests although it did at this time yesterday",
            "description": "No API requests for 15+ minutes while the same hour yesterday had more than "
            f"{mp.expected_min_rps:g} requests/s (job {{{{ $labels.job }}}}): "
            "clients, DNS or the ingress may be broken.",
        },
    ]


def alert_rules(mp: MonitoringParams) -> dict[str, Any]:
    """The alert rule file (Prometheus format; the PrometheusRule ``spec`` is the same object)."""
    rules = []
    for alert in _alerts(mp):
        rules.append(
            {
                "alert": alert["alert"],
                "expr": alert["expr"],
                "for": alert["for"],
                "labels": {"severity": alert["severity"]},
                "annotations": {"summary": alert["summary"], "description": alert["description"]},
            }
        )
    return {"groups": [{"name": ALERT_GROUP, "rules": rules}]}


_LABEL_TEMPLATE = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")


def _render(template: str, labels: dict[str, str]) -> str:
    """Render the only template construct our annotations use (``{{ $labels.x }}``) like Prometheus."""
    text = _LABEL_TEMPLATE.sub(lambda m: labels.get(m.group(1), ""), template)
    if "{{" in text:
        raise ValueError(f"annotation uses a template construct the test generator cannot render: {template!r}")
    return text


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ", ".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def _expect(mp: MonitoringParams, name: str, eval_time: str, labels: dict[str, str] | None) -> dict[str, Any]:
    """An alert_rule_test entry: ``labels`` None = must stay silent."""
    if labels is None:
        return {"eval_time": eval_time, "alertname": name, "exp_alerts": []}
    alert = next(a for a in _alerts(mp) if a["alert"] == name)
    full = {**labels, "severity": alert["severity"]}
    annotations = {key: _render(alert[key], {**full, "alertname": name}) for key in ("summary", "description")}
    return {
        "eval_time": eval_time,
        "alertname": name,
        "exp_alerts": [{"exp_labels": full, "exp_annotations": annotations}],
    }


def alert_tests(mp: MonitoringParams) -> dict[str, dict[str, Any]]:
    """promtool unit test files (name -> content).

    Every alert fires on a bad synthetic series and stays silent on a healthy one.
    """
    inst = {"job": JOB, "instance": "signflow:3000"}
    api = {**inst, "endpoint": "/predict_video", "runner_name": ENTRY_SERVICE, "service_name": ENTRY_SERVICE}
    job_only = {"job": JOB}
    rejected_labels = {**inst, "endpoint": "predict_video", "reason": "not_video"}
    slo = mp.latency_slo_p95_s
    psi = mp.drift_psi_threshold
    # Per-5m request increments that make yesterday's rate 10x the "expected traffic" bar.
    per_5m = max(1, math.ceil(mp.expected_min_rps * 300 * 10))
    day_plus = 300  # 300 x 5m = 25 h of history, so "1 h ago yesterday" is inside it

    def requests(code: str, values: str) -> dict[str, str]:
        return _series("bentoml_service_request_total", {**api, "http_response_code": code}, values)

    def latency(le_values: dict[str, str]) -> list[dict[str, str]]:
        name = "bentoml_service_request_duration_seconds_bucket"
        return [_series(name, {**api, "http_response_code": "200", "le": le}, v) for le, v in le_values.items()]

    fast, slow = repr(slo / 10), repr(slo * 10)
    tests: list[dict[str, Any]] = [
        {
            "name": "SignflowServiceDown: fires after 2m of up == 0, silent while up",
            "interval": "1m",
            "input_series": [
                _series("up", inst, "1 1 0+0x10"),
                _series("up", {**inst, "instance": "ok:3000"}, "1+0x12"),
            ],
            "alert_rule_test": [
                _expect(mp, "SignflowServiceDown", "3m", None),  # pending: down for 1m only
                _expect(mp, "SignflowServiceDown", "10m", inst),
            ],
        },
        {
            "name": "SignflowModelNotReady: fires after 5m without a model",
            "interval": "1m",
            "input_series": [
                _series("signflow_model_ready", inst, "0+0x10"),
                _series("signflow_model_ready", {**inst, "instance": "ok:3000"}, "1+0x10"),
            ],
            "alert_rule_test": [
                _expect(mp, "SignflowModelNotReady", "3m", None),
                _expect(mp, "SignflowModelNotReady", "10m", inst),
            ],
        },
        {
            "name": "SignflowHighErrorRate: all requests 5xx fire",
            "interval": "1m",
            "input_series": [requests("500", "0+10x20"), requests("200", "0+0x20")],
            "alert_rule_test": [_expect(mp, "SignflowHighErrorRate", "15m", job_only)],
        },
        {
            "name": "SignflowHighErrorRate: healthy (no 5xx, /metrics scrapes ignored) stays silent",
            "interval": "1m",
            "input_series": [
                requests("200", "0+10x20"),
                _series("bentoml_service_request_total", {**api, "endpoint": "/metrics", "http_response_code": "500"},
                        "0+10x20"),
            ],  # fmt: skip
            "alert_rule_test": [_expect(mp, "SignflowHighErrorRate", "15m", None)],
        },
        {
            "name": "SignflowHighRejectionRate: all requests rejected fire, none rejected stays silent",
            "interval": "1m",
            "input_series": [
                requests("400", "0+10x30"),
                _series("signflow_rejected_requests_total", rejected_labels, "0+10x30"),
            ],
            "alert_rule_test": [
                _expect(mp, "SignflowHighRejectionRate", "10m", None),  # pending for less than 15m
                _expect(mp, "SignflowHighRejectionRate", "25m", job_only),
            ],
        },
        {
            "name": "SignflowHighRejectionRate: healthy",
            "interval": "1m",
            "input_series": [
                requests("200", "0+10x30"),
                _series("signflow_rejected_requests_total", rejected_labels, "0+0x30"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowHighRejectionRate", "25m", None)],
        },
        {
            "name": "SignflowLatencySLOBreach: every request ~10x the SLO fires",
            "interval": "1m",
            "input_series": latency({fast: "0+0x25", slow: "0+10x25", "+Inf": "0+10x25"}),
            "alert_rule_test": [_expect(mp, "SignflowLatencySLOBreach", "20m", job_only)],
        },
        {
            "name": "SignflowLatencySLOBreach: every request under a tenth of the SLO stays silent",
            "interval": "1m",
            "input_series": latency({fast: "0+10x25", slow: "0+10x25", "+Inf": "0+10x25"}),
            "alert_rule_test": [_expect(mp, "SignflowLatencySLOBreach", "20m", None)],
        },
        {
            "name": "SignflowLowConfidenceSpike: all predictions low-confidence fire",
            "interval": "1m",
            "input_series": [
                _series("signflow_predictions_total", {**inst, "gloss": "book"}, "0+10x40"),
                _series("signflow_low_confidence_total", inst, "0+10x40"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowLowConfidenceSpike", "35m", job_only)],
        },
        {
            "name": "SignflowLowConfidenceSpike: too few predictions to judge stays silent",
            "interval": "1m",
            "input_series": [
                # 1 prediction every 2 minutes: < 20 in the 15m window, all low-confidence.
                _series("signflow_predictions_total", {**inst, "gloss": "book"}, "0+0.5x40"),
                _series("signflow_low_confidence_total", inst, "0+0.5x40"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowLowConfidenceSpike", "35m", None)],
        },
        {
            "name": "SignflowLowConfidenceSpike: confident predictions stay silent",
            "interval": "1m",
            "input_series": [
                _series("signflow_predictions_total", {**inst, "gloss": "book"}, "0+10x40"),
                _series("signflow_low_confidence_total", inst, "0+0x40"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowLowConfidenceSpike", "35m", None)],
        },
        {
            "name": "SignflowPredictionDrift: PSI at 4x the threshold for 30m fires, a quarter stays silent",
            "interval": "1m",
            "input_series": [
                _series("signflow_prediction_drift_psi", inst, f"{psi * 4!r}+0x40"),
                _series("signflow_prediction_drift_psi", {"job": "other", "instance": "x:1"}, f"{psi * 4!r}+0x40"),
            ],
            "alert_rule_test": [
                _expect(mp, "SignflowPredictionDrift", "20m", None),  # still pending
                _expect(mp, "SignflowPredictionDrift", "35m", job_only),
            ],
        },
        {
            "name": "SignflowPredictionDrift: healthy",
            "interval": "1m",
            "input_series": [_series("signflow_prediction_drift_psi", inst, f"{psi / 4!r}+0x40")],
            "alert_rule_test": [_expect(mp, "SignflowPredictionDrift", "35m", None)],
        },
    ]
    # "Yesterday" needs a day of series; evaluating every rule each minute for 26 h takes promtool
    # ~15 s, so these cases live in their own file evaluated every 15 minutes (enough for `for: 15m`).
    no_traffic: list[dict[str, Any]] = [
        {
            "name": "SignflowNoTraffic: traffic stops although it flowed yesterday",
            "interval": "5m",
            "input_series": [
                requests("200", f"0+{per_5m}x{day_plus} {per_5m * day_plus}+0x30"),
                _series("up", inst, f"1+0x{day_plus + 30}"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowNoTraffic", "26h", job_only)],
        },
        {
            "name": "SignflowNoTraffic: steady traffic stays silent",
            "interval": "5m",
            "input_series": [
                requests("200", f"0+{per_5m}x{day_plus + 30}"),
                _series("up", inst, f"1+0x{day_plus + 30}"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowNoTraffic", "26h", None)],
        },
        {
            "name": "SignflowNoTraffic: quiet yesterday too (not expected) stays silent",
            "interval": "5m",
            "input_series": [requests("200", f"0+0x{day_plus + 30}"), _series("up", inst, f"1+0x{day_plus + 30}")],
            "alert_rule_test": [_expect(mp, "SignflowNoTraffic", "26h", None)],
        },
        {
            "name": "SignflowNoTraffic: a down target is ServiceDown's alert, not this one",
            "interval": "5m",
            "input_series": [
                requests("200", f"0+{per_5m}x{day_plus} {per_5m * day_plus}+0x30"),
                _series("up", inst, f"1+0x{day_plus} 0+0x30"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowNoTraffic", "26h", None)],
        },
    ]
    rule_files = ["../recording.yml", "../alerts.yml"]
    return {
        "alerts_test.yml": {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests},
        "no_traffic_test.yml": {"rule_files": rule_files, "evaluation_interval": "15m", "tests": no_traffic},
    }


def alert_names(mp: MonitoringParams) -> list[str]:
    return [alert["alert"] for alert in _alerts(mp)]
