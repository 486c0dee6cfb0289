"""Atomic writes: every stage output appears complete or not at all.

A stage killed with SIGKILL midway must leave nothing that DVC or the next stage
would take as complete, so outputs are written to a temporary sibling (same
filesystem, so ``os.replace`` is atomic) and renamed into place at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On an exception the temporary file/folder is removed and ``target`` is left as
    it was. For folders the old target is removed just before the rename, so a
    crash in that window leaves *no* output rather than a half-written one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}.", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}.", dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            if target.exists() or target.is_symlink():
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            # mkdtemp creates 0700 folders; outputs should honour the umask like mkdir() does.
            os.chmod(tmp, 0o777 & ~_current_umask())
            os.replace(tmp, target)
        else:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(tmp, target)
            # mkstemp creates 0600 files; outputs should honour the umask like open() does.
            os.chmod(target, 0o666 & ~_current_umask())
        _fsync_dir(target.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    write_text(target, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths show up in summaries; make them plain JSON.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def clean_stale_temporaries(directory: str | os.PathLike[str]) -> int:
    """Remove leftovers of killed runs (``.tmp-*``) in ``directory``; returns how many."""
    directory = Path(directory)
    removed = 0
    if not directory.is_dir():
        return 0
    for leftover in directory.glob(f"{TMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
        removed += 1
    return removed
