"""The crop -> extract contract on disk: ``plans.jsonl`` and the ``skipped.csv`` lists.

One implementation of both file formats: the crop stage writes plans and the videos it could not
plan through it, the RGB and landmark extractors read the plans and carry crop's skips into their
own ``skipped.csv`` through it, and the hand keypoint converter writes its skips with it.

``plans.jsonl`` holds one :class:`Plan` a line. Reading validates every line (types included)
and names the file, the line and the field that is wrong: a plan written by hand or by an older
signflow fails here, not halfway through an hour of extraction.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from signflow import atomic

PLANS_NAME = "plans.jsonl"
SKIPPED_NAME = "skipped.csv"
SKIPPED_COLUMNS = ("video_id", "reason", "detail")


@dataclass
class Plan:
    """What extract does with one video (one line of ``plans.jsonl``).

    ``start``/``stop``: 0-based half-open frame range (``stop`` None = to the end); ``box``:
    ``[x0, y0, x1, y1]`` pixels or None (full frame). The probe fields describe the source video
    (0 = unknown) and ``notes`` say why the plan differs from the index (box fallback, clamping).
    """

    video_id: str
    label: int
    gloss: str
    split: str
    file: str
    start: int
    stop: int | None
    box: list[int] | None
    width: int = 0
    height: int = 0
    fps: float = 0.0
    num_frames: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """A validated plan; raises :class:`pydantic.ValidationError` naming the bad fields."""
        return _PLAN.validate_python(data)


_PLAN: TypeAdapter[Plan] = TypeAdapter(Plan)


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'plan'}: {item['msg']}" for item in error.errors()
    )


def read_plans(path: str | os.PathLike[str]) -> list[Plan]:
    """Every plan of ``plans.jsonl``, in file order; a bad line is a ``ValueError`` naming it and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: crop plans not found; run the crop stage first")
    plans = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                plans.append(Plan.from_dict(json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error})") from None
            except ValidationError as error:
                raise ValueError(f"{path}:{number}: invalid plan: {_describe(error)}") from None
    return plans


def write_skipped(path: str | os.PathLike[str], rows: Iterable[dict[str, str]]) -> None:
    """``video_id,reason,detail`` rows as ``path``, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SKIPPED_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


def read_skipped(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a ``skipped.csv`` (none when the file does not exist); a foreign header is an error."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in SKIPPED_COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path}: not a skipped list (no {', '.join(missing)} column; expected {SKIPPED_COLUMNS})")
        return [{column: row[column] or "" for column in SKIPPED_COLUMNS} for row in reader]


def carried_skips(plans_path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The crop stage's ``skipped.csv`` beside ``plans_path``: videos extract reports as skipped too."""
    return read_skipped(Path(plans_path).with_name(SKIPPED_NAME))
