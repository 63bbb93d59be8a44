"""File writes: atomic and durable (temp file in the target directory, fsync, rename, fsync
directory), or atomic only (no fsync) for files that can be rebuilt after a crash."""

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


def atomic_write(path: Path, data: bytes | bytearray, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _rename(_write(path.parent, data, durable=True), path, mode)
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or the whole new
    one) but without fsync: after a crash the file may be the old one, or missing or
    empty. For files that can be rebuilt from durable ones (the module store's index)."""
    _rename(_write(path.parent, data, durable=False), path, mode)


def write_temp(directory: Path, data: bytes | bytearray) -> Path:
    """Write ``data`` to a new temp file in ``directory`` and fsync it; return its path.
    Complete it with :func:`install` (or unlink it)."""
    directory.mkdir(parents=True, exist_ok=True)
    return _write(directory, data, durable=True)


def _write(directory: Path, data: bytes | bytearray, *, durable: bool) -> Path:
    """A new temp file in ``directory`` holding ``data`` (fsynced if ``durable``); none
    is left behind if writing fails."""
    fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    return Path(temp_name)


def fsync_file(path: Path) -> None:
    """fsync a complete file (a temp file written without it) before :func:`install`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(temp: Path, path: Path, mode: int) -> None:
    """Give ``temp`` its mode and rename it to ``path``; unlink it if that fails."""
    try:
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


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
