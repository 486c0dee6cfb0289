"""``extract.representation: rgb``: every crop plan through the per-clip code, in parallel, into shards.

:func:`extract_features` is :func:`signflow.preprocess.decode_to_stored` applied to each plan
by a pool of processes (``extract.num_workers``, chunks of ``extract.chunk_size`` plans), the
results streamed in plan order into one :class:`signflow.shards.ShardWriter` folder per split,
and the feature spec written beside them. Serving never imports this module: it decodes one
clip at a time with :mod:`signflow.preprocess`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import mmap
import multiprocessing
import os
import shutil
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from signflow import atomic, video
from signflow.extract.plans import SKIPPED_NAME, write_skipped
from signflow.feature_spec import RgbFeatureSpec, write_spec
from signflow.index import SPLITS
from signflow.preprocess import decode_to_stored
from signflow.shards import ShardWriter

_worker_state: dict[str, Any] = {}

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let glibc keep freed frame buffers for reuse instead of handing them back to the kernel.

    Each clip's decoder allocates its frames afresh, and while a clip's frames are held
    (:data:`signflow.preprocess.HOLD_BYTES`) glibc serves and frees them by ``mmap``/heap trims:
    every next clip then touches fresh zeroed pages. Measured on the 199 wlasl-clips in one process:
    about 480 thousand page faults and 1 s of system time per pass, against 0.01 million and 0.15 s
    with fixed thresholds (``benchmarks/bench_extract.py``). A worker's memory then stays near its
    peak (the hold budget and a few frames). False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 64 * 1024**2)) and bool(mallopt(_M_TRIM_THRESHOLD, 256 * 1024**2))


def decode_threads(workers: int) -> int:
    """Decoder threads per extract process: the cores this process may use, shared by ``workers`` processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))


class _Ring:
    """Shared memory where the workers leave their stored clips for the parent, one slot per chunk in flight.

    Pickled results crossed a pipe: the frames were copied four times on the way (pickle, pipe
    write and read, unpickle) and the parent's fresh buffers page-faulted, about 5 s of the
    parent's CPU for WLASL100's 800 MB (2 cores: time taken from the decoders). An anonymous
    shared mapping made before the pool forks is the workers' memory too: a clip is copied into its
    slot once and written from there into the shard. The slot of chunk ``k`` is ``k % slots``; the
    parent has written chunk ``k - slots`` before it submits chunk ``k`` (see :func:`_ordered_parallel`).
    """

    def __init__(self, slots: int, clips_per_slot: int, clip_shape: tuple[int, ...]):
        self.buffer = mmap.mmap(-1, slots * clips_per_slot * int(np.prod(clip_shape)))
        # Unmapped when the last view of it goes (a caller may still hold the last yielded clip).
        self.array = np.frombuffer(self.buffer, np.uint8).reshape(slots, clips_per_slot, *clip_shape)


# Past this the chunks travel pickled instead (a ring this big would pin memory for a huge stored shape).
RING_MAX_BYTES = 1024**3
_IN_RING = "ring"  # a result's frames field when they wait in the ring slot


def _init_worker(raw_dir: str, config_json: dict[str, Any], threads: int) -> None:
    # One OpenCV thread per process: the pool already uses every core, and nested
    # thread pools only add contention (measured in benchmarks/bench_extract.py);
    # the same goes for the decoder's threads (processes x threads = cores).
    cv2.setNumThreads(1)
    keep_freed_memory()
    _worker_state["raw_dir"] = Path(raw_dir)
    _worker_state["config"] = RgbFeatureSpec.model_validate(config_json)
    _worker_state["threads"] = threads


def _extract_chunk(plans: list[dict[str, Any]], slot: int | None = None) -> list[tuple[Any, int, str, str]]:
    """Worker: ``(frames or None, source_frames, reason, detail)`` per plan, in order.

    With a ``slot`` of the ring (inherited from the parent at fork), the frames are left there and
    the result says :data:`_IN_RING` instead of carrying them.
    """
    raw_dir: Path = _worker_state["raw_dir"]
    config: RgbFeatureSpec = _worker_state["config"]
    ring: _Ring | None = _worker_state.get("ring")
    out: list[tuple[Any, int, str, str]] = []
    for position, plan in enumerate(plans):
        try:
            frames, count = decode_to_stored(
                raw_dir / plan["file"],
                start=plan["start"],
                stop=plan["stop"],
                box=plan["box"] if config.use_bbox else None,
                config=config,
                num_frames=plan.get("num_frames") or None,
                threads=_worker_state["threads"],
            )
        except video.VideoError as error:
            out.append((None, 0, error.reason, error.detail))
            continue
        if slot is not None and ring is not None:
            ring.array[slot, position] = frames
            out.append((_IN_RING, count, "", ""))
        else:
            out.append((frames, count, "", ""))
    return out


def _ordered_parallel(
    chunks: Iterable[list[dict[str, Any]]], workers: int, initargs: tuple[Any, ...], *, chunk_size: int = 1,
    clip_shape: tuple[int, ...] | None = None,
) -> Iterable[list[tuple[np.ndarray | None, int, str, str]]]:
    """Results of :func:`_extract_chunk` in input order, with a bounded number of chunks in flight.

    ``Pool.imap`` would also keep order, but its feeder thread submits every task at
    once and finished results pile up behind a slow one; a fixed window of
    outstanding chunks keeps memory bounded whatever the data set size. With ``clip_shape``
    the frames come back through a :class:`_Ring` of ``window`` slots; a yielded list's frames
    are valid until the next one is asked for.
    """
    if workers <= 1:
        _init_worker(*initargs)
        for chunk in chunks:
            yield _extract_chunk(chunk)
        return
    window = workers * 3
    ring = None
    if clip_shape is not None and window * chunk_size * int(np.prod(clip_shape)) <= RING_MAX_BYTES:
        ring = _worker_state["ring"] = _Ring(window, chunk_size, clip_shape)  # before the fork: shared
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
            pending: deque = deque()
            for number, chunk in enumerate(chunks):
                slot = None if ring is None else number % window
                pending.append((slot, pool.apply_async(_extract_chunk, (chunk, slot))))
                if len(pending) >= window:
                    yield _from_ring(ring, *pending.popleft())
            while pending:
                yield _from_ring(ring, *pending.popleft())
    finally:
        _worker_state.pop("ring", None)


def _from_ring(ring: _Ring | None, slot: int | None, result: Any) -> list[tuple[np.ndarray | None, int, str, str]]:
    rows = result.get()
    if ring is None or slot is None:
        return rows
    return [(ring.array[slot, position] if isinstance(frames, str) else frames, count, reason, detail)
            for position, (frames, count, reason, detail) in enumerate(rows)]


def _chunked(items: Sequence[dict[str, Any]], size: int) -> Iterable[list[dict[str, Any]]]:
    for begin in range(0, len(items), size):
        yield list(items[begin : begin + size])


def folder_bytes(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(files, bytes)`` under ``path`` (the on-disk cost the benchmark reports)."""
    files = total = 0
    for item in Path(path).rglob("*"):
        if item.is_file():
            files += 1
            total += item.stat().st_size
    return files, total


def extract_features(
    plans: Sequence[dict[str, Any]],
    raw_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: RgbFeatureSpec,
    *,
    shard_bytes: int = 512 * 1024**2,
    num_workers: int = 1,
    chunk_size: int = 4,
    carried_skips: Iterable[dict[str, str]] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Decode every planned video once into per-split shard folders under ``out_dir``; returns the summary.

    ``out_dir`` appears complete or not at all (built under a temporary name).
    Unusable videos go to ``skipped.csv`` with a reason and never stop the run;
    ``carried_skips`` (the crop stage's) are added so one list holds them all.
    """
    out_dir = Path(out_dir)
    # Leftovers of a killed earlier run of this same output (never other outputs' temporaries).
    for leftover in out_dir.parent.glob(f"{atomic.TMP_PREFIX}{out_dir.name}.*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)

    bad_split = sorted({p["split"] for p in plans} - set(SPLITS))
    if bad_split:
        raise ValueError(f"plans name unknown splits {bad_split}; expected {SPLITS}")
    began = time.perf_counter()
    fields = {"frames": (config.stored_shape, "uint8")}
    skipped: list[dict[str, str]] = list(carried_skips)
    carried = len(skipped)
    per_split = dict.fromkeys(SPLITS, 0)
    source_frames = 0
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        # Every split's writer is closed on the way out; on an error each is told so (no valid-looking index).
        with contextlib.ExitStack() as stack:
            writers = {
                split: stack.enter_context(
                    ShardWriter(
                        tmp / split,
                        fields,
                        shard_bytes=shard_bytes,
                        metadata={"kind": "video", "split": split, "preprocess": config.to_json()},
                    )
                )
                for split in SPLITS
            }
            results = _ordered_parallel(
                _chunked(plans, chunk_size),
                num_workers,
                (os.fspath(raw_dir), config.to_json(), decode_threads(num_workers)),
                chunk_size=chunk_size,
                clip_shape=config.stored_shape,
            )
            bar = tqdm(total=len(plans), desc="extract", unit="video", disable=not progress)
            position = 0
            for chunk_results in results:
                for frames, count, reason, detail in chunk_results:
                    plan = plans[position]
                    position += 1
                    bar.update(1)
                    if frames is None:
                        skipped.append({"video_id": plan["video_id"], "reason": reason, "detail": detail})
                        continue
                    writers[plan["split"]].add(
                        {"frames": frames},
                        video_id=plan["video_id"],
                        label=int(plan["label"]),
                        gloss=plan["gloss"],
                        source_frames=int(count),
                    )
                    per_split[plan["split"]] += 1
                    source_frames += int(count)
            bar.close()
        write_spec(tmp, config)
        write_skipped(tmp / SKIPPED_NAME, skipped)
    seconds = time.perf_counter() - began
    files, total_bytes = folder_bytes(out_dir)
    ok = sum(per_split.values())
    return {
        "videos": len(plans) + carried,
        "extracted": ok,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(row["reason"] for row in skipped)),
        "per_split": per_split,
        "source_frames": source_frames,
        "stored_frames": ok * config.stored_frames,
        "files": files,
        "bytes": total_bytes,
        "seconds": round(seconds, 3),
        "videos_per_s": round(len(plans) / seconds, 2) if seconds > 0 else None,
    }
