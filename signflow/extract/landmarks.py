"""``extract.representation: landmarks``: every crop plan through MediaPipe Holistic, into shards.

:func:`extract_all` is the extract stage for landmarks: it reads ``plans.jsonl`` and crop's
``skipped.csv`` (:mod:`signflow.extract.plans`), runs the clips through one
:class:`~signflow.landmarks.pool.WorkerPool` (reusing :class:`~signflow.landmarks.cache.LandmarkCache`
entries), and replaces ``out_dir`` atomically with:

- ``<out_dir>/<split>/`` for train/val/test: a :class:`signflow.shards.ShardWriter` folder,
  metadata the feature spec (:func:`landmark_spec`), fields ``points`` float16
  ``(stored_frames, J, 3)`` (raw MediaPipe x, y in fractions of the processed frame, z), ``mask``
  bool ``(stored_frames, J)`` (False = not detected: a missing hand is *not* a zero point),
  ``score`` float16 ``(stored_frames, J)`` (pose visibility; 1 for seen hand/face points); items
  carry ``video_id, label, gloss, source_frames, width, height, detected`` (frames in which each
  part was seen);
- ``<out_dir>/skipped.csv``: crop's skips carried over, plus decode failures, ``no_person`` and
  ``worker_crashed``;
- ``<out_dir>/preprocess.json``: the :class:`signflow.feature_spec.LandmarkFeatureSpec`, with the
  MediaPipe version that ran.

The stored points stay raw: normalisation happens at load time (:mod:`signflow.landmarks.normalize`,
with the ``max_gap`` the spec records) and augmentation is a train knob, so changing either needs
no re-extraction. :func:`extract_split` does one split from a list of plan dicts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from signflow import atomic
from signflow.extract.plans import SKIPPED_NAME, carried_skips, read_plans, write_skipped
from signflow.feature_spec import (
    SPEC_VERSION,
    HandKeypointFiles,
    HolisticExtractor,
    LandmarkFeatureSpec,
    write_spec,
)
from signflow.index import SPLITS
from signflow.landmarks.cache import LandmarkCache
from signflow.landmarks.layout import get_layout, holistic_layout_name
from signflow.landmarks.pool import (
    LandmarkEnvError,
    WorkerPool,
    installed_mediapipe_version,
    landmarks_python,
    load_clip,
    worker_config,
)
from signflow.sampling import uniform_indices
from signflow.shards import ShardWriter

if TYPE_CHECKING:
    from signflow.config import ExtractParams, LandmarksParams, Params

log = logging.getLogger(__name__)

KIND = "landmarks"  # the representation name: extract.representation and the shards' metadata kind


def landmark_spec(
    landmarks: LandmarksParams, extract: ExtractParams, extractor: HolisticExtractor | HandKeypointFiles
) -> LandmarkFeatureSpec:
    """The feature spec of landmark features made by ``extractor`` with these params.

    ``seq_len``/``stored_frames`` are the ``extract`` section's, the same pair as for RGB;
    MediaPipe Hands keypoint files have the ``hands`` layout, Holistic the one ``landmarks.face`` picks.
    """
    layout = get_layout("hands" if isinstance(extractor, HandKeypointFiles) else holistic_layout_name(landmarks.face))
    return LandmarkFeatureSpec(
        version=SPEC_VERSION,
        seq_len=extract.seq_len,
        stored_frames=extract.stored_frames,
        layout=layout.name,
        num_joints=layout.num_joints,
        max_gap=landmarks.max_gap,
        extractor=extractor,
    )


@dataclass
class SplitResult:
    """What :func:`extract_split` did: counts for the report, skipped rows for skipped.csv."""

    written: int = 0
    frames: int = 0
    seconds: float = 0.0
    detected: Counter = field(default_factory=Counter)  # part -> frames seen (over written clips)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _plan_task(plan: dict[str, Any], raw_dir: Path, tmp: Path, number: int) -> dict[str, Any]:
    path = Path(plan["file"])
    return {
        "key": str(number),
        "path": str(path if path.is_absolute() else (raw_dir / path).resolve()),
        "start": int(plan.get("start") or 0),
        "stop": plan.get("stop"),
        "box": plan.get("box"),
        "out": str(tmp / f"{number}.npz"),
        "max_frames": None,
    }


def extract_split(
    plans: Sequence[dict[str, Any]],
    raw_dir: str | os.PathLike[str],
    split_dir: str | os.PathLike[str],
    params: LandmarksParams,
    *,
    spec: LandmarkFeatureSpec,
    shard_mb: int = 512,
    pool: WorkerPool | None = None,
    python: str | None = None,
    progress: bool = True,
    description: str = "landmarks",
    cache: LandmarkCache | None = None,
) -> SplitResult:
    """Extract every plan's clip into the shard folder ``split_dir`` (written atomically).

    ``plans``: crop-plan dicts (``video_id, label, gloss, file`` relative to
    ``raw_dir``, ``start``, ``stop``, ``box``); ``params`` start the workers, ``spec``
    (:func:`landmark_spec`) says what is stored and goes into the metadata. A clip that fails, or in which
    nothing (no pose, no hand) was ever detected, goes to ``result.skipped``.
    ``cache``: reuse MediaPipe results of identical inputs (:mod:`signflow.landmarks.cache`).
    """
    extractor = spec.extractor
    if cache is not None and isinstance(extractor, HolisticExtractor) and cache.mediapipe_version != extractor.mediapipe_version:
        raise ValueError(
            f"the landmark cache keys mediapipe {cache.mediapipe_version} results, but these features record "
            f"mediapipe {extractor.mediapipe_version}"
        )
    raw_dir, split_dir = Path(raw_dir), Path(split_dir)
    layout = get_layout(spec.layout)
    result = SplitResult()
    own_pool = pool is None
    started = time.perf_counter()
    split_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tmp-landmarks-", dir=split_dir.parent) as tmp_name:
        tmp = Path(tmp_name)
        tasks = [_plan_task(plan, raw_dir, tmp, number) for number, plan in enumerate(plans)]
        answers: dict[str, dict[str, Any]] = {}
        cache_keys: dict[str, str] = {}
        to_run = tasks
        if cache is not None:
            to_run = []
            for task in tasks:
                try:
                    key = cache_keys[task["key"]] = cache.key(task)
                except OSError:  # unreadable file: the worker reports it with a reason
                    to_run.append(task)
                    continue
                hit = cache.get(key)
                if hit is None:
                    to_run.append(task)
                else:
                    task["out"] = str(hit[0])
                    answers[task["key"]] = {**hit[1], "key": task["key"]}
        if to_run:
            pool = pool or WorkerPool(params, min(params.num_workers, len(to_run)), python=python)
            try:
                with tqdm(total=len(to_run), desc=description, unit="clip", disable=not progress) as bar:
                    for answer in pool.run(to_run):
                        answers[answer["key"]] = answer
                        if cache is not None and answer["key"] in cache_keys:
                            cache.put(cache_keys[answer["key"]], tmp / f"{answer['key']}.npz", answer)
                        bar.update(1)
            finally:
                if own_pool and pool is not None:
                    pool.close()
        metadata = {**spec.to_json(), "coords": "mediapipe"}
        fields = {
            "points": ((spec.stored_frames, layout.num_joints, 3), "float16"),
            "mask": ((spec.stored_frames, layout.num_joints), "bool"),
            "score": ((spec.stored_frames, layout.num_joints), "float16"),
        }
        # Written in plan order (not completion order) so the output is deterministic.
        with ShardWriter(split_dir, fields, shard_bytes=shard_mb * 1024**2, metadata=metadata) as writer:
            for task, plan in zip(tasks, plans):
                video_id = str(plan.get("video_id", task["key"]))
                answer = answers.get(task["key"], {"ok": False, "reason": "worker_crashed", "detail": "no answer"})
                if not answer["ok"]:
                    result.skipped.append(
                        {"video_id": video_id, "reason": answer["reason"], "detail": answer["detail"]}
                    )
                    continue
                clip = load_clip(task["out"], answer, layout.name)
                if not clip.mask.any():
                    result.skipped.append(
                        {"video_id": video_id, "reason": "no_person", "detail": "no pose or hand detected in any frame"}
                    )
                    continue
                keep = uniform_indices(len(clip.points), spec.stored_frames)
                writer.add(
                    {"points": clip.points[keep], "mask": clip.mask[keep], "score": clip.score[keep]},
                    video_id=video_id,
                    label=int(plan["label"]),
                    gloss=plan.get("gloss"),
                    source_frames=len(clip.points),
                    width=clip.width,
                    height=clip.height,
                    detected=clip.detected,
                )
                result.written += 1
                result.frames += len(clip.points)
                result.detected.update(clip.detected)
    result.seconds = time.perf_counter() - started
    return result


def extract_all(
    plans_path: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: Params,
    *,
    python: str | None = None,
    progress: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The EXTRACT stage for ``extract.representation: landmarks`` (the outputs are in the module docstring).

    Reads ``params.landmarks`` and ``params.extract`` (seq_len, stored_frames, shard_mb); replaces ``out_dir``
    as a whole (atomically, like the RGB extract) and returns the summary for
    ``reports/extract.json`` (the same keys as the RGB extract's, plus ``layout``,
    ``frames_per_s`` and ``detection_rate``). Raises :class:`LandmarkEnvError`
    before any work when ``.venv-landmarks`` (or its mediapipe) is missing. ``cache_dir``: a
    :class:`~signflow.landmarks.cache.LandmarkCache` folder kept across runs.
    """
    landmark_params = params.landmarks
    version = installed_mediapipe_version(python)  # first: a missing venv fails before any work
    if version is None:
        raise LandmarkEnvError(f"{landmarks_python(python)}: mediapipe is not installed there (make venv-landmarks)")
    cache = (
        LandmarkCache(cache_dir, worker_config(landmark_params), mediapipe_version=version)
        if cache_dir is not None
        else None
    )
    plans = [dataclasses.asdict(plan) for plan in read_plans(plans_path)]
    unknown = sorted({str(plan["split"]) for plan in plans} - set(SPLITS))
    if unknown:
        raise ValueError(f"{plans_path}: unknown split(s) {unknown}; expected {list(SPLITS)}")
    skipped: list[dict[str, str]] = carried_skips(plans_path)
    carried = len(skipped)
    detected: Counter = Counter()
    per_split: dict[str, int] = {}
    frames = 0
    started = time.perf_counter()
    spec = landmark_spec(landmark_params, params.extract, HolisticExtractor.from_params(landmark_params, version))
    busy = max(1, min(landmark_params.num_workers, len(plans)))
    pool = WorkerPool(landmark_params, busy, python=python)
    try:
        with atomic.atomic_path(out_dir, is_dir=True) as tmp:
            for split in SPLITS:
                result = extract_split(
                    [plan for plan in plans if plan["split"] == split],
                    raw_dir,
                    tmp / split,
                    landmark_params,
                    spec=spec,
                    shard_mb=params.extract.shard_mb,
                    pool=pool,
                    progress=progress,
                    description=f"landmarks {split}",
                    cache=cache,
                )
                per_split[split] = result.written
                frames += result.frames
                detected.update(result.detected)
                skipped.extend(result.skipped)
            write_skipped(tmp / SKIPPED_NAME, skipped)
            write_spec(tmp, spec)
    finally:
        pool.close()
    seconds = time.perf_counter() - started
    extracted = sum(per_split.values())
    summary = {
        "representation": KIND,
        "layout": spec.layout,
        "videos": len(plans) + carried,
        "extracted": extracted,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(row["reason"] for row in skipped)),
        "per_split": per_split,
        "source_frames": frames,
        "stored_frames": extracted * spec.stored_frames,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2) if seconds > 0 else None,
        # Fraction of processed frames in which each part was seen (pose, hands, any_hand, face).
        "detection_rate": {part: round(count / max(frames, 1), 4) for part, count in sorted(detected.items())},
    }
    if cache is not None:  # seconds/frames_per_s then cover only the clips MediaPipe actually ran on
        summary["cache"] = {"reused": cache.hits, "extracted": cache.misses}
        log.info("landmark cache %s: %d reused, %d extracted", cache.folder, cache.hits, cache.misses)
    log.info("landmarks: %s", summary)
    return summary
