"""The ``local`` source: videos already on disk, as a folder or an archive (zip/tar).

Layouts (``data.local.layout``, ``auto`` detects them in this order):

* ``wlasl``: ``videos/<video_id>.<ext>`` plus an index (``data.local.index``, or
  ``index.json`` / ``WLASL_v0.3.json`` in the folder) -- e.g. a Kaggle WLASL copy.
  Splits, signers, frame ranges and bboxes come from the index.
* ``lsa64``: files named ``SSS_PPP_RRR.<ext>`` (sign, signer, repetition), as
  LSA64 ships them; the signer is known, so ``split.strategy: signer`` works.
* ``gloss_folders``: ``<gloss>/<any name>.<ext>``; ids are assigned in sorted order.

Splits are ``train`` unless the layout knows better (the ``split`` stage's
``random``/``signer`` strategies assign them). Archives are extracted beside the
output, safely: the whole archive is refused, before anything is written, if any
entry is absolute, contains ``..``, is a link pointing outside the archive, is a
device/fifo, or if the uncompressed total exceeds ``max_archive_bytes``
(zip bombs declare their size; zipfile also stops at the declared size).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from signflow import video
from signflow.config import LocalSourceParams
from signflow.index import GlossEntry, Instance, check_video_id, load_index_skipping
from signflow.sources import SourceError, VideoStatus
from signflow.sources.probes import probe_file

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".flv")
_LSA64_NAME = re.compile(r"^(\d{3})_(\d{3})_(\d{3})$")
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


# --------------------------------------------------------------------------- safe archive extraction


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(suffix) for suffix in _ARCHIVE_SUFFIXES)


def _check_member_name(archive: Path, name: str) -> PurePosixPath:
    """Reject names that would land outside the extraction folder (zip-slip)."""
    normal = name.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise SourceError(f"archive {archive.name}: entry {name!r} has an absolute path; refusing to extract")
    parts = PurePosixPath(normal).parts
    if ".." in parts:
        raise SourceError(f"archive {archive.name}: entry {name!r} contains '..'; refusing to extract")
    return PurePosixPath(normal)


def _check_link_target(archive: Path, name: str, target: str) -> None:
    normal = target.replace("\\", "/")
    if normal.startswith("/") or re.match(r"^[A-Za-z]:", normal):
        raise SourceError(f"archive {archive.name}: link {name!r} points to absolute path {target!r}; refusing")
    # Resolve the target relative to the link's own folder, purely lexically.
    depth = 0
    for part in (PurePosixPath(name).parent / normal).parts:
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            raise SourceError(f"archive {archive.name}: link {name!r} -> {target!r} points outside the archive")


def _too_big(archive: Path, total: int, limit: int) -> SourceError:
    return SourceError(
        f"archive {archive.name}: {total} bytes uncompressed exceeds data.local.max_archive_bytes ({limit})"
    )


def extract_archive(archive: Path, dest: Path, max_bytes: int) -> None:
    """Extract ``archive`` into ``dest`` after checking every entry; raise :class:`SourceError` if unsafe."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, max_bytes)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, max_bytes)
    else:
        raise SourceError(f"{archive}: not a zip or tar archive")


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        total = 0
        for info in members:
            _check_member_name(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise SourceError(f"archive {archive.name}: entry {info.filename!r} is a symlink; refusing to extract")
            total += info.file_size
        if total > max_bytes:
            raise _too_big(archive, total, max_bytes)
        written = 0
        for info in members:
            target = dest / _check_member_name(archive, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_bytes:  # belt and braces: never trust declared sizes alone
                        raise _too_big(archive, written, max_bytes)
                    out.write(chunk)


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as error:
        raise SourceError(f"{archive}: unreadable tar archive ({error})") from None
    with tf:
        total = 0
        for member in tf.getmembers():
            _check_member_name(archive, member.name)
            if member.issym() or member.islnk():
                _check_link_target(
                    archive, member.name if member.issym() else "", member.linkname
                )
            elif not (member.isfile() or member.isdir()):
                raise SourceError(f"archive {archive.name}: entry {member.name!r} is a device or fifo; refusing")
            if member.isfile():
                total += member.size
        if total > max_bytes:
            raise _too_big(archive, total, max_bytes)
        # The "data" filter (PEP 706) re-checks all of the above inside tarfile itself.
        try:
            tf.extractall(dest, filter="data")
        except tarfile.FilterError as error:
            raise SourceError(f"archive {archive.name}: unsafe entry ({error})") from None


# --------------------------------------------------------------------------- layouts


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _find_index(root: Path, params: LocalSourceParams) -> Path | None:
    if params.index:
        return Path(params.index)
    for name in ("index.json", "WLASL_v0.3.json"):
        if (root / name).is_file():
            return root / name
    return None


def detect_layout(root: Path, params: LocalSourceParams) -> str:
    """Pick the layout of ``root``; a clear :class:`SourceError` listing what was expected otherwise."""
    if (root / "videos").is_dir() and _find_index(root, params) is not None:
        return "wlasl"
    videos = _videos_in(root)
    if videos and all(_LSA64_NAME.match(p.stem) for p in videos):
        return "lsa64"
    if any(p.is_dir() and _videos_in(p) for p in root.iterdir()):
        return "gloss_folders"
    raise SourceError(
        f"{root}: cannot detect the layout: expected <gloss>/*.mp4 folders, LSA64 files SSS_PPP_RRR.mp4, "
        "or videos/<video_id>.mp4 with index.json (set data.local.layout / data.local.index)"
    )


def _unwrap(root: Path) -> Path:
    """Archives often hold one top folder (``wlasl/…``); look inside it."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return _unwrap(entries[0])
    return root


class _Importer:
    def __init__(self, out_dir: Path, source: Path):
        self.out_dir = out_dir
        self.source = source.resolve()
        self.root: Path | None = None  # extraction folder when the source is an archive
        (out_dir / "videos").mkdir(parents=True, exist_ok=True)
        self.rows: list[VideoStatus] = []

    def url_for(self, src: Path) -> str:
        """Where a video came from, still meaningful after the extraction folder is gone."""
        if self.root is not None:
            return f"{self.source.as_uri()}#{src.relative_to(self.root).as_posix()}"
        return src.resolve().as_uri()

    def add(self, gloss: str, inst: Instance, src: Path | None) -> Instance:
        """Verify ``src`` and link it into ``videos/``; record a status row; return the instance."""
        url = self.url_for(src) if src is not None else (inst.url or "")
        if src is None or not src.is_file():
            self.rows.append(VideoStatus(inst.video_id, gloss, "missing", "video file not found", 0, url))
            return inst
        try:
            probe = probe_file(src)  # kept in the index, so record_probes need not open the file again
            if not any(True for _ in video.iter_frames(src, 0, 1)):
                raise video.VideoError("no_frames", f"{src.name}: no frames")
        except video.VideoError as error:
            self.rows.append(VideoStatus(inst.video_id, gloss, "corrupt", f"{error.reason}: {src.name}", 0, url))
            return inst
        rel = f"videos/{inst.video_id}{src.suffix.lower()}"
        target = self.out_dir / rel
        try:
            os.link(src, target)  # no copy of a large data set when on the same file system
        except OSError:
            shutil.copy2(src, target)
        self.rows.append(VideoStatus(inst.video_id, gloss, "ok", "", target.stat().st_size, url))
        return inst.model_copy(update={"file": rel, "url": inst.url or url, "probe": probe})


def _import_wlasl(root: Path, params: LocalSourceParams, importer: _Importer) -> list[GlossEntry]:
    index_path = _find_index(root, params)
    if index_path is None:
        raise SourceError(f"{root}: the wlasl layout needs an index (data.local.index or index.json)")
    entries, problems = load_index_skipping(index_path)
    importer.rows += [VideoStatus(p.video_id, p.gloss, "skipped", f"index: {p.reason}", 0, "") for p in problems]
    by_stem: dict[str, Path] = {p.stem: p for p in _videos_in(root / "videos")}
    indexed = {inst.video_id for entry in entries for inst in entry.instances}
    for stem in sorted(set(by_stem) - indexed):  # a file the index does not name: no gloss, no split
        reason = "not in the index (no gloss or split for it)"
        importer.rows.append(VideoStatus(stem, "", "skipped", reason, 0, importer.url_for(by_stem[stem])))
    result = []
    for entry in entries:
        originals = entry.instances
        if params.pretrimmed:
            originals = [_as_pretrimmed(inst) for inst in originals]
        instances = [importer.add(entry.gloss, inst, by_stem.get(inst.video_id)) for inst in originals]
        result.append(entry.model_copy(update={"instances": instances}))
    return result


def _as_pretrimmed(inst: Instance) -> Instance:
    """The whole file is the sign: drop the original video's frame range and bbox (kept for the record)."""
    return inst.model_copy(
        update={
            "frame_start": 1,
            "frame_end": -1,
            "bbox": None,
            "original_frame_start": inst.frame_start,
            "original_frame_end": inst.frame_end,
            "original_bbox": inst.bbox,
        }
    )


def _import_lsa64(root: Path, importer: _Importer) -> list[GlossEntry]:
    groups: dict[str, list[Instance]] = {}
    for path in _videos_in(root):
        match = _LSA64_NAME.match(path.stem)
        if match is None:
            continue
        sign, signer, rep = match.groups()
        gloss = f"sign{sign}"
        inst = Instance(
            video_id=path.stem, split="train", signer_id=int(signer), instance_id=int(rep), source="lsa64"
        )
        groups.setdefault(gloss, []).append(importer.add(gloss, inst, path))
    return [GlossEntry(gloss=g, instances=groups[g]) for g in sorted(groups)]


def _import_gloss_folders(root: Path, importer: _Importer) -> list[GlossEntry]:
    entries: list[GlossEntry] = []
    number = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        videos = _videos_in(folder)
        ignored = [p.name for p in folder.iterdir() if p.is_file() and p not in videos]
        if ignored:
            log.info("%s: ignoring %d non-video files (e.g. %s)", folder.name, len(ignored), ignored[0])
        if not videos:
            log.warning("%s: no videos, not a gloss", folder)
            continue
        instances = []
        for i, path in enumerate(videos):
            number += 1
            inst = Instance(video_id=f"{number:05d}", split="train", instance_id=i, source="local")
            instances.append(importer.add(folder.name, inst, path))
        entries.append(GlossEntry(gloss=folder.name, instances=instances))
    return entries


def import_local(params: LocalSourceParams, out_dir: str | Path) -> tuple[list[GlossEntry], list[VideoStatus]]:
    """Import ``params.path`` (folder or archive) into ``out_dir``; return index entries and statuses."""
    if not params.path:
        raise SourceError("data.local.path is required when data.source is 'local'")
    out_dir = Path(out_dir)
    source = Path(params.path)
    if not source.exists():
        raise SourceError(f"data.local.path: {source} does not exist")
    importer = _Importer(out_dir, source)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=out_dir.parent) as scratch:
        if source.is_dir():
            root = source
        elif is_archive(source):
            extract_archive(source, Path(scratch), params.max_archive_bytes)
            importer.root = Path(scratch)
            root = _unwrap(Path(scratch))
        else:
            raise SourceError(f"data.local.path: {source} is neither a folder nor a .zip/.tar archive")
        layout = params.layout if params.layout != "auto" else detect_layout(root, params)
        log.info("local: %s layout in %s", layout, source)
        if layout == "wlasl":
            entries = _import_wlasl(root, params, importer)
        elif layout == "lsa64":
            entries = _import_lsa64(root, importer)
        else:
            entries = _import_gloss_folders(root, importer)
    if not entries:
        raise SourceError(f"{source}: no videos found for the {layout} layout")
    for entry in entries:
        for inst in entry.instances:
            check_video_id(inst.video_id)
    return entries, importer.rows
