"""Digest pinning against a loopback stand-in of an OCI registry (token auth like ghcr.io / Docker Hub).

The stand-in is a real HTTP server: ``HEAD /v2/<name>/manifests/<tag>`` answers 401 with a Bearer
challenge until the client brings the token that ``GET /token`` hands out, then the tag's
``Docker-Content-Digest``. "Pushing" a new build changes the digest it serves.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from loopback import QuietJsonHandler

from pipelines import PipelineError, images, submit
from pipelines import compile as compile_cli

REPO = Path(__file__).resolve().parents[1]
TOKEN = "pull-token-1"


@dataclass
class FakeRegistry:
    tags: dict[str, str] = field(default_factory=dict)  # "name:tag" -> digest
    host: str = ""
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    manifest_auth: list[str | None] = field(default_factory=list)

    def push(self, repository: str, tag: str, content: str) -> str:
        digest = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
        self.tags[f"{repository}:{tag}"] = digest
        return digest


def _handler(state: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietJsonHandler):
        def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path == "/token":
                state.token_requests.append(parse_qs(parts.query))
                self._send(200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode())
            else:
                self._send(404, {})

        def do_HEAD(self) -> None:  # noqa: N802
            path = urlsplit(self.path).path
            if not path.startswith("/v2/") or "/manifests/" not in path:
                self._send(404, {})
                return
            repository, tag = path[len("/v2/"):].split("/manifests/")
            state.manifest_auth.append(self.headers.get("Authorization"))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                challenge = (f'Bearer realm="http://{state.host}/token",service="fake-registry",'
                             f'scope="repository:{repository}:pull"')
                self._send(401, {"WWW-Authenticate": challenge})
                return
            digest = state.tags.get(f"{repository}:{tag}")
            if digest is None:
                self._send(404, {})
                return
            assert "application/vnd.oci.image.index.v1+json" in self.headers.get("Accept", "")
            self._send(200, {"Docker-Content-Digest": digest, "Content-Type": "application/vnd.oci.image.index.v1+json"})

    return Handler


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    state = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.host = f"127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def test_parse_fills_in_docker_hub_defaults() -> None:
    assert images.parse("python:3.11").registry == images.DOCKER_HUB
    assert images.parse("python:3.11").repository == "library/python"
    assert images.parse("ghcr.io/signflow/signflow:0.1.0").repository == "signflow/signflow"
    assert images.parse("localhost:5000/signflow:1").registry == "localhost:5000"
    with pytest.raises(PipelineError, match="no tag"):
        images.parse("ghcr.io/signflow/signflow")
    with pytest.raises(PipelineError, match="already pinned"):
        images.parse("ghcr.io/signflow/signflow:1@sha256:" + "0" * 64)


def test_tag_resolves_to_the_digest_through_token_auth(registry: FakeRegistry) -> None:
    digest = registry.push("signflow/signflow", "0.1.0-cu130", "build 1")
    image = f"{registry.host}/signflow/signflow:0.1.0-cu130"
    assert images.pin(image, environ={}) == f"{image}@{digest}"
    assert registry.manifest_auth == [None, f"Bearer {TOKEN}"]  # challenge, then the token
    (token_request,) = registry.token_requests
    assert token_request == {"scope": ["repository:signflow/signflow:pull"], "service": ["fake-registry"]}


def test_unknown_tag_and_unreachable_registry_are_clear_errors(registry: FakeRegistry) -> None:
    with pytest.raises(PipelineError, match="has no tag 'nope' \\(push it first\\)"):
        images.resolve_digest(f"{registry.host}/signflow/signflow:nope", environ={})
    with pytest.raises(PipelineError, match="cannot reach 127.0.0.1:9"):
        images.resolve_digest("127.0.0.1:9/signflow/signflow:1", environ={}, timeout_s=5)


def test_pinned_compile_is_deterministic_and_follows_a_new_push(registry: FakeRegistry, tmp_path: Path) -> None:
    image = f"{registry.host}/signflow/signflow:0.1.0-cu130"
    first = registry.push("signflow/signflow", "0.1.0-cu130", "build 1")
    outputs = []
    for name in ("a.yaml", "b.yaml"):
        out = compile_cli.compile_pipeline(tmp_path / name, params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml",
                                           image=image, pin_digest=True, stage_names=["download", "split"])
        outputs.append(out.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]  # same digest, byte-identical package
    spec = yaml.safe_load(outputs[0].split("\n---\n")[0])
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {f"{image}@{first}"}

    # Same tag, new code: a new digest, so a new image string and new kfp cache keys.
    second = registry.push("signflow/signflow", "0.1.0-cu130", "build 2")
    out = compile_cli.compile_pipeline(tmp_path / "c.yaml", params_path=REPO / "params.yaml", dvc_path=REPO / "dvc.yaml",
                                       image=image, pin_digest=True, stage_names=["download", "split"])
    assert f"{image}@{second}" in out.read_text(encoding="utf-8") and second != first


def test_submit_pins_the_package_images(registry: FakeRegistry, tmp_path: Path) -> None:
    image = f"{registry.host}/signflow/signflow:0.2.0"
    digest = registry.push("signflow/signflow", "0.2.0", "build")
    package = compile_cli.compile_pipeline(tmp_path / "p.yaml", params_path=REPO / "params.yaml",
                                           dvc_path=REPO / "dvc.yaml", image=image, stage_names=["download"])
    pinned = submit.pin_package(package)
    documents = list(yaml.safe_load_all(pinned.read_text(encoding="utf-8")))
    (executor,) = documents[0]["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == f"{image}@{digest}"
    assert image in package.read_text(encoding="utf-8") and "@sha256" not in package.read_text(encoding="utf-8")
