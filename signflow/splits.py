"""Train/val/test splits: official, random (stratified by gloss) or signer-independent.

Input is the validated index (:mod:`signflow.index`); only instances whose video
was obtained (``file`` set) take part. Output is a manifest (one row per video)
and a label map (class index -> gloss), plus counts per split and per class.

Strategies, documented for users:
- ``official``: the index's own ``split`` field, or the split of an official
  ``nslt_K.json`` (which also selects the subset, by video id).
- ``random``: per gloss, a seeded shuffle, then ``round(n * test_fraction)`` test
  and ``round(n * val_fraction)`` val items; every gloss keeps >= 1 train item.
- ``signer``: signer-independent. Signers (not videos) are shuffled with the
  seed and each goes whole to the split furthest below its target share of
  videos, so no signer appears in two splits. Videos without a signer id cannot
  be placed safely and are excluded (counted in the report).

Labels are dense ``0..K-1`` in index (class) order over the glosses that have at
least one obtained video, so with a complete WLASL-K download they equal the
official class indices. A gloss without videos is dropped with a warning.
A split with zero items is an error: every later stage needs all three.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from signflow import atomic
from signflow.config import SplitParams
from signflow.index import SPLITS, GlossEntry, load_nslt, select_nslt

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.csv"
LABEL_MAP_NAME = "label_map.json"
MANIFEST_COLUMNS = ("video_id", "gloss", "label", "signer", "split", "frame_start", "frame_end", "bbox", "fps", "file")


class SplitError(ValueError):
    """The split cannot be made (e.g. a split would be empty); the message says what to change."""


@dataclass(frozen=True)
class Record:
    """One obtained video, as the manifest stores it (WLASL 1-based inclusive frame range)."""

    video_id: str
    gloss: str
    signer: str | None
    split: str  # the index's (official) split until a strategy assigns one
    frame_start: int
    frame_end: int
    bbox: tuple[float, float, float, float] | None
    fps: float | None
    file: str
    label: int = -1


@dataclass
class SplitResult:
    records: list[Record]
    glosses: list[str]
    report: dict[str, Any] = field(default_factory=dict)


def records_from_index(entries: Sequence[GlossEntry]) -> tuple[list[Record], list[str], list[str]]:
    """Obtained instances as records; also all glosses in index order and those with no obtained video."""
    records: list[Record] = []
    glosses: list[str] = []
    empty: list[str] = []
    for entry in entries:
        glosses.append(entry.gloss)
        obtained = [inst for inst in entry.instances if inst.file]
        if not obtained:
            empty.append(entry.gloss)
        for inst in obtained:
            records.append(
                Record(
                    video_id=inst.video_id,
                    gloss=entry.gloss,
                    signer=None if inst.signer_id is None else str(inst.signer_id),
                    split=inst.split,
                    frame_start=inst.frame_start,
                    frame_end=inst.frame_end,
                    bbox=None if inst.bbox is None else tuple(float(v) for v in inst.bbox),  # type: ignore[arg-type]
                    fps=inst.fps,
                    file=str(inst.file),
                )
            )
    return records, glosses, empty


def _random_split(records: list[Record], params: SplitParams) -> list[Record]:
    rng = np.random.default_rng(params.seed)
    by_gloss: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_gloss[record.gloss].append(record)
    out: list[Record] = []
    for gloss in sorted(by_gloss):  # sorted: the result must not depend on dict order
        items = sorted(by_gloss[gloss], key=lambda r: r.video_id)
        order = rng.permutation(len(items))
        n = len(items)
        # floor(x + 0.5) rather than round(): Python rounds halves to even, which skews small classes.
        n_test = int(np.floor(n * params.test_fraction + 0.5))
        n_val = int(np.floor(n * params.val_fraction + 0.5))
        # Never leave a class without training data.
        while n_test + n_val > n - 1 and (n_test or n_val):
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        for rank, position in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out.append(replace(items[position], split=split))
    return out


def _signer_split(records: list[Record], params: SplitParams) -> tuple[list[Record], int]:
    known = [r for r in records if r.signer is not None]
    unknown = len(records) - len(known)
    if unknown:
        log.warning("signer split: %d videos have no signer id and are excluded", unknown)
    per_signer = Counter(r.signer for r in known)
    signers = sorted(per_signer)
    if len(signers) < 3:
        raise SplitError(
            f"split.strategy 'signer' needs at least 3 signers (found {len(signers)}); "
            "use 'random' or 'official' for this data"
        )
    rng = np.random.default_rng(params.seed)
    order = [signers[i] for i in rng.permutation(len(signers))]
    total = sum(per_signer.values())
    target = {"test": params.test_fraction * total, "val": params.val_fraction * total}
    target["train"] = total - target["test"] - target["val"]
    assigned: dict[str, str] = {}
    filled = dict.fromkeys(SPLITS, 0)
    # Seed each split with one signer first so none can end up empty, then fill greedily.
    for split, signer in zip(("test", "val", "train"), order[:3], strict=True):
        assigned[signer] = split
        filled[split] += per_signer[signer]
    for signer in order[3:]:
        split = max(SPLITS, key=lambda s: (target[s] - filled[s]) / max(target[s], 1e-9))
        assigned[signer] = split
        filled[split] += per_signer[signer]
    return [replace(r, split=assigned[r.signer]) for r in known], unknown  # type: ignore[index]


def build_split(
    entries: Sequence[GlossEntry], params: SplitParams, *, nslt: dict[str, dict[str, Any]] | None = None
) -> SplitResult:
    """Assign every obtained video a split and a label; raise :class:`SplitError` when unusable."""
    if params.strategy == "official" and nslt is not None:
        entries = select_nslt(entries, nslt)
    records, _all_glosses, empty = records_from_index(entries)
    if empty:
        log.warning(
            "%d glosses have no obtained video and are left out of the label map (e.g. %r)", len(empty), empty[0]
        )
    if not records:
        raise SplitError("no obtained videos in the index (no instance has a 'file'); did download succeed?")

    excluded_no_signer = 0
    if params.strategy == "official":
        assigned = records
    elif params.strategy == "random":
        assigned = _random_split(records, params)
    else:
        assigned, excluded_no_signer = _signer_split(records, params)

    present = {r.gloss for r in assigned}
    # Index order is class order (WLASL), so dense labels over present glosses match the official ones.
    glosses = [g for g in dict.fromkeys(r.gloss for r in records) if g in present]
    label_of = {g: i for i, g in enumerate(glosses)}
    assigned = [replace(r, label=label_of[r.gloss]) for r in assigned]
    # Manifest order: split, then label, then video id, so diffs of the file are readable.
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    assigned.sort(key=lambda r: (split_rank[r.split], r.label, r.video_id))

    counts = Counter(r.split for r in assigned)
    empty_splits = [s for s in SPLITS if counts[s] == 0]
    if empty_splits:
        hint = (
            "the index has no videos marked for it"
            if params.strategy == "official"
            else "too few videos/signers for split.val_fraction / split.test_fraction"
        )
        raise SplitError(
            f"split {', '.join(repr(s) for s in empty_splits)} would have zero items "
            f"(strategy {params.strategy!r}, {len(assigned)} videos: {dict(counts)}): {hint}"
        )
    per_class: dict[str, dict[str, int]] = {g: dict.fromkeys(SPLITS, 0) for g in glosses}
    for record in assigned:
        per_class[record.gloss][record.split] += 1
    untrained = [g for g, c in per_class.items() if c["train"] == 0]
    if untrained:
        log.warning("%d glosses have no training video (e.g. %r)", len(untrained), untrained[0])
    report = {
        "strategy": params.strategy,
        "videos": len(assigned),
        "classes": len(glosses),
        "counts": {s: counts[s] for s in SPLITS},
        "signers": {s: len({r.signer for r in assigned if r.split == s and r.signer}) for s in SPLITS},
        "glosses_without_videos": len(empty),
        "glosses_without_train": len(untrained),
        "excluded_no_signer": excluded_no_signer,
        "per_class": per_class,
    }
    return SplitResult(assigned, glosses, report)


def _bbox_text(bbox: Iterable[float] | None) -> str:
    if bbox is None:
        return ""
    return " ".join(f"{v:g}" for v in bbox)


def write_outputs(result: SplitResult, out_dir: str | os.PathLike[str]) -> None:
    """``manifest.csv`` + ``label_map.json`` in ``out_dir``, the folder replaced atomically as a whole."""
    with atomic.atomic_path(out_dir, is_dir=True) as tmp:
        with open(tmp / MANIFEST_NAME, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(MANIFEST_COLUMNS)
            for r in result.records:
                writer.writerow(
                    [
                        r.video_id, r.gloss, r.label, r.signer or "", r.split, r.frame_start, r.frame_end,
                        _bbox_text(r.bbox), "" if r.fps is None else f"{r.fps:g}", r.file,
                    ]
                )
        atomic.write_json(tmp / LABEL_MAP_NAME, {"glosses": result.glosses})


def read_manifest(path: str | os.PathLike[str]) -> list[Record]:
    """Read a manifest written by :func:`write_outputs` (crop uses it)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found; run the split stage first")
    records: list[Record] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(MANIFEST_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            bbox = tuple(float(v) for v in row["bbox"].split()) if row["bbox"].strip() else None
            records.append(
                Record(
                    video_id=row["video_id"],
                    gloss=row["gloss"],
                    signer=row["signer"] or None,
                    split=row["split"],
                    frame_start=int(row["frame_start"]),
                    frame_end=int(row["frame_end"]),
                    bbox=bbox if bbox and len(bbox) == 4 else None,  # type: ignore[arg-type]
                    fps=float(row["fps"]) if row["fps"] else None,
                    file=row["file"],
                    label=int(row["label"]),
                )
            )
    return records


def split_index(
    entries: Sequence[GlossEntry], params: SplitParams, *, base_dir: str | os.PathLike[str] | None = None
) -> SplitResult:
    """:func:`build_split` with ``split.nslt_file`` resolved (relative to ``base_dir`` when not absolute)."""
    nslt = None
    if params.strategy == "official" and params.nslt_file:
        nslt_path = Path(params.nslt_file)
        if not nslt_path.is_absolute() and base_dir is not None and not nslt_path.exists():
            nslt_path = Path(base_dir) / nslt_path
        nslt = load_nslt(nslt_path)
    return build_split(entries, params, nslt=nslt)


def drop_missing_files(
    entries: Sequence[GlossEntry], raw_dir: str | os.PathLike[str]
) -> tuple[list[GlossEntry], list[str]]:
    """Treat instances whose ``file`` is not on disk as not obtained; returns the ids dropped."""
    raw_dir = Path(raw_dir)
    dropped: list[str] = []
    kept: list[GlossEntry] = []
    for entry in entries:
        instances = []
        for inst in entry.instances:
            if inst.file and not (raw_dir / inst.file).is_file():
                dropped.append(inst.video_id)
                inst = inst.model_copy(update={"file": None})
            instances.append(inst)
        kept.append(entry.model_copy(update={"instances": instances}))
    if dropped:
        log.warning("%d indexed videos are missing on disk and are left out (e.g. %s)", len(dropped), dropped[0])
    return kept, dropped
