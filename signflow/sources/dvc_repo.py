"""``data.source: dvc``: start from a ``data/raw`` that a DVC project already versions.

A team that has downloaded (and cleaned) WLASL once keeps it in a DVC project whose remote
is object storage; every later run, on a workstation or in a Kubeflow pod, should read that
copy instead of crawling the web again. ``dvc.api.DVCFileSystem`` reads the folder at a git
revision straight from the project's remote (as ``dvc get`` does), without a git checkout of
ours. The folder must already hold the ``data/raw`` contract (``index.json`` with ``file``,
``videos/``); ``status.csv`` is rebuilt from what actually arrived, so a file the index names
but the remote lacks is reported ``missing`` rather than failing later in crop. A folder
written before download recorded probes has none in its index: the download stage probes
what arrived (:mod:`signflow.sources.probes`), so crop still plans from the index alone.
"""

from __future__ import annotations

import logging
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING

from dvc.exceptions import DvcException

from signflow.config import DvcSourceParams
from signflow.index import GlossEntry, IndexFormatError, check_video_id, load_index
from signflow.sources import SourceError, VideoStatus

if TYPE_CHECKING:
    from dvc.api import DVCFileSystem

log = logging.getLogger(__name__)


def _filesystem(params: DvcSourceParams) -> DVCFileSystem:
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(params.repo, rev=params.rev, remote=params.remote)
        fs.repo  # noqa: B018 - opening is lazy; clone/rev errors would otherwise read as "no index.json"
        return fs
    except (DvcException, OSError) as error:  # CloneError, RevError, NotDvcRepoError, a bad remote config
        raise SourceError(
            f"data.dvc.repo: cannot open {params.repo!r} at rev {params.rev or 'HEAD'} ({type(error).__name__}: {error})"
        ) from None


def fetch(params: DvcSourceParams, out_dir: str | Path) -> tuple[list[GlossEntry], list[VideoStatus]]:
    """Copy ``params.path`` of the DVC project into ``out_dir``; return its index and statuses."""
    out_dir = Path(out_dir)
    fs = _filesystem(params)
    root = posixpath.normpath(params.path).strip("/")
    index_path = posixpath.join(root, "index.json")
    try:
        tracked = fs.exists(index_path)
    except (DvcException, OSError) as error:
        raise SourceError(f"data.dvc: cannot list {params.path!r} in {params.repo!r} ({error})") from None
    if not tracked:
        raise SourceError(
            f"data.dvc.path: {params.path!r} in {params.repo!r} (rev {params.rev or 'HEAD'}) has no index.json; "
            "it must be a data/raw folder written by this project's download stage"
        )
    log.info("dvc: fetching %s from %s (rev %s, remote %s)", root, params.repo, params.rev or "HEAD",
             params.remote or "default")
    try:
        fs.get(root + "/", str(out_dir) + "/", recursive=True)
    except (DvcException, OSError) as error:  # a missing object on the remote, refused credentials
        raise SourceError(
            f"data.dvc: fetching {params.path!r} from {params.repo!r} failed ({type(error).__name__}: {error}); "
            "check the remote's credentials and that `dvc push` uploaded it"
        ) from None
    try:
        entries = load_index(out_dir / "index.json")
    except IndexFormatError as error:
        raise SourceError(f"data.dvc: {error}") from None
    return entries, _statuses(entries, out_dir)


def _statuses(entries: list[GlossEntry], out_dir: Path) -> list[VideoStatus]:
    """One row per instance: ``ok`` for a file that arrived inside ``out_dir``, else ``missing``."""
    root = out_dir.resolve()
    rows = []
    for entry in entries:
        for inst in entry.instances:
            try:
                check_video_id(inst.video_id)
            except ValueError as error:
                raise SourceError(f"data.dvc: index.json: {error}") from None
            if not inst.file:
                rows.append(VideoStatus(inst.video_id, entry.gloss, "missing", "not in the versioned raw data"))
                continue
            path = (out_dir / inst.file).resolve()
            if not path.is_relative_to(root):
                raise SourceError(f"data.dvc: index.json: {inst.video_id}: file {inst.file!r} points outside the folder")
            if path.is_file():
                rows.append(VideoStatus(inst.video_id, entry.gloss, "ok", "", path.stat().st_size, inst.url or ""))
            else:
                inst.file = None
                rows.append(VideoStatus(inst.video_id, entry.gloss, "missing", f"{path.name} not on the remote"))
    return rows
