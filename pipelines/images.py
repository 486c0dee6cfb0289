"""Pin a component image tag to its registry digest, so kfp's cache follows the code, not a tag.

kfp caches a step by its component spec, which holds the image *string*: rebuild and push the same
tag with new code and every cached step is reused with the old code's outputs (DVC, which hashes
the code, would re-run). ``python -m pipelines.compile --pin-digest`` (or ``submit --pin-digest``)
replaces ``REGISTRY/NAME:TAG`` by ``REGISTRY/NAME:TAG@sha256:...``, the digest the registry serves
for the tag right now: a new push is a new digest, a new image string, a new cache key, and every
pod of the run pulls exactly the image that was resolved.

The digest comes from the OCI distribution API: ``HEAD /v2/<name>/manifests/<tag>`` answers it in
``Docker-Content-Digest``; a registry that wants a token answers 401 with a ``WWW-Authenticate:
Bearer realm=...,service=...,scope=...`` challenge, and the token endpoint gives one (anonymous, or
with ``$SIGNFLOW_REGISTRY_USER``/``$SIGNFLOW_REGISTRY_PASSWORD`` for a private image).
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from pipelines import PipelineError

DOCKER_HUB = "registry-1.docker.io"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class ImageRef:
    """``registry/repository:tag`` (Docker Hub names get their implied registry and ``library/``)."""

    registry: str
    repository: str
    tag: str
    written: str  # as the user wrote it, for messages and the pinned string

    @property
    def insecure(self) -> bool:
        """Loopback registries speak plain HTTP (as docker assumes for localhost)."""
        host = self.registry.rsplit(":", 1)[0]
        return host in ("localhost", "127.0.0.1", "[::1]")


def parse(image: str) -> ImageRef:
    """Split an image reference; a reference without a tag, or already pinned, is an error here."""
    if "@" in image:
        raise PipelineError(f"image {image!r} is already pinned to a digest")
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        raise PipelineError(f"image {image!r} has no tag to resolve (e.g. {image}:0.1.0)")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name if "/" in name else f"library/{name}"
    return ImageRef(registry, repository, tag, image)


def _credentials(environ: Mapping[str, str]) -> str | None:
    user, password = environ.get("SIGNFLOW_REGISTRY_USER"), environ.get("SIGNFLOW_REGISTRY_PASSWORD")
    if not user or not password:
        return None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _token(challenge: str, ref: ImageRef, environ: Mapping[str, str], timeout_s: float) -> str:
    if not challenge.lower().startswith("bearer "):
        raise PipelineError(f"{ref.registry}: unsupported auth challenge {challenge!r} (expected Bearer)")
    fields = dict(_CHALLENGE.findall(challenge))
    realm = fields.pop("realm", None)
    if not realm:
        raise PipelineError(f"{ref.registry}: auth challenge without a realm: {challenge!r}")
    fields.setdefault("scope", f"repository:{ref.repository}:pull")
    request = urllib.request.Request(f"{realm}?{urllib.parse.urlencode(sorted(fields.items()))}")
    basic = _credentials(environ)
    if basic:
        request.add_header("Authorization", basic)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise PipelineError(
            f"{ref.registry}: token endpoint answered {error.code} {error.reason} for {ref.repository} "
            "(a private image needs SIGNFLOW_REGISTRY_USER and SIGNFLOW_REGISTRY_PASSWORD)"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise PipelineError(f"{ref.registry}: no token from {realm}: {error}") from None
    token = body.get("token") or body.get("access_token")
    if not token:
        raise PipelineError(f"{ref.registry}: token endpoint {realm} answered no token")
    return str(token)


def resolve_digest(image: str, environ: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> str:
    """The ``sha256:...`` digest the registry serves for ``image``'s tag now."""
    environ = os.environ if environ is None else environ
    ref = parse(image)
    scheme = "http" if ref.insecure else "https"
    url = f"{scheme}://{ref.registry}/v2/{ref.repository}/manifests/{urllib.parse.quote(ref.tag)}"
    authorization: str | None = None
    for _ in range(2):  # the second try carries the token the 401 challenge asked for
        request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_TYPES})
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                digest = response.headers.get("Docker-Content-Digest", "")
                break
        except urllib.error.HTTPError as error:
            if error.code == 401 and authorization is None:
                authorization = f"Bearer {_token(error.headers.get('WWW-Authenticate', ''), ref, environ, timeout_s)}"
                continue
            if error.code == 404:
                raise PipelineError(f"image {image}: the registry has no tag {ref.tag!r} (push it first)") from None
            raise PipelineError(f"image {image}: {url} answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise PipelineError(f"image {image}: cannot reach {ref.registry}: {getattr(error, 'reason', error)}") from None
    else:
        raise PipelineError(f"image {image}: {ref.registry} refused the token it issued")
    if not _DIGEST.match(digest):
        raise PipelineError(f"image {image}: {url} gave no Docker-Content-Digest (got {digest!r})")
    return digest


def pin(image: str, environ: Mapping[str, str] | None = None) -> str:
    """``name:tag`` -> ``name:tag@sha256:...`` (the tag stays for people; the digest decides)."""
    return f"{image}@{resolve_digest(image, environ)}"
