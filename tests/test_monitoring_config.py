"""monitoring/ as code: promtool checks and rule unit tests, dashboard structure, generated files not
stale, Kubernetes and docker-compose files consistent with the rules; broken copies must be reported."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from signflow.config import apply_overrides, load_params
from signflow.monitoring import build, check
from signflow.monitoring.dashboards import build_dashboard, iter_queries
from signflow.monitoring.promql import referenced_metrics, substitute_variables
from signflow.monitoring.rules import JOB, alert_names, alert_tests

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing: make system-deps")


@pytest.fixture(scope="module")
def mp():
    return load_params(REPO / "params.yaml").monitoring


@pytest.fixture
def monitoring_copy(tmp_path: Path) -> Path:
    """A scratch copy of monitoring/ to break on purpose."""
    return Path(shutil.copytree(MONITORING, tmp_path / "monitoring"))


def _load_yaml_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


# --------------------------------------------------------------------------- generated files


def test_generated_files_are_up_to_date(mp) -> None:
    stale = build.stale_files(mp, MONITORING)
    assert not stale, f"stale generated files {stale}: run `python -m signflow.monitoring.build`"


def test_build_check_cli_flags_a_hand_edit_and_rebuild_restores(monitoring_copy: Path, capsys) -> None:
    alerts = monitoring_copy / "rules" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace("for: 10m", "for: 1h"), encoding="utf-8")
    argv = ["--params", str(REPO / "params.yaml"), "--out", str(monitoring_copy)]
    assert build.main([*argv, "--check"]) == 1
    out = capsys.readouterr().out
    assert "stale:" in out and "rules/alerts.yml" in out and "recording.yml" not in out
    assert build.main(argv) == 0
    assert build.main([*argv, "--check"]) == 0


def test_thresholds_come_from_params(mp) -> None:
    tuned = apply_overrides(
        load_params(REPO / "params.yaml"),
        ["monitoring.slos.predict_video.availability=0.999", "monitoring.slos.predict_frames.latency_s=5.0",
         "monitoring.drift_psi_threshold=0.4"],
    ).monitoring  # fmt: skip
    files = build.generated_files(tuned)
    alerts = yaml.safe_load(files[build.ALERTS])["groups"][0]["rules"]
    by_name = {(rule["alert"], rule["labels"].get("endpoint")): rule for rule in alerts}
    # 14.4x a 0.1 % budget over 1h and 5m, with the minimum-traffic guard
    fast = by_name[("SignflowErrorBudgetFastBurn", "/predict_video")]["expr"]
    assert 'ratio_rate1h{job="signflow", endpoint="/predict_video"} > 0.0144' in fast
    assert 'ratio_rate5m{job="signflow", endpoint="/predict_video"} > 0.0144' in fast
    assert f">= {tuned.slo_min_requests_1h}" in fast
    assert by_name[("SignflowPredictionDrift", None)]["expr"].endswith("> 0.4")
    recording = files[build.RECORDING]
    assert 'endpoint="/predict_frames", http_response_code=~"2..", le=~"5\\\\.0|5"' in recording
    # The burn-rate panels divide by the per-endpoint budget series the recording rules make.
    budgets = {(r["record"], r["labels"]["endpoint"]): r["expr"] for g in yaml.safe_load(recording)["groups"]
               for r in g["rules"] if r["record"].endswith(":budget")}  # fmt: skip
    assert budgets[("signflow:slo_errors:budget", "/predict_video")] == "vector(0.001)"
    dashboard = json.loads(files[build.DASHBOARD])
    burn = next(p for p in dashboard["panels"] if p["title"].startswith("SLO: error-budget burn"))
    assert any("group_left signflow:slo_errors:budget" in t["expr"] for t in burn["targets"])


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("  slos: {predict_video: {availability: 2, latency_s: 2.5, latency_target: 0.9}}", "availability"),
        ("  slos: {predict_video: {availability: 0.99, latency_s: 2.0, latency_target: 0.9}}", "bucket bound"),
        ("  slos: {predict_audio: {availability: 0.99, latency_s: 2.5, latency_target: 0.9}}", "predict_audio"),
    ],
)
def test_bad_params_fail_the_builder_with_one_line(tmp_path: Path, capsys, section: str, key: str) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(f"monitoring:\n{section}\n", encoding="utf-8")
    assert build.main(["--params", str(params), "--out", str(tmp_path / "m"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "monitoring.slos" in err and key in err


# --------------------------------------------------------------------------- promtool


@needs_promtool
def test_promtool_config_rules_and_unit_tests_pass() -> None:
    assert check.check_prometheus(MONITORING) == []


def test_every_alert_has_a_firing_and_a_silent_unit_test(mp) -> None:
    fired, silent = set(), set()
    for tests in alert_tests(mp).values():
        for case in tests["tests"]:
            for expectation in case["alert_rule_test"]:
                (fired if expectation["exp_alerts"] else silent).add(expectation["alertname"])
    assert fired == set(alert_names(mp)) == silent
    required = {
        "SignflowErrorBudgetFastBurn", "SignflowErrorBudgetSlowBurn", "SignflowLatencyBudgetFastBurn",
        "SignflowLatencyBudgetSlowBurn", "SignflowLowConfidenceSpike", "SignflowPredictionDrift", "SignflowNoTraffic",
        "SignflowServiceDown", "SignflowModelNotReady", "SignflowMetricsMissing", "SignflowTargetMissing",
    }  # fmt: skip
    assert required <= fired


def test_every_alert_links_its_runbook_and_the_runbook_exists(mp) -> None:
    runbooks = (REPO / "docs" / "runbooks.md").read_text(encoding="utf-8")
    anchors = {line.removeprefix("## ").strip().lower() for line in runbooks.splitlines() if line.startswith("## ")}
    for rule in yaml.safe_load((MONITORING / "rules" / "alerts.yml").read_text())["groups"][0]["rules"]:
        url = rule["annotations"]["runbook_url"]
        assert url == f"{mp.runbook_url}#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbooks.md has no section '## {rule['alert']}'"
    monitoring_doc = (REPO / "docs" / "monitoring.md").read_text(encoding="utf-8")
    for name in alert_names(mp):
        assert f"`{name}`" in monitoring_doc and f"runbooks.md#{name.lower()}" in monitoring_doc


@needs_promtool
def test_rule_with_a_syntax_error_is_reported(monitoring_copy: Path) -> None:
    alerts = monitoring_copy / "rules" / "alerts.yml"
    alerts.write_text(alerts.read_text().replace('up{job="signflow"} == 0', 'up{job="signflow"} == == 0'))
    problems = check.check_prometheus(monitoring_copy)
    assert problems, "a PromQL syntax error went unnoticed"
    assert any("alerts.yml" in p and "check rules" in p for p in problems)


@needs_promtool
@pytest.mark.slow  # a second full promtool run (~10 s)
def test_alert_that_cannot_fire_fails_its_unit_test(monitoring_copy: Path) -> None:
    # A ratio never exceeds 1 + threshold: the generated promtool tests must catch the silent alert.
    alerts = monitoring_copy / "rules" / "alerts.yml"
    text = alerts.read_text()
    rule = 'signflow:slo_errors:ratio_rate1h{job="signflow", endpoint="/predict_video"} > '
    assert rule in text
    alerts.write_text(text.replace(rule, rule + "1 + "))
    problems = check.run_rule_tests(monitoring_copy, ["rules/tests/alerts_test.yml"])
    assert any("test rules" in p and "SignflowErrorBudgetFastBurn" in p for p in problems)


@needs_promtool
def test_recording_rule_regression_fails_the_hand_written_test(monitoring_copy: Path) -> None:
    recording = monitoring_copy / "rules" / "recording.yml"
    recording.write_text(recording.read_text().replace("histogram_quantile(0.95", "histogram_quantile(0.9"))
    problems = check.run_rule_tests(monitoring_copy, ["rules/tests/recording_test.yml"])
    assert any("recording_test.yml" in p and "p95_5m" in p for p in problems)


# --------------------------------------------------------------------------- dashboards


def test_dashboards_are_valid() -> None:
    assert check.check_dashboards(MONITORING) == []


def test_dashboard_has_the_required_panels_each_with_queries(mp) -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "signflow.json").read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    for needle in ("Request rate", "Failed requests (5xx, 429)", "Client errors (4xx)", "Rejected requests by reason",
                   "Request latency p50 / p95 by endpoint", "Latency by stage", "Adaptive batch size", "In-flight",
                   "Predictions per gloss", "Least confident glosses", "confidence distribution", "drift", "Model",
                   "Firing alerts", "SLO: error-budget burn", "SLO: availability budget left", "Process CPU",
                   "Process memory", "Model service: /logits"):  # fmt: skip
        assert any(needle.lower() in t.lower() for t in titles), f"no panel about {needle!r}: {titles}"
    assert all(p["targets"] for p in dashboard["panels"] if p["type"] != "alertlist")
    stage_exprs = [t["expr"] for title, _, t in iter_queries(dashboard) if title.startswith("Latency by stage")]
    assert stage_exprs and all("by (endpoint, stage, le)" in e for e in stage_exprs)
    latency = [t["expr"] for title, _, t in iter_queries(dashboard) if title.startswith("Request latency")]
    assert latency and all('http_response_code=~"2.."' in e and "by (endpoint, le)" in e for e in latency)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["includeAll"] and variables["instance"]["multi"]
    assert all('instance=~"$instance"' in t["expr"] for title, _, t in iter_queries(dashboard)
               if not title.startswith("SLO:"))  # fmt: skip  (SLO recording rules are per job, not instance)
    health = next(p for p in dashboard["panels"] if p["title"] == "Service health")
    assert health["fieldConfig"]["defaults"]["thresholds"]["steps"][0] == {"color": "red", "value": None}
    deploys = dashboard["annotations"]["list"]
    assert [a["name"] for a in deploys] == ["Model deploys"] and "model_tag" in deploys[0]["expr"]


def test_grafana_typed_model_catches_a_malformed_panel(mp) -> None:
    dashboard = build_dashboard(mp)
    assert check.check_dashboard_model(dashboard) == []
    dashboard["panels"][3]["fieldconfig"] = dashboard["panels"][3].pop("fieldConfig")  # a misspelt key
    dashboard["panels"][4]["options"]["legendd"] = {"showLegend": True}  # no such option
    problems = check.check_dashboard_model(dashboard)
    assert any("panels[3].fieldconfig" in p for p in problems), problems
    assert any("panels[4].options.legendd" in p for p in problems), problems


def test_broken_dashboard_json_is_reported(monitoring_copy: Path) -> None:
    path = monitoring_copy / "grafana" / "dashboards" / "signflow.json"
    path.write_text(path.read_text()[:-40], encoding="utf-8")  # truncated, as by a bad merge
    problems = check.check_dashboards(monitoring_copy)
    assert len(problems) == 1 and "not valid JSON" in problems[0] and "signflow.json" in problems[0]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: d["panels"][0].update(targets=[]), "has no targets"),
        (lambda d: d["panels"][1]["targets"][0].update(expr=" "), "has no expression"),
        (lambda d: d["panels"][2].update(datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
         "hard-codes data source uid"),
        (lambda d: d["panels"][3]["targets"][0].update(expr='sum(up{job=~"$cluster"})'), "undefined variable $cluster"),
        (lambda d: d["templating"].update(list=[v for v in d["templating"]["list"] if v["type"] != "datasource"]),
         "no data source template variable"),
        (lambda d: d.update(panels=[]), "no panels"),
    ],
)  # fmt: skip
def test_dashboard_structure_problems_are_named(mp, breakage, message: str) -> None:
    dashboard = build_dashboard(mp)
    assert check.check_dashboard(dashboard, "d.json") == []
    breakage(dashboard)
    problems = check.check_dashboard(dashboard, "d.json")
    assert any(message in p for p in problems), problems


@needs_promtool
def test_check_cli_on_a_broken_copy_exits_1(monitoring_copy: Path, capsys) -> None:
    (monitoring_copy / "grafana" / "dashboards" / "signflow.json").write_text("{", encoding="utf-8")
    recording = monitoring_copy / "rules" / "recording.yml"
    recording.write_text(recording.read_text().replace("sum by (job)", "sum by job", 1), encoding="utf-8")
    assert check.main([str(monitoring_copy)]) == 1
    out = capsys.readouterr().out
    assert "not valid JSON" in out and "recording.yml" in out


# --------------------------------------------------------------------------- metric contract (static)


def _declared_service_metrics() -> dict[str, str]:
    """Family name -> type of every ``signflow_*`` metric constructed in serving/metrics.py.

    Read from the source (AST) rather than by calling the module: some metrics are created
    lazily (the drift gauge only once a window fills), and the live check is the e2e test's job.
    """
    tree = ast.parse((REPO / "serving" / "metrics.py").read_text(encoding="utf-8"))
    declared = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"Counter", "Gauge", "Histogram", "Summary"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("signflow_")
        ):
            name = str(node.args[0].value)
            # prometheus_client strips a counter's _total from the family name and adds it back on samples.
            family = name[: -len("_total")] if node.func.id == "Counter" and name.endswith("_total") else name
            declared[family] = node.func.id.lower()
    assert declared, "no signflow_* metrics found in serving/metrics.py"
    return declared


def _family(sample: str) -> str:
    for suffix in ("_bucket", "_count", "_sum", "_total", "_created"):
        if sample.endswith(suffix):
            return sample[: -len(suffix)]
    return sample


def _rule_groups() -> list[dict]:
    return [
        group
        for name in ("recording.yml", "alerts.yml")
        for group in yaml.safe_load((MONITORING / "rules" / name).read_text())["groups"]
    ]


def _undeclared(dashboard: dict, groups: list[dict], declared: dict[str, str]) -> list[str]:
    """``signflow_*`` sample names used by a rule or panel that no declared metric produces."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    used: dict[str, str] = {}
    for group in groups:
        for rule in group["rules"]:
            for name in referenced_metrics(rule["expr"]):
                used[name] = f"rule {rule.get('record') or rule.get('alert')}"
    for title, ref, target in iter_queries(dashboard):
        for name in referenced_metrics(target["expr"]):
            used[name] = f"panel {title!r} ({ref})"
    missing = []
    for name, where in sorted(used.items()):
        if not name.startswith("signflow_"):
            continue
        family = _family(name) if _family(name) in declared else name
        kind = declared.get(family)
        if kind is None or not any(name == family + s for s in suffixes.get(kind, ("",))):
            missing.append(f"{name} ({where})")
    return missing


def test_every_signflow_metric_in_rules_and_panels_is_declared_by_the_service(mp) -> None:
    missing = _undeclared(build_dashboard(mp), _rule_groups(), _declared_service_metrics())
    assert not missing, f"metrics the service does not declare: {missing}"


def test_an_undeclared_metric_is_named_with_its_panel(mp) -> None:
    dashboard = build_dashboard(mp)
    dashboard["panels"][0]["targets"].append({"refId": "Z", "expr": "rate(signflow_gpu_seconds_total[5m])"})
    # A counter queried without _total is as broken as a missing one.
    dashboard["panels"][1]["targets"].append({"refId": "Y", "expr": "rate(signflow_predictions[5m])"})
    missing = _undeclared(dashboard, _rule_groups(), _declared_service_metrics())
    assert missing == [
        f"signflow_gpu_seconds_total (panel {dashboard['panels'][0]['title']!r} (Z))",
        f"signflow_predictions (panel {dashboard['panels'][1]['title']!r} (Y))",
    ]


# --------------------------------------------------------------------------- Kubernetes / compose consistency


def test_prometheus_rule_matches_the_rule_files() -> None:
    docs = {doc["kind"]: doc for doc in _load_yaml_docs(MONITORING / "k8s" / "prometheusrule.yaml")}
    groups = (
        yaml.safe_load((MONITORING / "rules" / "recording.yml").read_text())["groups"]
        + yaml.safe_load((MONITORING / "rules" / "alerts.yml").read_text())["groups"]
    )
    assert docs["PrometheusRule"]["apiVersion"] == "monitoring.coreos.com/v1"
    assert docs["PrometheusRule"]["spec"]["groups"] == groups


def test_k8s_manifests_select_each_other_and_name_the_job() -> None:
    docs = {doc["kind"]: doc for doc in _load_yaml_docs(MONITORING / "k8s" / "signflow.yaml")}
    deployment, service, monitor = docs["Deployment"], docs["Service"], docs["ServiceMonitor"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # prometheus-operator names the job after the Service: the rules select job="signflow".
    assert service["metadata"]["name"] == JOB
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"
    assert service_ports[endpoint["port"]]["targetPort"] in container_ports
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    kustomization = yaml.safe_load((MONITORING / "k8s" / "kustomization.yaml").read_text())
    assert all((MONITORING / "k8s" / r).is_file() for r in kustomization["resources"])


def test_compose_prometheus_and_grafana_files_fit_together() -> None:
    compose = yaml.safe_load((MONITORING / "docker-compose.yml").read_text())["services"]
    prom = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    target_host, target_port = jobs[JOB]["static_configs"][0]["targets"][0].split(":")
    assert target_host in compose and f"{target_port}:{target_port}" in compose[target_host]["ports"]
    for rule_file in prom["rule_files"]:
        assert (MONITORING / rule_file).is_file(), rule_file
    # Every bind mount exists, and Prometheus sees the rule files where prometheus.yml says.
    mounts = {}
    for service in compose.values():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (MONITORING / source).exists(), source
                mounts[target] = source
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == "./rules"
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    url = urlparse(datasource["datasources"][0]["url"])
    assert url.hostname in compose and f"{url.port}:{url.port}" in compose[url.hostname]["ports"]
    providers = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    dashboards_path = providers["providers"][0]["options"]["path"]
    assert mounts[dashboards_path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = compose["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (MONITORING / "grafana" / "dashboards" / Path(home).name).is_file()


# --------------------------------------------------------------------------- PromQL helpers


def test_referenced_metrics_finds_samples_not_recording_rules() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(signflow_stage_latency_seconds_bucket{job="$job"}[5m])))'
        " / signflow:predictions:rate15m + bentoml_service_request_total"
    )
    assert referenced_metrics(expr) == {"signflow_stage_latency_seconds_bucket", "bentoml_service_request_total"}


def test_substitute_variables_like_grafana() -> None:
    values = {"job": "signflow", "__rate_interval": "1m"}
    assert (
        substitute_variables('rate(x{job="$job"}[$__rate_interval]) + y{job="${job}"}', values)
        == 'rate(x{job="signflow"}[1m]) + y{job="signflow"}'
    )
    with pytest.raises(KeyError, match="cluster"):
        substitute_variables('up{cluster="$cluster"}', values)
