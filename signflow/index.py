"""The ``WLASL_v0.3.json`` index: parse, validate, select subsets, write.

Every source (synthetic, wlasl, local) writes its ``data/raw/index.json`` in this
one schema, so split/crop/extract read a single format. The schema is the
official WLASL one (a list of ``{"gloss", "instances": [...]}`` in class order)
plus one signflow key, ``file``, on the instances whose video was obtained.

Validation is strict where a mistake would corrupt later stages silently
(duplicate video ids, ids that are unsafe as file names, a gloss with no
instances) and lenient where WLASL itself is messy (unknown extra keys are
kept, ``fps``/``bbox``/``signer_id`` may be missing).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signflow import atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
INDEX_NAME = "index.json"  # inside the download folder (data/raw); dvc.yaml's paths.raw_index

# A video id becomes a file name (videos/<id>.<ext>), so it must not be able to
# escape that folder or collide on case-insensitive/odd file systems.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class IndexFormatError(ValueError):
    """The index cannot be used; the message names the file and the entry."""


def check_video_id(video_id: str) -> str:
    """Return ``video_id`` if it is safe as a file name, else raise ``ValueError`` saying why."""
    if not isinstance(video_id, str) or not video_id:
        raise ValueError("video_id must be a non-empty string")
    if "/" in video_id or "\\" in video_id:
        raise ValueError(f"video_id {video_id!r} contains a path separator")
    if ".." in video_id:
        raise ValueError(f"video_id {video_id!r} contains '..'")
    if not _SAFE_ID.match(video_id):
        raise ValueError(
            f"video_id {video_id!r} is not safe as a file name "
            "(allowed: letters, digits, '_', '-', '.', not starting with '.' or '-', at most 128 chars)"
        )
    return video_id


class VideoProbe(BaseModel):
    """What download read from an obtained video's container (no decoding): crop plans from it.

    Recorded in ``index.json`` so split and crop need the index alone, not the videos
    (docs/kubeflow.md section 6: only extract receives the videos). The values are
    :func:`signflow.video.probe`'s, unchanged, so a plan made from them equals one made by
    probing the file at crop time.
    """

    # extra="ignore": built straight from signflow.video.VideoInfo.to_dict() (duration, codec unused).
    model_config = ConfigDict(extra="ignore", frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(ge=0, description="0 when the container does not say")
    num_frames: int = Field(ge=0, description="the container's count or an estimate; 0 when unknown")


class Instance(BaseModel):
    """One video of one gloss (one WLASL ``instances`` item)."""

    # Unknown keys (WLASL has source, instance_id, variation_id, ...) are kept as-is.
    model_config = ConfigDict(extra="allow")

    video_id: str
    url: str | None = None
    split: Literal["train", "val", "test"] = "train"
    signer_id: int | None = None
    frame_start: int = Field(1, ge=1, description="1-based first frame of the sign")
    frame_end: int = Field(-1, description="1-based inclusive last frame; -1 = to the end")
    bbox: list[float] | None = Field(None, description="[x0, y0, x1, y1] pixels of the original video")
    fps: float | None = Field(None, gt=0)
    file: str | None = Field(None, description="signflow: path of the obtained video, relative to the raw dir")
    probe: VideoProbe | None = Field(None, description="signflow: the obtained video's container metadata")

    @field_validator("video_id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> str:
        # WLASL ids are zero-padded strings; a bare int would lose its padding.
        if not isinstance(value, str):
            raise ValueError(f"video_id must be a string (got {type(value).__name__} {value!r})")
        return check_video_id(value)

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 4:
            raise ValueError(f"bbox must be [x0, y0, x1, y1] (got {len(value)} numbers)")
        return value

    @model_validator(mode="after")
    def _frames(self) -> Instance:
        if self.frame_end != -1 and self.frame_end < self.frame_start:
            raise ValueError(
                f"frame_end ({self.frame_end}) must be -1 or >= frame_start ({self.frame_start})"
            )
        return self

    def to_json(self) -> dict[str, Any]:
        """The WLASL dict; ``file`` and ``probe`` only when the video was obtained (and probed)."""
        data = self.model_dump(mode="json")
        for key in ("file", "probe"):
            if data.get(key) is None:
                data.pop(key, None)
        # bbox ints stay ints in the written file (WLASL writes ints).
        if data.get("bbox") is not None:
            data["bbox"] = [int(v) if float(v).is_integer() else v for v in data["bbox"]]
        if data.get("fps") is not None and float(data["fps"]).is_integer():
            data["fps"] = int(data["fps"])
        return data


class GlossEntry(BaseModel):
    """One gloss and its instances (one element of the top-level list)."""

    model_config = ConfigDict(extra="allow")

    gloss: str = Field(min_length=1)
    instances: list[Instance]

    def to_json(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.model_dump(mode="json").items() if k not in ("gloss", "instances")}
        return {"gloss": self.gloss, "instances": [inst.to_json() for inst in self.instances], **extra}


def parse_index(raw: Any, source: str = "index", *, allow_empty_glosses: bool = False) -> list[GlossEntry]:
    """Validate a loaded ``WLASL_v0.3.json`` value; raise :class:`IndexFormatError` naming the entry."""
    if not isinstance(raw, list):
        raise IndexFormatError(f"{source}: expected a JSON list of gloss entries, got {type(raw).__name__}")
    entries: list[GlossEntry] = []
    seen_ids: dict[str, str] = {}
    seen_glosses: set[str] = set()
    for position, item in enumerate(raw):
        where = f"{source}: entry {position}"
        if isinstance(item, dict) and isinstance(item.get("gloss"), str):
            where += f" (gloss {item['gloss']!r})"
        try:
            entry = GlossEntry.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            loc = ".".join(str(part) for part in first["loc"]) or "(entry)"
            detail = first["msg"].removeprefix("Value error, ")
            raise IndexFormatError(f"{where}: malformed at {loc}: {detail}") from None
        if entry.gloss in seen_glosses:
            raise IndexFormatError(f"{where}: gloss {entry.gloss!r} appears twice")
        seen_glosses.add(entry.gloss)
        if not entry.instances and not allow_empty_glosses:
            raise IndexFormatError(f"{where}: gloss {entry.gloss!r} has no instances (no videos)")
        for instance in entry.instances:
            previous = seen_ids.get(instance.video_id)
            if previous is not None:
                raise IndexFormatError(
                    f"{where}: duplicate video_id {instance.video_id!r} (also in gloss {previous!r})"
                )
            seen_ids[instance.video_id] = entry.gloss
        entries.append(entry)
    if not entries:
        raise IndexFormatError(f"{source}: the index has no gloss entries")
    return entries


class IndexProblem(BaseModel):
    """An index entry that was left out, and why (one row of the download's status report)."""

    video_id: str = ""
    gloss: str = ""
    reason: str


def parse_index_skipping(raw: Any, source: str = "index") -> tuple[list[GlossEntry], list[IndexProblem]]:
    """Like :func:`parse_index`, but one bad row does not refuse the whole index.

    A malformed instance (including an id unsafe as a file name: still refused, never
    imported), a duplicate video id, a repeated gloss, or a gloss left with no usable
    instance is skipped and returned as an :class:`IndexProblem`; the rest is kept. Raises
    :class:`IndexFormatError` only when the file is not a list or nothing usable remains.
    """
    if not isinstance(raw, list):
        raise IndexFormatError(f"{source}: expected a JSON list of gloss entries, got {type(raw).__name__}")
    entries: list[GlossEntry] = []
    problems: list[IndexProblem] = []
    seen_ids: dict[str, str] = {}
    seen_glosses: set[str] = set()
    for position, item in enumerate(raw):
        gloss = item.get("gloss") if isinstance(item, dict) else None
        where = f"entry {position}" + (f" (gloss {gloss!r})" if isinstance(gloss, str) else "")
        try:
            entry = GlossEntry.model_validate({**item, "instances": []} if isinstance(item, dict) else item)
        except ValidationError as error:
            problems.append(IndexProblem(gloss=str(gloss or ""), reason=f"{where}: {_first_error(error)}"))
            continue
        if entry.gloss in seen_glosses:
            problems.append(IndexProblem(gloss=entry.gloss, reason=f"{where}: gloss appears twice"))
            continue
        raw_instances = item.get("instances")
        if not isinstance(raw_instances, list):
            problems.append(IndexProblem(gloss=entry.gloss, reason=f"{where}: 'instances' is not a list"))
            continue
        instances = []
        for number, raw_instance in enumerate(raw_instances):
            video_id = raw_instance.get("video_id") if isinstance(raw_instance, dict) else None
            video_id = video_id if isinstance(video_id, str) else ""
            try:
                instance = Instance.model_validate(raw_instance)
            except ValidationError as error:
                reason = f"{where}: instance {number}: {_first_error(error)}"
                problems.append(IndexProblem(video_id=video_id, gloss=entry.gloss, reason=reason))
                continue
            if instance.video_id in seen_ids:
                reason = f"{where}: duplicate video_id (also in gloss {seen_ids[instance.video_id]!r})"
                problems.append(IndexProblem(video_id=instance.video_id, gloss=entry.gloss, reason=reason))
                continue
            seen_ids[instance.video_id] = entry.gloss
            instances.append(instance)
        seen_glosses.add(entry.gloss)
        if not instances:
            problems.append(IndexProblem(gloss=entry.gloss, reason=f"{where}: no usable instances"))
            continue
        entries.append(entry.model_copy(update={"instances": instances}))
    if not entries:
        first = f" (first problem: {problems[0].reason})" if problems else ""
        raise IndexFormatError(f"{source}: the index has no usable gloss entries{first}")
    for problem in problems:
        log.warning("%s: skipped %s", source, problem.reason)
    return entries, problems


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(entry)"
    return f"malformed at {loc}: {first['msg'].removeprefix('Value error, ')}"


def _read_text(path_or_url: str | os.PathLike[str], timeout_s: float) -> str:
    text_path = os.fspath(path_or_url)
    if re.match(r"^https?://", text_path):
        import requests  # only needed for remote indexes

        try:
            response = requests.get(text_path, timeout=timeout_s)
        except requests.RequestException as error:
            raise IndexFormatError(f"{text_path}: cannot fetch the index ({error})") from None
        if response.status_code != 200:
            raise IndexFormatError(f"{text_path}: cannot fetch the index (HTTP {response.status_code})")
        return response.text
    path = Path(text_path)
    if not path.is_file():
        raise IndexFormatError(f"{path}: index file not found")
    return path.read_text(encoding="utf-8")


def _read_json(path_or_url: str | os.PathLike[str], timeout_s: float) -> Any:
    text = _read_text(path_or_url, timeout_s)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise IndexFormatError(f"{os.fspath(path_or_url)}: not valid JSON ({error})") from None


def load_index(path_or_url: str | os.PathLike[str], *, timeout_s: float = 60.0) -> list[GlossEntry]:
    """Read and validate an index from a local path or an http(s) URL."""
    return parse_index(_read_json(path_or_url, timeout_s), os.fspath(path_or_url))


def load_index_skipping(
    path_or_url: str | os.PathLike[str], *, timeout_s: float = 60.0
) -> tuple[list[GlossEntry], list[IndexProblem]]:
    """:func:`load_index` for imports: bad rows are skipped and returned (:func:`parse_index_skipping`)."""
    return parse_index_skipping(_read_json(path_or_url, timeout_s), os.fspath(path_or_url))


def load_nslt(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read an official ``nslt_K.json`` (video id -> ``{"subset", "action": [class, start, end]}``)."""
    path = Path(path)
    if not path.is_file():
        raise IndexFormatError(f"{path}: nslt subset file not found")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IndexFormatError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise IndexFormatError(f"{path}: expected an object mapping video ids to entries")
    for video_id, item in raw.items():
        if not isinstance(item, dict) or item.get("subset") not in SPLITS:
            raise IndexFormatError(f"{path}: entry {video_id!r} needs 'subset' in {SPLITS}")
    return raw


def select_first_glosses(entries: Sequence[GlossEntry], k: int | None) -> list[GlossEntry]:
    """WLASL-K: the first ``k`` glosses in index (class) order; ``None`` keeps all."""
    if k is None:
        return list(entries)
    if k > len(entries):
        log.warning("subset %d is larger than the index (%d glosses); keeping all", k, len(entries))
    return list(entries[:k])


def select_nslt(entries: Sequence[GlossEntry], nslt: dict[str, dict[str, Any]]) -> list[GlossEntry]:
    """Keep the instances listed in an ``nslt_K.json``, with its split; drop glosses left empty.

    The official subsets are defined by video id, so this reproduces them exactly
    even where a subset is not a clean "first K glosses" cut.
    """
    selected: list[GlossEntry] = []
    for entry in entries:
        kept = [
            inst.model_copy(update={"split": nslt[inst.video_id]["subset"]})
            for inst in entry.instances
            if inst.video_id in nslt
        ]
        if kept:
            selected.append(entry.model_copy(update={"instances": kept}))
    missing = set(nslt) - {inst.video_id for entry in selected for inst in entry.instances}
    if missing:
        log.warning("%d video ids of the nslt file are not in the index (e.g. %s)", len(missing), sorted(missing)[0])
    return selected


def cap_videos(entries: Sequence[GlossEntry], max_videos: int | None) -> list[GlossEntry]:
    """Keep at most ``max_videos`` instances in index order (smoke runs); drop glosses left empty."""
    if max_videos is None:
        return list(entries)
    kept: list[GlossEntry] = []
    remaining = max_videos
    for entry in entries:
        if remaining <= 0:
            break
        instances = entry.instances[:remaining]
        remaining -= len(instances)
        kept.append(entry.model_copy(update={"instances": instances}))
    return kept


def iter_instances(entries: Iterable[GlossEntry]) -> Iterable[tuple[GlossEntry, Instance]]:
    for entry in entries:
        for instance in entry.instances:
            yield entry, instance


def recorded_probes(entries: Iterable[GlossEntry]) -> dict[str, VideoProbe]:
    """``video_id -> probe`` for the instances whose probe download recorded."""
    return {inst.video_id: inst.probe for _, inst in iter_instances(entries) if inst.probe is not None}


def to_json(entries: Iterable[GlossEntry]) -> list[dict[str, Any]]:
    return [entry.to_json() for entry in entries]


def write_index(entries: Iterable[GlossEntry], path: str | os.PathLike[str]) -> None:
    """Write the index atomically in the WLASL schema (validated first, so what is written reads back)."""
    data = to_json(entries)
    parse_index(data, os.fspath(path))
    atomic.write_json(path, data, indent=1)
