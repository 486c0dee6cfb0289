"""End to end: the real ``bentoml serve`` scraped by a real Prometheus on 127.0.0.1.

Real traffic (good and bad requests) goes to the service; then EVERY query of EVERY dashboard
panel and every recording rule is evaluated through Prometheus' HTTP API and must return data,
and every metric a panel or rule names must appear in the service's live ``/metrics``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from served import bentoml_serve, free_port, process_group, wait_until
from signflow import video
from signflow.config import load_params
from signflow.monitoring.dashboards import build_dashboard, iter_queries
from signflow.monitoring.promql import referenced_metrics, substitute_variables
from signflow.monitoring.rules import JOB

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"
PROMETHEUS = shutil.which("prometheus")
DRIFT_WINDOW = 10
GOOD_FRAMES = 12  # /predict_frames clips; with the videos, more predictions than the drift window
# Grafana's variables as a user would have them: the job picked, 1 s scrapes -> a short rate window.
GRAFANA_VALUES = {"job": JOB, "instance": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "10m", "datasource": ""}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: make system-deps"),
    pytest.mark.timeout(300),
]


@contextlib.contextmanager
def run_prometheus(folder: Path, target: str, *, alert_for: str | None = None) -> Iterator[str]:
    """Prometheus with monitoring/prometheus.yml, only the target, intervals and storage changed.

    ``alert_for`` replaces every alert's ``for`` duration (in a copy of the rules), so an alert can
    fire within a test's minutes; the promtool tests check the real durations.
    """
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config["rule_files"] = [str(MONITORING / rule_file) for rule_file in config["rule_files"]]
    if alert_for is not None:
        config["rule_files"] = [str(_with_alert_for(Path(path), folder, alert_for)) for path in config["rule_files"]]
    job = next(job for job in config["scrape_configs"] if job["job_name"] == JOB)
    job["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [job]  # no node-exporter here
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    cmd = [PROMETHEUS, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with process_group(cmd, cwd=folder, env=dict(os.environ), log=log) as process:
        wait_until(lambda: requests.get(f"{url}/-/ready", timeout=2).status_code == 200, 30, "Prometheus ready",
                   process=process, log=log)  # fmt: skip
        yield url


def _with_alert_for(rule_file: Path, folder: Path, duration: str) -> Path:
    rules = yaml.safe_load(rule_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = duration
    copy = folder / rule_file.name
    copy.write_text(yaml.safe_dump(rules))
    return copy


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    response = requests.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected {expr!r}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def send_traffic(url: str, folder: Path) -> dict[str, int]:
    """Good clips (frames JSON, concurrently so the batcher merges some; a real mp4) and bad requests."""
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, size=(12, 32, 32, 3)).tolist() for _ in range(GOOD_FRAMES)]
    good_video = folder / "clip.mp4"
    video.write_video(good_video, rng.integers(0, 256, size=(16, 48, 64, 3), dtype=np.uint8), 25.0)

    def frames(clip: list) -> int:
        return requests.post(f"{url}/predict_frames", json={"frames": clip}, timeout=60).status_code

    def upload(name: str, data: bytes, content_type: str) -> int:
        files = {"video": (name, data, content_type)}
        return requests.post(f"{url}/predict_video", files=files, timeout=60).status_code

    def bad_requests() -> list[int]:
        return [
            upload("notes.txt", b"not a video at all", "text/plain"),
            upload("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(512), "video/mp4"),
            requests.post(f"{url}/predict_frames", json={"frames": [[1, 2], [3, 4]]}, timeout=30).status_code,
        ]

    # A labelled series appears at its first increment, and rate() cannot see the increase that
    # created it (the service pre-creates its own per-gloss/per-stage series; rejection reasons and
    # BentoML's batch-size histogram appear on first use): a first wave of bad requests and one good
    # clip, scraped, makes the second wave's rise visible, as steady production traffic would.
    bad = bad_requests()
    warm_up = [frames(clips[0]), upload("clip.mp4", good_video.read_bytes(), "video/mp4")]
    time.sleep(2.5)  # > 2 scrape intervals
    with ThreadPoolExecutor(4) as pool:
        good = list(pool.map(frames, clips))
    good.append(upload("clip.mp4", good_video.read_bytes(), "video/mp4"))
    bad += bad_requests()
    good += warm_up
    assert all(code == 200 for code in good), good
    assert all(400 <= code < 500 for code in bad), bad
    return {"good": len(good), "bad": len(bad)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("monitoring-e2e")
    with bentoml_serve(folder / "serve", {}, monitoring={"drift_window": DRIFT_WINDOW}, drift=True) as served:
        target = urlparse(served.url).netloc
        with run_prometheus(folder / "prometheus", target) as prom:
            # A scrape before the traffic, so rate() sees the counters rise.
            wait_until(lambda: [s["value"][1] for s in query(prom, f'up{{job="{JOB}"}}')] == ["1"], 30, "first scrape")
            sent = send_traffic(served.url, folder)
            # Every request scraped: predictions and rejections visible, then two more scrapes for rate().
            wait_until(
                lambda: _finite(query(prom, f'sum(signflow_predictions_total{{job="{JOB}"}}) >= {sent["good"]}'))
                and _finite(query(prom, f'sum(signflow_rejected_requests_total{{job="{JOB}"}}) >= {sent["bad"]}')),
                30,
                "traffic scraped",
            )
            time.sleep(3)
            live = requests.get(f"{served.url}/metrics", timeout=10).text
            yield {"prom": prom, "served": served, "metrics": live, "sent": sent}


def empty_panel_queries(prom: str, dashboard: dict[str, Any]) -> list[str]:
    """One line per panel query that Prometheus answers with no (finite) data, naming the panel."""
    failures = []
    for title, ref, target in iter_queries(dashboard):
        expr = substitute_variables(target["expr"], GRAFANA_VALUES)
        try:
            result = query(prom, expr)
        except AssertionError as error:
            failures.append(f"panel {title!r} query {ref}: {error}")
            continue
        if not _finite(result):
            failures.append(f"panel {title!r} query {ref} returned no data: {expr}")
    return failures


def test_every_dashboard_panel_query_returns_data(stack: dict[str, Any]) -> None:
    dashboard = build_dashboard(load_params(REPO / "params.yaml").monitoring)
    queries = list(iter_queries(dashboard))
    assert len(queries) >= 15
    failures = empty_panel_queries(stack["prom"], dashboard)
    assert not failures, "\n".join(failures)


def test_a_panel_on_a_metric_the_service_lacks_fails_naming_the_panel(stack: dict[str, Any]) -> None:
    dashboard = build_dashboard(load_params(REPO / "params.yaml").monitoring)
    missing = {"refId": "A", "expr": 'max(signflow_gpu_memory_bytes{job="$job"})'}
    dashboard["panels"].append({"id": 999, "title": "GPU memory", "targets": [missing]})
    failures = empty_panel_queries(stack["prom"], dashboard)
    assert len(failures) == 1 and "panel 'GPU memory' query A returned no data" in failures[0], failures


def test_every_metric_in_panels_and_rules_is_exported_live(stack: dict[str, Any]) -> None:
    exported = {sample.name for family in text_string_to_metric_families(stack["metrics"]) for sample in family.samples}
    used: dict[str, str] = {}
    for title, ref, target in iter_queries(build_dashboard(load_params(REPO / "params.yaml").monitoring)):
        for name in referenced_metrics(target["expr"]):
            used.setdefault(name, f"panel {title!r} ({ref})")
    for rule_file in ("recording.yml", "alerts.yml"):
        for group in yaml.safe_load((MONITORING / "rules" / rule_file).read_text())["groups"]:
            for rule in group["rules"]:
                for name in referenced_metrics(rule["expr"]):
                    used.setdefault(name, f"rule {rule.get('record') or rule.get('alert')}")
    missing = [f"{name} (used by {where})" for name, where in sorted(used.items()) if name not in exported]
    assert not missing, "metrics not exported by the live service:\n" + "\n".join(missing)


def test_every_recording_rule_produces_data(stack: dict[str, Any]) -> None:
    records = [
        rule["record"]
        for group in yaml.safe_load((MONITORING / "rules" / "recording.yml").read_text())["groups"]
        for rule in group["rules"]
    ]
    empty = [record for record in records if not _finite(query(stack["prom"], record))]
    assert not empty, f"recording rules without data (label or metric mismatch with the service?): {empty}"
    # Internal /logits calls to the model service are not client traffic.
    endpoints = {s["metric"]["endpoint"] for s in query(stack["prom"], "signflow:api_requests:rate5m")}
    assert {"/predict_frames", "/predict_video"} <= endpoints and "/logits" not in endpoints, endpoints
    assert endpoints <= {"/predict_frames", "/predict_video", "/predict_landmarks"}, endpoints
    rejected = query(stack["prom"], "signflow:rejected_requests:ratio_rate5m")
    assert 0 < float(rejected[0]["value"][1]) < 1


def test_alerts_evaluate_on_live_series(stack: dict[str, Any]) -> None:
    prom = stack["prom"]
    rules = requests.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert health and all(value == "ok" for value in health.values()), health
    # A random-init model against a random reference drifts: the alert is pending (for: 30m).
    wait_until(lambda: query(prom, 'ALERTS{alertname="SignflowPredictionDrift"}'), 15, "drift alert pending")
    # The service is up and its model ready: those alerts stay quiet.
    assert not query(prom, 'ALERTS{alertname=~"SignflowServiceDown|SignflowModelNotReady"}')


# ----------------------------------------------------------------------------- alerts firing for real


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service with a 1 s request timeout (a slow upload becomes a real 504) and its own metrics
    folder at a known place; Prometheus with the project's rules, every ``for`` set to 0 s."""
    folder = tmp_path_factory.mktemp("alerting")
    metrics_dir = folder / "metrics"
    serve = {"request_timeout_s": 1.0, "max_frames": 100_000, "max_duration_s": 3600.0, "max_upload_mb": 20.0}
    with bentoml_serve(folder / "serve", serve, extra_env={"SIGNFLOW_METRICS_DIR": str(metrics_dir)}) as served:
        with run_prometheus(folder / "prometheus", urlparse(served.url).netloc, alert_for="0s") as prom:
            wait_until(lambda: [s["value"][1] for s in query(prom, f'up{{job="{JOB}"}}')] == ["1"], 30, "first scrape")
            yield {"prom": prom, "served": served, "metrics_dir": metrics_dir, "folder": folder}


def firing(prom: str, alertname: str, **labels: str) -> list[dict[str, Any]]:
    matchers = "".join(f', {key}="{value}"' for key, value in labels.items())
    return query(prom, f'ALERTS{{alertname="{alertname}", alertstate="firing"{matchers}}}')


def test_server_errors_fire_the_burn_rate_alert_and_recovery_clears_it(alerting: dict[str, Any]) -> None:
    """Real 5xx (uploads that outlive the request timeout: 504) burn the /predict_video error budget
    past the fast-burn rate in both windows: the page fires. Good traffic then brings both windows
    under the threshold: it clears. No other endpoint's alert fires."""
    import subprocess

    prom, url = alerting["prom"], alerting["served"].url
    slow = alerting["folder"] / "slow.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=gray:size=1920x1080:rate=30",
                    "-frames:v", "3000", "-c:v", "libx264", "-preset", "ultrafast", "-f", "h264", str(slow)],
                   check=True)  # fmt: skip
    good = alerting["folder"] / "good.mp4"
    video.write_video(good, np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), 25.0)

    def upload(path: Path) -> int:
        files = {"video": (path.name, path.read_bytes(), "video/mp4")}
        return requests.post(f"{url}/predict_video", files=files, timeout=60).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(upload, [slow] * 36 + [good] * 4))
    assert codes.count(504) == 36 and codes.count(200) == 4, codes
    wait_until(lambda: firing(prom, "SignflowErrorBudgetFastBurn", endpoint="/predict_video"), 60, "fast burn fires")
    assert not firing(prom, "SignflowErrorBudgetFastBurn", endpoint="/predict_frames")
    assert not firing(prom, "SignflowLatencyBudgetFastBurn")

    # Recovery: 36 errors among > 36 / 0.072 = 500 requests is under the fast-burn error ratio.
    with ThreadPoolExecutor(4) as pool:
        recovered = list(pool.map(upload, [good] * 560))
    assert recovered == [200] * 560
    wait_until(lambda: not firing(prom, "SignflowErrorBudgetFastBurn"), 60, "fast burn clears")


def test_a_server_sharing_bentoml_home_keeps_the_metrics_and_wiped_metrics_fire_an_alert(
    alerting: dict[str, Any],
) -> None:
    """The failure found: BentoML wipes $BENTOML_HOME/prometheus_multiproc_dir when any server starts,
    and a second server emptied the first one's /metrics (200, 0 bytes, up == 1, no alert)."""
    prom, served = alerting["prom"], alerting["served"]
    # 1. A plain `bentoml serve` sharing BENTOML_HOME no longer touches this server's metrics folder.
    second_log = alerting["folder"] / "second.log"
    cmd = [str(Path(sys.executable).parent / "bentoml"), "serve", "serving.service:Signflow", "--host", "127.0.0.1",
           "--port", str(free_port())]  # fmt: skip
    with process_group(cmd, cwd=REPO, env=served.env, log=second_log) as second:
        wait_until(lambda: "Starting production" in second_log.read_text() or "Uvicorn running" in second_log.read_text()
                   or "warm-up done" in second_log.read_text(), 120, "second server started", process=second,
                   log=second_log)  # fmt: skip
        assert (Path(served.env["BENTOML_HOME"]) / "prometheus_multiproc_dir").is_dir()  # the one BentoML wipes
    assert "signflow_model_ready" in requests.get(f"{served.url}/metrics", timeout=10).text
    time.sleep(3)
    assert not query(prom, 'ALERTS{alertname="SignflowMetricsMissing"}')

    # 2. Metrics emptied under a running server (what a shared folder did): the scrape still
    # succeeds with 0 samples, and the alert fires.
    for file in alerting["metrics_dir"].glob("*.db"):
        file.unlink()
    assert requests.get(f"{served.url}/metrics", timeout=10).text.strip() == ""
    assert [s["value"][1] for s in query(prom, f'up{{job="{JOB}"}}')] == ["1"]
    wait_until(lambda: firing(prom, "SignflowMetricsMissing"), 30, "SignflowMetricsMissing fires")
