"""``pipelines.submit`` against a loopback stand-in of the KFP v2beta1 REST API.

The stand-in is a real HTTP server (``http.server`` in a thread) answering the calls
``kfp.Client`` makes to submit a run: ``GET healthz``, ``GET experiments`` (find by name),
``POST experiments``, ``POST runs``. It records each request's method, path, query, headers and
JSON body, and, like the real multi-user API, refuses an experiment without a namespace.
The tests check what goes on the wire: the auth header or cookie, the namespace, the run's
parameters, for single-user, multi-user, in-cluster service-account token and explicit token.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback import QuietJsonHandler

from pipelines import connect, submit

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipelines" / "signflow_pipeline.yaml"
API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKfp:
    """What the stand-in answers and what it received."""

    multi_user: bool = False
    required_token: str | None = None  # answer 401 unless "Authorization: Bearer <this>"
    login_cookie: str | None = None  # like oauth2-proxy/Dex: redirect to a login page unless this cookie
    requests: list[Request] = field(default_factory=list)
    experiments: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def calls(self, method: str, suffix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == API + suffix]


def _handler(state: FakeKfp) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietJsonHandler):

        def _record(self, method: str) -> Request:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            request = Request(
                method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()},
                json.loads(raw) if raw else None,
            )
            state.requests.append(request)
            return request

        def _authorised(self, request: Request) -> bool:
            if state.login_cookie is not None and request.headers.get("cookie") != state.login_cookie:
                self.send_response(302)
                self.send_header("Location", "/dex/auth?client_id=kubeflow-oidc-authservice")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            if state.required_token is None:
                return True
            if request.headers.get("authorization") == f"Bearer {state.required_token}":
                return True
            self._reply(401, {"error": "unauthenticated", "code": 16})
            return False

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            request = self._record("GET")
            if not self._authorised(request):
                return
            if request.path == f"{API}/healthz":
                self._reply(200, {"multi_user": state.multi_user})
            elif request.path == f"{API}/experiments":
                namespace = request.query.get("namespace", [""])[0]
                if state.multi_user and not namespace:
                    self._reply(400, {"error": "Invalid input error: In multi-user mode, namespace is required"})
                    return
                wanted = json.loads(request.query.get("filter", ["{}"])[0]).get("predicates", [{}])[0]
                found = [e for e in state.experiments if e["display_name"] == wanted.get("string_value",
                         wanted.get("stringValue")) and e.get("namespace", "") == namespace]
                self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
            else:
                self._reply(404, {"error": f"no route {request.path}"})

        def do_POST(self) -> None:  # noqa: N802
            request = self._record("POST")
            if not self._authorised(request):
                return
            if request.path == f"{API}/experiments":
                if state.multi_user and not request.body.get("namespace"):
                    self._reply(400, {"error": "Invalid input error: In multi-user mode, namespace is required"})
                    return
                experiment = {**request.body, "experiment_id": f"exp-{len(state.experiments) + 1}"}
                state.experiments.append(experiment)
                self._reply(200, experiment)
            elif request.path == f"{API}/runs":
                self._reply(200, {**request.body, "run_id": "run-1", "state": "PENDING"})
            else:
                self._reply(404, {"error": f"no route {request.path}"})

    return Handler


@pytest.fixture
def kfp_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKfp]:
    # kfp.Client reads ~/.config/kfp/context.json and these variables: keep the developer's out.
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_SA_TOKEN_PATH", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _submit(kfp_api: FakeKfp, *extra: str) -> int:
    return submit.main(["--experiment", "signflow", "--package", str(PACKAGE), *extra])


def _run(kfp_api: FakeKfp) -> Request:
    (run,) = kfp_api.calls("POST", "/runs")
    return run


def test_single_user_no_auth_sends_parameters_and_no_credentials(kfp_api: FakeKfp) -> None:
    # The README's example: the pipeline name of a key works as well as its dotted params key.
    code = _submit(kfp_api, "--host", kfp_api.url, "--no-auth", "-p", "train.epochs=50", "-p", "train__lr=0.001",
                   "-p", "train_gpus=4", "--run-name", "r1", "--no-cache")
    assert code == 0
    assert all("authorization" not in r.headers and "cookie" not in r.headers for r in kfp_api.requests)
    (experiment,) = kfp_api.calls("POST", "/experiments")
    assert experiment.body["display_name"] == "signflow" and not experiment.body.get("namespace")
    run = _run(kfp_api)
    assert run.body["experiment_id"] == "exp-1" and run.body["display_name"] == "r1"
    assert run.body["runtime_config"]["parameters"] == {"train__epochs": 50, "train__lr": 0.001, "train_gpus": 4}
    spec = run.body["pipeline_spec"]["pipeline_spec"]  # the compiled package, sent inline
    assert spec["pipelineInfo"]["name"] == "signflow"
    tasks = spec["root"]["dag"]["tasks"]
    assert all(not task["cachingOptions"].get("enableCache") for task in tasks.values())  # --no-cache


def test_explicit_token_is_a_bearer_header_on_every_request(kfp_api: FakeKfp, tmp_path: Path) -> None:
    kfp_api.required_token = "s3cr3t-token"
    token_file = tmp_path / "token"
    token_file.write_text("s3cr3t-token\n", encoding="utf-8")
    assert _submit(kfp_api, "--host", kfp_api.url, "--token-file", str(token_file)) == 0
    assert kfp_api.requests and all(r.headers["authorization"] == "Bearer s3cr3t-token" for r in kfp_api.requests)
    assert _run(kfp_api).body["runtime_config"].get("parameters", {}) == {}
    kfp_api.requests.clear()
    assert _submit(kfp_api, "--host", kfp_api.url, "--token", "Bearer s3cr3t-token") == 0  # pasted header value
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer s3cr3t-token"}


def test_wrong_token_is_a_clear_401(kfp_api: FakeKfp, capsys: pytest.CaptureFixture[str]) -> None:
    kfp_api.required_token = "right"
    assert _submit(kfp_api, "--host", kfp_api.url, "--token", "wrong", "--namespace", "team-ml") == 2
    error = capsys.readouterr().err
    assert "answered 401" in error and "--token" in error
    assert len(kfp_api.requests) == 1  # one healthz probe, not kfp's five retries 5 s apart
    assert not kfp_api.calls("POST", "/runs")


def test_login_redirect_asks_for_a_cookie(kfp_api: FakeKfp, capsys: pytest.CaptureFixture[str]) -> None:
    kfp_api.login_cookie = "authservice_session=good"
    assert _submit(kfp_api, "--host", kfp_api.url, "--no-auth") == 2
    assert "redirects to /dex/auth" in capsys.readouterr().err
    assert _submit(kfp_api, "--host", kfp_api.url, "--cookie", "authservice_session=good") == 0


def test_multi_user_requires_a_namespace_and_sends_it(
    kfp_api: FakeKfp, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kfp_api.multi_user = True
    cookie = "authservice_session=MTcwMDAwMDAwMHxabc"
    assert _submit(kfp_api, "--host", kfp_api.url, "--cookie", cookie) == 2
    error = capsys.readouterr().err
    assert "multi-user" in error and "--namespace" in error
    assert not kfp_api.calls("POST", "/experiments") and not kfp_api.calls("POST", "/runs")

    kfp_api.requests.clear()
    assert _submit(kfp_api, "--host", kfp_api.url, "--cookie", cookie, "--namespace", "kubeflow-user-example-com") == 0
    assert all(r.headers["cookie"] == cookie for r in kfp_api.requests)
    (lookup,) = kfp_api.calls("GET", "/experiments")
    assert lookup.query["namespace"] == ["kubeflow-user-example-com"]
    (experiment,) = kfp_api.calls("POST", "/experiments")
    assert experiment.body["namespace"] == "kubeflow-user-example-com"
    assert _run(kfp_api).body["experiment_id"] == "exp-1"

    # A second run finds the experiment in that namespace instead of creating another.
    kfp_api.requests.clear()
    assert _submit(kfp_api, "--host", kfp_api.url, "--cookie", cookie, "--namespace", "kubeflow-user-example-com") == 0
    assert not kfp_api.calls("POST", "/experiments") and _run(kfp_api).body["experiment_id"] == "exp-1"


def test_in_cluster_service_account_token_without_host(
    kfp_api: FakeKfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a pod: no --host, no auth option; the projected token is sent and re-read per request."""
    token = tmp_path / "token"
    token.write_text("projected-1", encoding="utf-8")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    # The in-cluster service name does not resolve here: the endpoint variable points at the stand-in.
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", kfp_api.url)
    kfp_api.multi_user = True
    kfp_api.required_token = "projected-1"
    assert _submit(kfp_api, "--namespace", "team-ml") == 0
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer projected-1"}
    assert kfp_api.calls("POST", "/experiments")[0].body["namespace"] == "team-ml"

    # kubelet rotates the token file: the next request carries the new one.
    token.write_text("projected-2", encoding="utf-8")
    kfp_api.required_token = "projected-2"
    kfp_api.requests.clear()
    assert _submit(kfp_api, "--namespace", "team-ml", "--sa-token", str(token)) == 0
    assert {r.headers["authorization"] for r in kfp_api.requests} == {"Bearer projected-2"}


def test_in_cluster_defaults_host_to_the_service_and_namespace_to_the_pods(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    import argparse

    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    parser = argparse.ArgumentParser()
    connect.add_arguments(parser)
    sa = tmp_path / "token"
    sa.write_text("t", encoding="utf-8")
    connection = connect.resolve(parser.parse_args(["--sa-token", str(sa)]), environ={"KUBERNETES_SERVICE_HOST": "x"})
    assert connection.host == connect.IN_CLUSTER_HOST and connection.auth == "sa-token"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--no-auth"], {}, "no --host"),
        (["--host", "kubeflow.example.com", "--no-auth"], {}, "expected http(s)://"),
        (["--host", "http://h"], {}, "choose how to authenticate"),
        (["--host", "http://h", "--token", "two words"], {}, "one word"),
        (["--host", "http://h", "--token-file", "/nonexistent/token"], {}, "cannot read it"),
        (["--host", "http://h", "--cookie", "MTcwMDAw"], {}, "expected NAME=VALUE"),
        (["--host", "http://h", "--sa-token", "/nonexistent/sa"], {}, "--sa-token /nonexistent/sa"),
        (["--host", "http://h", "--no-auth", "--namespace", "Team_ML"], {}, "not a Kubernetes namespace"),
    ],
)
def test_connection_options_fail_with_a_clear_message(argv: list[str], environ: dict[str, str], message: str) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    connect.add_arguments(parser)
    with pytest.raises(connect.ConnectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        connect.resolve(parser.parse_args(argv), environ={"KF_PIPELINES_SA_TOKEN_PATH": "/nonexistent/sa", **environ})


def test_gpu_count_override_is_checked() -> None:
    with pytest.raises(submit.ParamsError, match="train_gpus is a count"):
        submit.build_arguments(PACKAGE, ["train_gpus=two"])
    assert submit.build_arguments(PACKAGE, ["evaluate_gpus=0"]) == {"evaluate_gpus": 0}


def test_auth_options_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        submit.main(["--experiment", "x", "--host", "http://h", "--token", "a", "--no-auth"])
    assert "not allowed with argument" in capsys.readouterr().err
