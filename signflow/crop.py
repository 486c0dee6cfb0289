"""Per-video crop/trim plans: which pixels and which frames extract keeps.

The crop stage only *plans* (from each video's probe, which download recorded in
``index.json``; no video is opened here unless a record lacks it); extract applies
the plan inside its single decode pass, so every frame is decoded once and the
crop costs one array slice (measured: see ``docs/benchmarks.md``). Keeping crop a
separate DVC stage means a change of ``crop.*`` params shows up in ``dvc status``
as a crop change, and the plans are inspectable (``plans.jsonl``).

Conventions (WLASL's quirks handled here, once):
- WLASL frame ranges are 1-based and inclusive, ``frame_end == -1`` meaning "to
  the end"; plans are 0-based half-open ``[start, stop)`` with ``stop = None`` for
  "to the end". ``stop`` past the real video end is a known WLASL defect: it is
  kept here and clamped by extract to the decoded length (container frame counts
  are estimates, so only decoding knows the true length).
- The bbox (``[x0, y0, x1, y1]`` pixels) grows by ``margin`` x its width/height on
  each side, optionally to a square (centred, shifted back inside the frame
  where possible), and is clipped to the frame. A box entirely outside the
  frame, or with zero area, falls back to the full frame with a note.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from signflow import atomic, video
from signflow.config import CropParams
from signflow.extract.plans import PLANS_NAME, SKIPPED_NAME, Plan, write_skipped
from signflow.index import VideoProbe
from signflow.splits import Record

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


def frame_range(frame_start: int, frame_end: int) -> tuple[int, int | None]:
    """WLASL 1-based inclusive ``(frame_start, frame_end)`` -> 0-based half-open ``(start, stop)``.

    ``frame_end == -1`` (to the end) gives ``stop = None``. Frame ``k`` (1-based) is
    index ``k - 1``, and the inclusive end ``e`` is the exclusive stop ``e``.
    """
    start = max(0, int(frame_start) - 1)
    if frame_end is None or int(frame_end) < 0:
        return start, None
    return start, max(start, int(frame_end))


def crop_box(
    bbox: Sequence[float] | None, width: int, height: int, params: CropParams
) -> tuple[Box | None, list[str]]:
    """Integer pixel box inside a ``width`` x ``height`` frame, or ``None`` (full frame), plus notes."""
    notes: list[str] = []
    if not params.use_bbox:
        return None, notes
    if bbox is None:
        notes.append("no bbox: full frame")
        return None, notes
    x0, y0, x1, y1 = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        notes.append(f"non-finite bbox {list(bbox)}: full frame")
        return None, notes
    if x1 < x0 or y1 < y0:
        notes.append("bbox corners swapped: reordered")
        x0, x1 = min(x0, x1), max(x0, x1)
        y0, y1 = min(y0, y1), max(y0, y1)
    # Judge zero area / outside-the-frame on the box as given, before the margin can hide it.
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        notes.append(f"zero-area bbox {list(bbox)}: full frame")
        return None, notes
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        notes.append(f"bbox {list(bbox)} outside the {width}x{height} frame: full frame")
        return None, notes
    w, h = x1 - x0, y1 - y0
    x0, x1 = x0 - params.margin * w, x1 + params.margin * w
    y0, y1 = y0 - params.margin * h, y1 + params.margin * h
    if params.square:
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        x0, x1 = _fit(cx - side / 2, side, width)
        y0, y1 = _fit(cy - side / 2, side, height)
    box = (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(width, math.ceil(x1)),
        min(height, math.ceil(y1)),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        notes.append(f"bbox {list(bbox)} leaves under 2 pixels inside the frame: full frame")
        return None, notes
    if box == (0, 0, width, height):
        return None, notes
    return box, notes


def _fit(low: float, side: float, limit: int) -> tuple[float, float]:
    """Shift ``[low, low + side]`` inside ``[0, limit]`` when it fits (keeps it square), else clip."""
    if side >= limit:
        return 0.0, float(limit)
    low = min(max(low, 0.0), limit - side)
    return low, low + side


def plan_video(record: Record, raw_dir: str | os.PathLike[str], params: CropParams) -> Plan:
    """Probe the video and plan its crop and frame range; raises :class:`signflow.video.VideoError`."""
    info = video.probe(Path(raw_dir) / record.file)
    return plan_from_probe(record, VideoProbe.model_validate(info.to_dict()), params)


def plan_from_probe(record: Record, info: VideoProbe, params: CropParams) -> Plan:
    """Plan the crop and frame range from the video's probe (recorded by download); no file is read."""
    start, stop = frame_range(record.frame_start, record.frame_end)
    box, notes = crop_box(record.bbox, info.width, info.height, params)
    if info.num_frames and stop is not None and stop > info.num_frames:
        # Known WLASL defect; extract clamps to the decoded length (the probe count is an estimate).
        notes.append(f"frame_end {record.frame_end} past the ~{info.num_frames} frames of the video: clamped")
    if info.num_frames and start >= info.num_frames:
        notes.append(f"frame_start {record.frame_start} at or past the ~{info.num_frames} frames of the video")
    return Plan(
        video_id=record.video_id,
        label=record.label,
        gloss=record.gloss,
        split=record.split,
        file=record.file,
        start=start,
        stop=stop,
        box=None if box is None else list(box),
        width=info.width,
        height=info.height,
        fps=info.fps or (record.fps or 0.0),
        num_frames=info.num_frames,
        notes=notes,
    )


def plan_all(
    records: Sequence[Record],
    raw_dir: str | os.PathLike[str] | None,
    params: CropParams,
    *,
    recorded: Mapping[str, VideoProbe] | None = None,
    threads: int = 4,
) -> Iterator[tuple[Record, Plan | None, video.VideoError | None]]:
    """Plan every record in order, from its ``recorded`` probe when there is one, else by probing.

    ``recorded`` (from ``index.json``, :func:`signflow.index.recorded_probes`) is the normal
    source. A record without one (an index written before download recorded probes) is probed
    under ``raw_dir`` and its plan says so in ``notes``; with no ``raw_dir`` it cannot be planned
    and is skipped as ``missing``. ``recorded=None`` probes every video (no index at hand).
    Probing is I/O-bound, so a few threads overlap it.
    """

    def one(record: Record) -> tuple[Record, Plan | None, video.VideoError | None]:
        probe = None if recorded is None else recorded.get(record.video_id)
        try:
            if probe is not None:
                return record, plan_from_probe(record, probe, params), None
            if raw_dir is None:
                raise video.VideoError(
                    "missing",
                    f"{record.file}: index.json records no probe for {record.video_id} and no videos folder "
                    "was given to probe it (re-run the download stage, or pass --raw)",
                )
            plan = plan_video(record, raw_dir, params)
        except video.VideoError as error:
            return record, None, error
        if recorded is not None:
            plan.notes.append("no probe recorded in index.json: probed the video")
        return record, plan, None

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        yield from tqdm(pool.map(one, records), total=len(records), desc="crop plans", unit="video", leave=False)


def write_plans(
    results: Iterable[tuple[Record, Plan | None, video.VideoError | None]], out_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """``plans.jsonl`` + ``skipped.csv`` into ``out_dir`` (replaced atomically); returns a summary."""
    summary: dict[str, Any] = {"planned": 0, "skipped": 0, "full_frame": 0, "noted": 0, "by_split": {}}
    skipped: list[dict[str, str]] = []
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        with open(tmp / PLANS_NAME, "w", encoding="utf-8") as plans:
            for record, plan, error in results:
                if plan is None:
                    assert error is not None
                    skipped.append({"video_id": record.video_id, "reason": error.reason, "detail": error.detail})
                    summary["skipped"] += 1
                    continue
                plans.write(plan.to_json() + "\n")
                summary["planned"] += 1
                summary["full_frame"] += plan.box is None
                summary["noted"] += bool(plan.notes)
                summary["by_split"][plan.split] = summary["by_split"].get(plan.split, 0) + 1
        write_skipped(tmp / SKIPPED_NAME, skipped)
    return summary
