"""Where the videos come from: ``data.source`` = synthetic | wlasl | local | dvc.

Every source produces the same ``data/raw`` contract (docs/ARCHITECTURE.md):
``videos/<video_id>.<ext>``, ``index.json`` (WLASL schema + ``file`` and ``probe``),
``status.csv`` (one row per video) and a summary dict for ``reports/download.json``.
:func:`run_download` is the one entry point; the stage CLI and the Kubeflow
component both call it with a (temporary) output folder.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from signflow import atomic
from signflow.config import DataParams
from signflow.index import GlossEntry, write_index

log = logging.getLogger(__name__)

STATUSES = ("ok", "missing", "http_error", "corrupt", "skipped")
STATUS_FIELDS = ("video_id", "gloss", "status", "reason", "bytes", "url")


class SourceError(ValueError):
    """The source as a whole cannot be used (missing folder, unsafe archive, unknown layout)."""


@dataclass
class VideoStatus:
    """What happened to one video (a ``status.csv`` row)."""

    video_id: str
    gloss: str
    status: str
    reason: str = ""
    bytes: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status


def write_status_csv(rows: list[VideoStatus], path: str | Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=STATUS_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    atomic.write_text(path, buffer.getvalue())


def read_status_csv(path: str | Path) -> list[VideoStatus]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [
            VideoStatus(**{**row, "bytes": int(row["bytes"] or 0)})  # type: ignore[arg-type]
            for row in csv.DictReader(handle)
        ]


def summarize(source: str, entries: list[GlossEntry], rows: list[VideoStatus], elapsed_s: float) -> dict[str, Any]:
    """The ``reports/download.json`` metrics: counts by status, plus what they add up to."""
    counts = Counter(row.status for row in rows)
    reasons = Counter(f"{row.status}: {row.reason.split(' (')[0]}" for row in rows if row.status != "ok")
    glosses_with_videos = sum(1 for entry in entries if any(inst.file for inst in entry.instances))
    return {
        "source": source,
        "videos": len(rows),
        **{status: counts.get(status, 0) for status in STATUSES},
        "ok_fraction": round(counts.get("ok", 0) / len(rows), 4) if rows else 0.0,
        "glosses": len(entries),
        "glosses_with_videos": glosses_with_videos,
        "bytes": sum(row.bytes for row in rows if row.status == "ok"),
        "elapsed_s": round(elapsed_s, 2),
        "top_reasons": dict(reasons.most_common(10)),
    }


def run_download(params: DataParams, out_dir: str | Path, *, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Fill ``out_dir`` with the ``data/raw`` contract from ``params.source``; return the summary.

    ``out_dir`` is normally a temporary folder that the caller renames into place
    (atomic as a whole). ``cache_dir`` (wlasl only) keeps completed downloads
    across runs so an interrupted or repeated download resumes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if params.source == "synthetic":
        from signflow.sources import synthetic

        entries = synthetic.generate(params.synthetic, params.seed, out_dir)
        rows = [
            VideoStatus(
                inst.video_id, entry.gloss, "ok", "", (out_dir / inst.file).stat().st_size, inst.url or ""
            )
            for entry in entries
            for inst in entry.instances
            if inst.file
        ]
    elif params.source == "wlasl":
        from signflow.sources import wlasl

        entries, rows = wlasl.download(params.wlasl, out_dir, cache_dir=cache_dir)
    elif params.source == "local":
        from signflow.sources import local

        entries, rows = local.import_local(params.local, out_dir)
    elif params.source == "dvc":
        from signflow.sources import dvc_repo

        entries, rows = dvc_repo.fetch(params.dvc, out_dir)
    else:  # pragma: no cover - DataParams restricts the values
        raise ValueError(f"data.source: unknown source {params.source!r}")
    from signflow.sources import probes  # here, not at the top: probes imports VideoStatus from this module

    entries, rows = probes.record_probes(entries, rows, out_dir)
    # Always present, even with no video obtained: dvc.yaml declares videos/ as an out.
    (out_dir / "videos").mkdir(exist_ok=True)
    write_index(entries, out_dir / "index.json")
    write_status_csv(rows, out_dir / "status.csv")
    summary = summarize(params.source, entries, rows, time.perf_counter() - started)
    log.info(
        "download (%s): %d videos, %d ok, %d missing, %d http_error, %d corrupt, %d skipped",
        params.source,
        summary["videos"],
        summary["ok"],
        summary["missing"],
        summary["http_error"],
        summary["corrupt"],
        summary["skipped"],
    )
    return summary
