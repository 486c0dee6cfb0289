"""Connect to a Kubeflow Pipelines API: host, authentication and namespace, chosen explicitly and checked.

``kfp.Client`` on its own only sends the in-cluster service-account token when ``host`` is None,
has no cookie login for a Dex/oauth2-proxy front, and in a multi-user install creates an
experiment with an empty namespace when none is given. This module makes each choice visible:

==================================  ===============================================================
option                              sends
==================================  ===============================================================
``--token T`` / ``--token-file F``  ``Authorization: Bearer T`` (e.g. ``kubectl create token``)
``--cookie authservice_session=V``  ``Cookie: authservice_session=V`` (Dex/OIDC session, copied
                                    from the browser after logging in to the central dashboard)
``--sa-token [PATH]``               ``Authorization: Bearer <PATH's content>``, re-read on every
                                    request (the projected token kubelet rotates); default path
                                    ``$KF_PIPELINES_SA_TOKEN_PATH`` or :data:`SA_TOKEN_PATH`
``--no-auth``                       nothing (a port-forward to a single-user install)
==================================  ===============================================================

With none of them, a pod with a projected pipelines token uses ``--sa-token``; anywhere else it
is an error that lists the options. ``--host`` defaults to ``$KF_PIPELINES_ENDPOINT``, then, inside
a cluster, to the in-cluster service :data:`IN_CLUSTER_HOST`. The namespace defaults to the pod's
own (in a cluster); a multi-user API (``healthz.multi_user``) without one is an error, never an
empty namespace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("pipelines.connect")

SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"  # kfp's KF_PIPELINES_SA_TOKEN_PATH
NAMESPACE_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
AuthKind = Literal["token", "cookie", "sa-token", "none"]
_COOKIE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[^;\s]+(; ?[!#$%&'*+\-.^_`|~0-9A-Za-z]+=[^;\s]+)*$")


class ConnectError(ValueError):
    """The connection options cannot work; the message says what to pass instead."""


@dataclass(frozen=True)
class Connection:
    """Where and how to talk to the Pipelines API (no secret is logged: see :meth:`describe`)."""

    host: str
    auth: AuthKind
    token: str | None = None
    cookie: str | None = None
    sa_token_path: Path | None = None
    namespace: str | None = None

    def describe(self) -> str:
        detail = {"token": "bearer token", "cookie": "session cookie", "none": "no authentication"}.get(self.auth)
        if self.auth == "sa-token":
            detail = f"service-account token {self.sa_token_path}"
        return f"{self.host} ({detail}, namespace {self.namespace or 'none'})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection options of ``pipelines.submit`` (see the module docstring)."""
    parser.add_argument("--host", default=None,
                        help="Pipelines API, e.g. https://kubeflow.example.com/pipeline "
                             "(default: $KF_PIPELINES_ENDPOINT; in a pod: the in-cluster service)")
    parser.add_argument("--namespace", default=None,
                        help="Kubeflow profile namespace; required by multi-user installs (default in a pod: its own)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token", default=None, help="bearer token (visible in `ps`: prefer --token-file)")
    auth.add_argument("--token-file", type=Path, default=None, help="file holding a bearer token")
    auth.add_argument("--cookie", default=None, metavar="NAME=VALUE",
                      help="session cookie of a Dex/OIDC front, e.g. authservice_session=...")
    auth.add_argument("--sa-token", nargs="?", const="", default=None, metavar="PATH",
                      help=f"projected service-account token, re-read per request (default {SA_TOKEN_PATH})")
    auth.add_argument("--no-auth", action="store_true", help="send no credentials (port-forward, single-user)")


def _in_cluster(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConnectError(f"{what} {path}: cannot read it ({error.strerror or error})") from None
    if not text:
        raise ConnectError(f"{what} {path} is empty")
    return text


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer ") :].strip()  # pasted from a header: the prefix is added again
    if not token or any(character.isspace() for character in token):
        raise ConnectError(f"{where}: a bearer token is one word without spaces")
    return token


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Connection:
    """The connection the options ask for; :class:`ConnectError` when they cannot work."""
    environ = os.environ if environ is None else environ
    host = (args.host or environ.get("KF_PIPELINES_ENDPOINT") or "").strip()
    if not host:
        if not _in_cluster(environ):
            raise ConnectError(
                "no --host: pass the Pipelines API, e.g. --host https://kubeflow.example.com/pipeline "
                "or --host http://localhost:8080 for `kubectl port-forward svc/ml-pipeline-ui 8080:80` "
                "(or set KF_PIPELINES_ENDPOINT)"
            )
        host = IN_CLUSTER_HOST
    if not re.match(r"^https?://[^/\s]+", host):
        raise ConnectError(f"--host {host!r}: expected http(s)://host[:port][/path]")
    host = host.rstrip("/")

    namespace = args.namespace
    if namespace is not None:
        namespace = namespace.strip()
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
            raise ConnectError(f"--namespace {args.namespace!r} is not a Kubernetes namespace name")
    elif _in_cluster(environ) and Path(NAMESPACE_PATH).is_file():
        namespace = Path(NAMESPACE_PATH).read_text(encoding="utf-8").strip() or None

    default_sa = Path(environ.get("KF_PIPELINES_SA_TOKEN_PATH") or SA_TOKEN_PATH)
    if args.token is not None:
        return Connection(host, "token", token=_check_token(args.token, "--token"), namespace=namespace)
    if args.token_file is not None:
        token = _check_token(_read_secret(args.token_file, "--token-file"), f"--token-file {args.token_file}")
        return Connection(host, "token", token=token, namespace=namespace)
    if args.cookie is not None:
        cookie = args.cookie.strip()
        if cookie.lower().startswith("cookie:"):
            cookie = cookie[len("cookie:") :].strip()
        if not _COOKIE.match(cookie):
            raise ConnectError(
                f"--cookie {args.cookie[:20]!r}...: expected NAME=VALUE, e.g. authservice_session=MTc... "
                "(the browser's cookie for the Kubeflow dashboard)"
            )
        return Connection(host, "cookie", cookie=cookie, namespace=namespace)
    if args.sa_token is not None:
        path = Path(args.sa_token) if args.sa_token else default_sa
        _read_secret(path, "--sa-token")  # fail now, not on the first request
        return Connection(host, "sa-token", sa_token_path=path, namespace=namespace)
    if args.no_auth:
        return Connection(host, "none", namespace=namespace)
    if default_sa.is_file():
        log.info("using the projected service-account token %s (pass --no-auth to send none)", default_sa)
        return Connection(host, "sa-token", sa_token_path=default_sa, namespace=namespace)
    raise ConnectError(
        "choose how to authenticate: --token-file FILE / --token T (bearer, e.g. `kubectl create token "
        "default-editor -n NAMESPACE`), --cookie authservice_session=... (Dex login), --sa-token [PATH] "
        "(in a pod with a projected pipelines token), or --no-auth (port-forward to a single-user install)"
    )


def client(connection: Connection, namespace: str | None) -> Any:
    """A ``kfp.Client`` that sends exactly the credentials of ``connection`` (after :func:`check_namespace`)."""
    import kfp  # here, not at import time: the client module pulls in the API bindings
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    options: dict[str, Any] = {"host": connection.host}
    if namespace:
        options["namespace"] = namespace
    if connection.auth == "token":
        options["existing_token"] = connection.token
    elif connection.auth == "cookie":
        options["cookies"] = connection.cookie
    elif connection.auth == "sa-token":
        # With a host, kfp only uses credentials passed in: this one re-reads the rotated file.
        options["credentials"] = ServiceAccountTokenVolumeCredentials(str(connection.sa_token_path))
    return kfp.Client(**options)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect from the API is a login page: report it, do not follow it


def headers(connection: Connection) -> dict[str, str]:
    """The credentials ``connection`` sends, as HTTP headers."""
    if connection.auth == "token":
        return {"Authorization": f"Bearer {connection.token}"}
    if connection.auth == "cookie":
        return {"Cookie": str(connection.cookie)}
    if connection.auth == "sa-token":
        return {"Authorization": f"Bearer {_read_secret(Path(str(connection.sa_token_path)), '--sa-token')}"}
    return {}


def probe(connection: Connection, timeout_s: float = 20.0) -> bool:
    """One ``GET /apis/v2beta1/healthz`` with the connection's credentials; True for a multi-user API.

    kfp's own healthz call retries five times, 5 s apart, even on 401: this answers at once and
    says what is wrong (unreachable, login redirect, refused credentials).
    """
    url = f"{connection.host}/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers(connection)})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code in (301, 302, 303, 307, 308):
            raise ConnectError(
                f"{url} redirects to {error.headers.get('Location', 'a login page')}: the API sits behind a "
                "login (Dex/OIDC); pass --cookie authservice_session=... or --token-file"
            ) from None
        if error.code in (401, 403):
            raise ConnectError(
                f"{url} answered {error.code} {error.reason}: the credentials ({connection.auth}) were refused; "
                "check --token/--cookie/--sa-token"
            ) from None
        raise ConnectError(f"{url} answered {error.code} {error.reason}: is --host the Pipelines API?") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConnectError(f"cannot reach {url}: {reason}") from None
    try:
        return bool(json.loads(body).get("multi_user", False))
    except (ValueError, AttributeError):
        raise ConnectError(f"{url} did not answer JSON: is --host the Pipelines API (…/pipeline)?") from None


def check_namespace(connection: Connection) -> str | None:
    """The namespace to send: required by a multi-user API, None for a single-user one."""
    multi_user = probe(connection)
    if multi_user and not connection.namespace:
        raise ConnectError(
            f"{connection.host} is a multi-user Kubeflow: pass --namespace <your profile namespace> "
            "(e.g. kubeflow-user-example-com); without it the experiment would have no namespace"
        )
    if not multi_user and connection.namespace:
        log.warning("single-user Kubeflow: --namespace %s is ignored (the API has no namespaces)", connection.namespace)
    return connection.namespace if multi_user else None
