"""Prometheus recording rules, alert rules and promtool unit tests for the alerts.

Thresholds come from ``params.yaml`` ``monitoring:`` so the SLO lives in one place. The alert
tests are generated too: their synthetic series are placed far on either side of each threshold
(a bad case must fire, a healthy one stay silent) so they stay valid when a threshold is tuned.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from signflow.config import SERVICE_PATHS, SERVING_ENDPOINTS, UNKNOWN_PATH_LABEL, EndpointSLO, MonitoringParams

# The Prometheus job that scrapes the service. prometheus.yml's job_name, the docker-compose service
# and the Kubernetes Service (a ServiceMonitor names the job after the Service) must all use it.
JOB = "signflow"
# BentoML labels request metrics with the *service* that answered (runner_name). The entry service
# (serving/service.py, name="signflow") answers clients; its dependency (signflow_model) answers the
# entry service's internal /logits calls, which would count every prediction twice.
ENTRY_SERVICE = "signflow"
MODEL_SERVICE = "signflow_model"
# Client-facing prediction endpoints, as BentoML labels them. An allow-list, not a deny-list: 404s
# (/favicon.ico, scanners), health probes, scrapes and the web page are not API traffic.
API_ENDPOINTS = "/(" + "|".join(SERVING_ENDPOINTS) + ")"
# Every value the `endpoint` label may take on the service's series (BentoML's paths and the service's
# own names); prometheus.yml and the ServiceMonitor drop any other series at scrape time
# (metric_relabel_configs), so junk paths cannot create series. Tested against both files.
KNOWN_ENDPOINT_LABELS = "|".join(
    # absent; BentoML's paths; the service's own endpoint names (signflow_* series); junk
    ["", *(re.escape(path) for path in SERVICE_PATHS), *SERVING_ENDPOINTS, UNKNOWN_PATH_LABEL]
)


def api_selector(job_matcher: str) -> str:
    """Label matchers for client-facing API requests of the jobs ``job_matcher`` selects."""
    return f'{job_matcher}, runner_name="{ENTRY_SERVICE}", endpoint=~"{API_ENDPOINTS}"'


API = api_selector(f'job="{JOB}"')
SEL = f'job="{JOB}"'
# Failures that count against the availability SLO: server errors, overload (503) and timeouts (504)
# included, and 429 (the concurrency limit). Client errors (4xx) are the client's, not the service's.
FAILED_CODES = "5..|429"

# A low-confidence *ratio* over a handful of predictions is noise (1 of 1 = 100 %).
LOW_CONFIDENCE_MIN_PREDICTIONS = 20
LOW_CONFIDENCE_WINDOW_S = 15 * 60


@dataclass(frozen=True)
class BurnWindow:
    """One multiwindow burn-rate condition (SRE workbook, "Alerting on SLOs", table 5-8)."""

    speed: str  # "Fast" / "Slow": part of the alert name
    long: str
    short: str
    factor: float  # burn rate: budget spent this many times faster than the SLO allows
    severity: str
    hold: str  # `for:`; the short window already makes the alert clear fast


BURN_WINDOWS = (
    BurnWindow("Fast", "1h", "5m", 14.4, "critical", "2m"),  # 2 % of a 30-day budget in an hour
    BurnWindow("Slow", "6h", "30m", 6.0, "warning", "15m"),  # 5 % in 6 hours
)
SLO_WINDOWS = ("5m", "30m", "1h", "6h")

RECORDING_GROUP = "signflow.recording"
ALERT_GROUP = "signflow.alerts"
SLO_GROUP = "signflow.slo"


def endpoint_path(endpoint: str) -> str:
    return f"/{endpoint}"


def le_matcher(bound: float) -> str:
    """``le`` as exposed ("2.5", "1.0") or as newer Prometheus versions normalise it ("1")."""
    spellings = dict.fromkeys([repr(float(bound)), f"{bound:g}"])
    return "le=~\"" + "|".join(re.escape(s).replace("\\", "\\\\") for s in spellings) + "\""


def recording_rules(mp: MonitoringParams | None = None) -> dict[str, Any]:
    """The queries alerts (and people) need over and over, computed once per evaluation."""
    mp = mp or MonitoringParams()
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
         "histogram_quantile(0.95, sum by (job, endpoint, le) "
         f"(rate(bentoml_service_request_duration_seconds_bucket{{{API}, http_response_code=~\"2..\"}}[5m])))"),
        ("signflow:stage_latency_seconds:p95_5m",
         "histogram_quantile(0.95, sum by (job, endpoint, stage, le) "
         f"(rate(signflow_stage_latency_seconds_bucket{{{SEL}}}[5m])))"),
        ("signflow:predictions:rate15m",
         f"sum by (job) (rate(signflow_predictions_total{{{SEL}}}[15m]))"),
        ("signflow:low_confidence:ratio_rate15m",
         f"sum by (job) (rate(signflow_low_confidence_total{{{SEL}}}[15m])) / signflow:predictions:rate15m"),
    ]  # fmt: skip
    groups = [{"name": RECORDING_GROUP, "rules": [{"record": r, "expr": e} for r, e in rules]}]
    return {"groups": [*groups, {"name": SLO_GROUP, "rules": slo_recording_rules(mp)}]}


def slo_recording_rules(mp: MonitoringParams) -> list[dict[str, Any]]:
    """Per endpoint and window: the share of requests that failed, and of successes that were too slow."""
    rules: list[dict[str, Any]] = []
    for window in SLO_WINDOWS:
        rules.append({
            "record": f"signflow:slo_errors:ratio_rate{window}",
            "expr": f'sum by (job, endpoint) (rate(bentoml_service_request_total{{{API}, http_response_code=~"{FAILED_CODES}"}}[{window}]))'
                    f" / sum by (job, endpoint) (rate(bentoml_service_request_total{{{API}}}[{window}]))",
        })  # fmt: skip
        # Each endpoint has its own threshold (bucket); one rule per window joins them with `or`.
        per_endpoint = []
        for endpoint, slo in mp.slos.items():
            selector = f'{SEL}, runner_name="{ENTRY_SERVICE}", endpoint="{endpoint_path(endpoint)}", http_response_code=~"2.."'
            per_endpoint.append(
                f"(1 - sum by (job, endpoint) (rate(bentoml_service_request_duration_seconds_bucket{{{selector}, {le_matcher(slo.latency_s)}}}[{window}]))"
                f" / sum by (job, endpoint) (rate(bentoml_service_request_duration_seconds_count{{{selector}}}[{window}])))"
            )  # fmt: skip
        rules.append({"record": f"signflow:slo_slow:ratio_rate{window}", "expr": " or ".join(per_endpoint)})
    # The objectives as series (one per endpoint), so a panel divides every endpoint's ratio by its
    # own budget in one query (`/ on (endpoint) group_left`), whatever endpoints have traffic.
    for endpoint, slo in mp.slos.items():
        labels = {"endpoint": endpoint_path(endpoint)}
        rules.append({"record": "signflow:slo_errors:budget", "expr": f"vector({1 - slo.availability:g})", "labels": labels})
        rules.append({"record": "signflow:slo_slow:budget", "expr": f"vector({1 - slo.latency_target:g})", "labels": labels})
    rules.append({
        "record": "signflow:api_requests:increase1h",
        "expr": f"sum by (job, endpoint) (increase(bentoml_service_request_total{{{API}}}[1h]))",
    })  # fmt: skip
    return rules


def runbook(mp: MonitoringParams, alert: str) -> str:
    return f"{mp.runbook_url}#{alert.lower()}"


def _burn_alerts(mp: MonitoringParams) -> list[dict[str, Any]]:
    """Multiwindow, multi-burn-rate alerts per endpoint and SLO (availability, latency)."""
    alerts = []
    for endpoint, slo in mp.slos.items():
        path = endpoint_path(endpoint)
        for window in BURN_WINDOWS:
            for kind, record, budget, what in _slis(slo):
                name = "availability" if kind == "Error" else "latency"
                bar = round(window.factor * budget, 6)
                match = f'{{job="{JOB}", endpoint="{path}"}}'
                alerts.append({
                    "alert": f"Signflow{kind}Budget{window.speed}Burn",
                    "expr": f"signflow:{record}:ratio_rate{window.long}{match} > {bar:g}"
                            f" and signflow:{record}:ratio_rate{window.short}{match} > {bar:g}"
                            f" and signflow:api_requests:increase1h{match} >= {mp.slo_min_requests_1h}",
                    "for": window.hold,
                    "severity": window.severity,
                    "summary": f"signflow {path}: {name} error budget burning {window.factor:g}x too fast",
                    "description": f"More than {bar:.2%} of {path} requests {what} over the last {window.long} and "
                    f"{window.short} (SLO {_objective(slo, kind)} over {mp.slo_window_days} days; at this rate the "
                    f"budget lasts {mp.slo_window_days * 24 / window.factor:.0f} h). Job {{{{ $labels.job }}}}.",
                    "labels": {"slo": name, "endpoint": path},
                })  # fmt: skip
    return alerts


def _slis(slo: EndpointSLO) -> list[tuple[str, str, float, str]]:
    """(alert kind, recording-rule name, error budget, what a bad event is)."""
    return [
        ("Error", "slo_errors", 1.0 - slo.availability, "failed (5xx, 429)"),
        ("Latency", "slo_slow", 1.0 - slo.latency_target, f"that succeeded took longer than {slo.latency_s:g} s"),
    ]


def _objective(slo: EndpointSLO, kind: str) -> str:
    if kind == "Error":
        return f"{slo.availability:.2%} available"
    return f"{slo.latency_target:.0%} within {slo.latency_s:g} s"


def _alerts(mp: MonitoringParams) -> list[dict[str, Any]]:
    """Alert definitions: name, expr, for, severity, summary, description (+ extra labels)."""
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
            "alert": "SignflowTargetMissing",
            "expr": f"absent(up{{{SEL}}})",
            "for": "10m",
            "severity": "critical",
            "summary": "Prometheus has no signflow target at all",
            "description": "No target of job {{ $labels.job }} has been discovered for 10 minutes: the service is "
            "not deployed, or its Service/ServiceMonitor/scrape config no longer selects it. Nothing else can alert.",
        },
        {
            "alert": "SignflowMetricsMissing",
            # Up but blind: /metrics answers with none of the service's series (its multi-process metric
            # folder was wiped, e.g. by a second server sharing BENTOML_HOME) or with nothing at all.
            "expr": f"(up{{{SEL}}} == 1 unless on (job, instance) signflow_model_ready{{{SEL}}})"
            f" or scrape_samples_scraped{{{SEL}}} == 0",
            "for": "5m",
            "severity": "critical",
            "summary": "signflow target {{ $labels.instance }} is up but exports no signflow metrics",
            "description": "{{ $labels.instance }} answers its scrapes but without signflow_model_ready (or with no "
            "samples) for 5 minutes: every other alert is blind for it. Usually a second server wiped its "
            "multi-process metrics folder; restart it with `python -m serving`.",
        },
        {
            "alert": "SignflowModelNotReady",
            "expr": f"signflow_model_ready{{{SEL}}} == 0",
            # Loading a model and warming up take a while after a (re)start; only a stuck start is an incident.
            "for": "5m",
            "severity": "critical",
            "summary": "signflow on {{ $labels.instance }} runs without a ready model",
            "description": "signflow_model_ready has been 0 for 5 minutes on {{ $labels.instance }}: the model "
            "failed to load or warm up, /readyz answers 503. Check the model tag and the service logs.",
        },
        *_burn_alerts(mp),
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
            # Expected = this hour yesterday had traffic, or the 3 h before the last 15 minutes did (so a
            # service younger than a day is covered too). `unless` (not `== 0`) also covers request series
            # that vanished after a restart; a down target is SignflowServiceDown's job, not this one's.
            "expr": f"(sum by (job) (rate(bentoml_service_request_total{{{API}}}[1h] offset 1d)) > {mp.expected_min_rps:g}"
            f" or sum by (job) (rate(bentoml_service_request_total{{{API}}}[3h] offset 15m)) > {mp.expected_min_rps:g})"
            f" unless sum by (job) (rate(bentoml_service_request_total{{{API}}}[15m])) > 0"
            f" unless on (job) (up{{{SEL}}} == 0)",
            "for": "15m",
            "severity": "warning",
            "summary": "signflow receives no requests although it did before",
            "description": "No API requests for 15+ minutes while the same hour yesterday, or the 3 hours before, "
            f"had more than {mp.expected_min_rps:g} requests/s (job {{{{ $labels.job }}}}): "
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
                "labels": {"severity": alert["severity"], **alert.get("labels", {})},
                "annotations": {
                    "summary": alert["summary"],
                    "description": alert["description"],
                    "runbook_url": runbook(mp, alert["alert"]),
                },
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
    alert = next(
        a for a in _alerts(mp)
        if a["alert"] == name and a.get("labels", {}).get("endpoint") in (None, labels.get("endpoint"))
    )  # fmt: skip
    full = {**labels, "severity": alert["severity"], **alert.get("labels", {})}
    annotations = {key: _render(alert[key], {**full, "alertname": name}) for key in ("summary", "description")}
    annotations["runbook_url"] = runbook(mp, name)
    return {
        "eval_time": eval_time,
        "alertname": name,
        "exp_alerts": [{"exp_labels": full, "exp_annotations": annotations}],
    }


def _burn_tests(mp: MonitoringParams) -> list[dict[str, Any]]:
    """For the first endpoint with an SLO: each burn alert fires on its burn rate and clears when the
    errors stop; the fast one ignores a slow burn; too little traffic never fires."""
    endpoint, slo = next(iter(mp.slos.items()))
    path = endpoint_path(endpoint)
    api = {"job": JOB, "instance": "signflow:3000", "endpoint": path, "runner_name": ENTRY_SERVICE,
           "service_name": ENTRY_SERVICE}  # fmt: skip
    job = {"job": JOB, "endpoint": path}
    per_min = 100  # requests a minute: far above the minimum-traffic guard
    fast, slow = BURN_WINDOWS

    def bad_share(window: BurnWindow, budget: float, over: float) -> int:
        """Bad requests a minute (of ``per_min``) that burn the budget ``over`` x the window's factor."""
        return min(per_min, math.ceil(per_min * budget * window.factor * over))

    def requests(code: str, values: str) -> dict[str, str]:
        return _series("bentoml_service_request_total", {**api, "http_response_code": code}, values)

    def durations(fast_per_min: int, minutes_bad: int, minutes_after: int) -> list[dict[str, str]]:
        """Successful requests, ``fast_per_min`` of them within the SLO, then all fast."""
        name = "bentoml_service_request_duration_seconds"
        labels = {**api, "http_response_code": "200"}
        within = f"0+{fast_per_min}x{minutes_bad} {fast_per_min * minutes_bad}+{per_min}x{minutes_after}"
        total = f"0+{per_min}x{minutes_bad + minutes_after}"
        return [
            _series(f"{name}_bucket", {**labels, "le": repr(float(slo.latency_s))}, within),
            _series(f"{name}_count", labels, total),
            requests("200", total),
        ]

    availability_budget, latency_budget = 1.0 - slo.availability, 1.0 - slo.latency_target
    tests = []
    for window, over_minutes, clear_at in ((fast, 30, "50m"), (slow, 90, "140m")):
        bad = bad_share(window, availability_budget, 2.0)
        stop = over_minutes
        tests.append({
            "name": f"SignflowErrorBudget{window.speed}Burn: {bad}% of {path} requests fail, then none",
            "interval": "1m",
            "input_series": [
                requests("200", f"0+{per_min - bad}x{stop} {(per_min - bad) * stop}+{per_min}x60"),
                requests("503", f"0+{bad}x{stop} {bad * stop}+0x60"),
            ],
            "alert_rule_test": [
                _expect(mp, f"SignflowErrorBudget{window.speed}Burn", f"{stop}m", job),
                _expect(mp, f"SignflowErrorBudget{window.speed}Burn", clear_at, None),  # cleared by the short window
            ],
        })  # fmt: skip
        fast_share = per_min - bad_share(window, latency_budget, 1.5)
        tests.append({
            "name": f"SignflowLatencyBudget{window.speed}Burn: {per_min - fast_share}% of {path} answers too slow, then none",
            "interval": "1m",
            "input_series": durations(fast_share, stop, 60),
            "alert_rule_test": [
                _expect(mp, f"SignflowLatencyBudget{window.speed}Burn", f"{stop}m", job),
                _expect(mp, f"SignflowLatencyBudget{window.speed}Burn", clear_at, None),
            ],
        })  # fmt: skip
    # A slow burn (between the two factors) pages nobody fast; a trickle of traffic never fires.
    between = math.ceil(per_min * availability_budget * (fast.factor + slow.factor) / 2)
    tests.append({
        "name": f"SignflowErrorBudgetFastBurn: a slow burn ({between}% failing) stays silent",
        "interval": "1m",
        "input_series": [requests("200", f"0+{per_min - between}x90"), requests("503", f"0+{between}x90")],
        "alert_rule_test": [_expect(mp, "SignflowErrorBudgetFastBurn", "60m", None),
                            _expect(mp, "SignflowErrorBudgetSlowBurn", "60m", job)],
    })  # fmt: skip
    if mp.slo_min_requests_1h >= 2:
        every = math.ceil(60 / (mp.slo_min_requests_1h // 2))  # minutes between requests: under half the guard
        tests.append({
            "name": f"Burn-rate alerts: one request every {every} min, all failing, is too little traffic to judge",
            "interval": f"{every}m",
            "input_series": [requests("503", f"0+1x{8 * 60 // every}")],
            "alert_rule_test": [_expect(mp, "SignflowErrorBudgetFastBurn", "7h", None),
                                _expect(mp, "SignflowErrorBudgetSlowBurn", "7h", None)],
        })  # fmt: skip
    return tests


def alert_tests(mp: MonitoringParams) -> dict[str, dict[str, Any]]:
    """promtool unit test files (name -> content).

    Every alert fires on a bad synthetic series and stays silent on a healthy one.
    """
    inst = {"job": JOB, "instance": "signflow:3000"}
    api = {**inst, "endpoint": "/predict_video", "runner_name": ENTRY_SERVICE, "service_name": ENTRY_SERVICE}
    job_only = {"job": JOB}
    rejected_labels = {**inst, "endpoint": "predict_video", "reason": "not_video"}
    psi = mp.drift_psi_threshold
    # Per-5m request increments that make the expected rate 10x the "expected traffic" bar.
    per_5m = max(1, math.ceil(mp.expected_min_rps * 300 * 10))
    day_plus = 300  # 300 x 5m = 25 h of history, so "1 h ago yesterday" is inside it

    def requests(code: str, values: str) -> dict[str, str]:
        return _series("bentoml_service_request_total", {**api, "http_response_code": code}, values)

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
            "name": "SignflowTargetMissing: no signflow target at all fires, one target stays silent",
            "interval": "1m",
            "input_series": [_series("up", {"job": "node", "instance": "n:9100"}, "1+0x20")],
            "alert_rule_test": [_expect(mp, "SignflowTargetMissing", "5m", None),  # pending
                                _expect(mp, "SignflowTargetMissing", "15m", job_only)],  # fmt: skip
        },
        {
            "name": "SignflowTargetMissing: healthy",
            "interval": "1m",
            "input_series": [_series("up", inst, "1+0x20")],
            "alert_rule_test": [_expect(mp, "SignflowTargetMissing", "15m", None)],
        },
        {
            "name": "SignflowMetricsMissing: up but the metrics were wiped (no model_ready, 0 samples) fires",
            "interval": "1m",
            "input_series": [
                _series("up", inst, "1+0x20"),
                _series("scrape_samples_scraped", inst, "250 250 0+0x18"),
                _series("signflow_model_ready", inst, "1 1 _x18"),  # the series vanish with the folder
                _series("up", {**inst, "instance": "ok:3000"}, "1+0x20"),
                _series("scrape_samples_scraped", {**inst, "instance": "ok:3000"}, "250+0x20"),
                _series("signflow_model_ready", {**inst, "instance": "ok:3000"}, "1+0x20"),
            ],
            "alert_rule_test": [
                _expect(mp, "SignflowMetricsMissing", "4m", None),  # pending
                _expect(mp, "SignflowMetricsMissing", "15m", inst),
            ],
        },
        {
            "name": "SignflowMetricsMissing: an empty scrape (0 samples) of a target fires",
            "interval": "1m",
            "input_series": [
                _series("up", inst, "1+0x20"),
                _series("scrape_samples_scraped", inst, "0+0x20"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowMetricsMissing", "15m", inst)],
        },
        {
            "name": "SignflowMetricsMissing: healthy",
            "interval": "1m",
            "input_series": [
                _series("up", inst, "1+0x20"),
                _series("scrape_samples_scraped", inst, "250+0x20"),
                _series("signflow_model_ready", inst, "1+0x20"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowMetricsMissing", "15m", None)],
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
        *_burn_tests(mp),
        {
            "name": "Burn-rate alerts: healthy traffic (no 5xx, 404s and /metrics scrapes ignored) stays silent",
            "interval": "1m",
            "input_series": [
                requests("200", "0+100x90"),
                _series("bentoml_service_request_total", {**api, "endpoint": "/metrics", "http_response_code": "500"},
                        "0+100x90"),
                _series("bentoml_service_request_total", {**api, "endpoint": "/favicon.ico", "http_response_code": "404"},
                        "0+100x90"),
            ],  # fmt: skip
            "alert_rule_test": [_expect(mp, name, "85m", None) for name in sorted({
                a["alert"] for a in _burn_alerts(mp)})],  # fmt: skip
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
            "name": "SignflowNoTraffic: on its first day, traffic of the last 3 h stops",
            "interval": "5m",
            "input_series": [
                requests("200", f"0+{per_5m}x36 {per_5m * 36}+0x12"),  # 3 h of traffic, then 1 h of none
                _series("up", inst, "1+0x48"),
            ],
            "alert_rule_test": [_expect(mp, "SignflowNoTraffic", "3h15m", None),  # silent for < 15m: pending
                                _expect(mp, "SignflowNoTraffic", "3h45m", job_only)],  # fmt: skip
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
    """Every alert name once (burn-rate alerts have one rule per endpoint)."""
    return list(dict.fromkeys(alert["alert"] for alert in _alerts(mp)))
