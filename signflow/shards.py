"""Sharded array storage for extracted clips (and landmark sequences).

Why not one JPEG per frame: WLASL2000 at 32 frames a clip is ~700k files, which
DVC hashes and transfers slowly and file systems hate. Instead each split is a
folder of a few large ``.npy`` files (one per field per shard) plus one
``index.json``; ``np.load(mmap_mode="r")`` then reads any clip with one
contiguous slice and no decoding.

Layout of a split folder::

    index.json                  {"fields": {...}, "shards": [...], "items": [...]}
    shard-00000.frames.npy      (N, *shape) per field
    shard-00001.frames.npy

Each item records its ``shard`` and ``row`` plus caller metadata (video id,
label...). Shards are written streaming (bounded memory): the ``.npy`` header
is reserved with room for any row count and rewritten with the true count on
close. The folder is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from signflow import atomic

INDEX_NAME = "index.json"
FORMAT_VERSION = 1
_HEADER_BYTES = 256  # fixed .npy header length, big enough for any shape we write


@dataclass(frozen=True)
class FieldSpec:
    shape: tuple[int, ...]
    dtype: str

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    text = repr(header)
    magic = b"\x93NUMPY\x01\x00"
    body_len = _HEADER_BYTES - len(magic) - 2
    padded = text.ljust(body_len - 1) + "\n"
    if len(padded) != body_len:
        raise ValueError(f"npy header too long for shape {shape}")
    return magic + body_len.to_bytes(2, "little") + padded.encode("latin1")


class _ShardFile:
    def __init__(self, path: Path, spec: FieldSpec):
        self.path = path
        self.spec = spec
        self.rows = 0
        self.handle = open(path, "wb")
        self.handle.write(_npy_header(np.dtype(spec.dtype), (0, *spec.shape)))

    def append(self, array: np.ndarray) -> None:
        if tuple(array.shape) != self.spec.shape:
            raise ValueError(f"{self.path.name}: row shape {array.shape} != {self.spec.shape}")
        self.handle.write(memoryview(np.ascontiguousarray(array, dtype=self.spec.dtype)).cast("B"))  # no copy
        self.rows += 1

    def close(self) -> None:
        self.handle.seek(0)
        self.handle.write(_npy_header(np.dtype(self.spec.dtype), (self.rows, *self.spec.shape)))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()


class ShardWriter:
    """Stream rows into shards of at most ``shard_bytes`` each, atomically.

    >>> with ShardWriter(out, {"frames": ((32, 64, 64, 3), "uint8")}) as writer:
    ...     writer.add({"frames": clip}, video_id="00335", label=3)
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        fields: Mapping[str, tuple[tuple[int, ...], str]],
        *,
        shard_bytes: int = 512 * 1024**2,
        metadata: Mapping[str, Any] | None = None,
    ):
        if not fields:
            raise ValueError("ShardWriter needs at least one field")
        self.directory = Path(directory)
        self.fields = {name: FieldSpec(tuple(shape), str(np.dtype(dtype))) for name, (shape, dtype) in fields.items()}
        self.row_bytes = sum(spec.row_bytes for spec in self.fields.values())
        self.rows_per_shard = max(1, shard_bytes // max(1, self.row_bytes))
        self.metadata = dict(metadata or {})
        self.items: list[dict[str, Any]] = []
        self.shards: list[dict[str, Any]] = []
        self._context = atomic.atomic_path(self.directory, is_dir=True)
        self._tmp: Path | None = None
        self._open: dict[str, _ShardFile] = {}

    def __enter__(self) -> ShardWriter:
        self._tmp = self._context.__enter__()
        return self

    def add(self, arrays: Mapping[str, np.ndarray], **item: Any) -> None:
        if set(arrays) != set(self.fields):
            raise ValueError(f"expected fields {sorted(self.fields)}, got {sorted(arrays)}")
        if not self._open or next(iter(self._open.values())).rows >= self.rows_per_shard:
            self._roll()
        shard_index = len(self.shards) - 1
        for name, array in arrays.items():
            self._open[name].append(np.asarray(array))
        self.items.append({**item, "shard": shard_index, "row": self.shards[-1]["rows"]})
        self.shards[-1]["rows"] += 1

    def _roll(self) -> None:
        self._close_open()
        assert self._tmp is not None, "use ShardWriter as a context manager"
        number = len(self.shards)
        files = {name: f"shard-{number:05d}.{name}.npy" for name in self.fields}
        self._open = {name: _ShardFile(self._tmp / file, self.fields[name]) for name, file in files.items()}
        self.shards.append({"files": files, "rows": 0})

    def _close_open(self) -> None:
        for shard_file in self._open.values():
            shard_file.close()
        self._open = {}

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        self._close_open()
        if exc_type is None:
            try:
                self._write_index()
            except BaseException as error:
                self._context.__exit__(type(error), error, error.__traceback__)
                raise
        return self._context.__exit__(exc_type, exc, tb)

    def _write_index(self) -> None:
        assert self._tmp is not None
        index = {
            "format_version": FORMAT_VERSION,
            "fields": {name: {"shape": list(spec.shape), "dtype": spec.dtype} for name, spec in self.fields.items()},
            "metadata": self.metadata,
            "shards": self.shards,
            "items": self.items,
        }
        (self._tmp / INDEX_NAME).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")


class ShardReader:
    """Random access to a split folder written by :class:`ShardWriter` (memory-mapped)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        index_path = self.directory / INDEX_NAME
        if not index_path.is_file():
            raise FileNotFoundError(f"{self.directory}: no {INDEX_NAME}; was the extract stage run to completion?")
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{index_path}: unsupported shard format {index.get('format_version')!r}")
        self.fields = {name: FieldSpec(tuple(f["shape"]), f["dtype"]) for name, f in index["fields"].items()}
        self.metadata: dict[str, Any] = index.get("metadata", {})
        self.shards: list[dict[str, Any]] = index["shards"]
        self.items: list[dict[str, Any]] = index["items"]
        self._maps: dict[tuple[int, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _array(self, shard: int, field: str) -> np.ndarray:
        key = (shard, field)
        if key not in self._maps:
            # Opened lazily and per process, so DataLoader workers each get their own maps.
            self._maps[key] = np.load(self.directory / self.shards[shard]["files"][field], mmap_mode="r")
        return self._maps[key]

    def read(self, position: int, field: str | None = None) -> np.ndarray:
        """Row ``position`` (in ``items`` order) of ``field`` (the only field by default), as a copy."""
        if field is None:
            if len(self.fields) != 1:
                raise ValueError(f"several fields {sorted(self.fields)}: name one")
            field = next(iter(self.fields))
        item = self.items[position]
        return np.array(self._array(item["shard"], field)[item["row"]])

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps do not pickle across DataLoader workers; reopen them there.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state
