"""Atomic file writes: temp file in the target directory, fsync, rename, fsync directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename in it survives a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    fsync_dir(directory)


def remove_stale_temp_files(directory: Path) -> int:
    """Delete temp files left by an interrupted :func:`atomic_write`; return how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for entry in directory.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
    return removed


def install(temp: Path, path: Path, *, mode: int = 0o644) -> None:
    """Move a complete, fsynced temp file (made in ``path``'s directory) to ``path``
    atomically, and make the rename durable."""
    os.chmod(temp, mode)
    os.replace(temp, path)
    fsync_dir(path.parent)
