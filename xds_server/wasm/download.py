"""The one verified download of every fetch: stream a body, hash it, cap its size, into
memory or into a temp file.

Used for registry blobs, module URLs and modules from peer replicas. A temp file is made
in the directory given (``.tmp-*``, the prefix :func:`~xds_server.wasm._fs.remove_stale_temp_files`
removes at start-up), so a process killed mid-download leaves nothing under a digest's name
and nothing that outlives the next start. On any failure, cancellation included, the temp
file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import aiohttp

from . import _fs
from .errors import ModuleTooLarge, StoreError, VerificationError
from .metrics import FETCHED_BYTES

__all__ = ["CHUNK_BYTES", "Body", "ProgressCallback", "read_body"]

_A = TypeVar("_A")
_R = TypeVar("_R")

CHUNK_BYTES = 256 * 2**10
"""Bytes read (and written) at a time."""

ProgressCallback = Callable[[int, int | None], None]
"""Called with (bytes received so far, total bytes or None) while a body downloads."""


@dataclass(frozen=True)
class Body:
    """A body read in full: its sha256 (hex) and size, and either the bytes (``data``) or
    the temp file holding them (``path``; the caller renames or removes it)."""

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    @property
    def digest(self) -> str:
        """``sha256:<hex>``."""
        return f"sha256:{self.sha256}"


class _Sink:
    """Where chunks go: a buffer, or a temp file written off the event loop."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.buffer = bytearray()
        self.path: Path | None = None
        self._handle: BinaryIO | None = None

    async def open(self) -> None:
        if self.directory is not None:
            self._handle, self.path = await self._disk(_open_temp, self.directory)

    async def write(self, chunk: bytes) -> None:
        if self._handle is None:
            self.buffer.extend(chunk)
        else:
            await self._disk(self._handle.write, chunk)

    async def finish(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            await self._disk(_sync_close, handle)

    async def _disk(self, call: Callable[[_A], _R], arg: _A) -> _R:
        """Run a file operation in a thread; a failure (disk full, permissions) is a
        :class:`StoreError` naming the directory."""
        try:
            return await asyncio.to_thread(call, arg)
        except OSError as error:
            raise StoreError(
                f"temp file in {self.directory} cannot be written: {error.strerror or error}"
            ) from None

    def discard(self) -> None:
        """Close and remove the temp file (blocking, brief: also runs on cancellation)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def _open_temp(directory: Path) -> tuple[BinaryIO, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_fs.TEMP_PREFIX, dir=directory)
    return os.fdopen(fd, "wb"), Path(name)


def _sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


async def read_body(
    response: aiohttp.ClientResponse,
    *,
    what: str,
    max_bytes: int,
    expected: str | None = None,
    kind: str = "content",
    reference: str = "",
    into: Path | None = None,
    progress: ProgressCallback | None = None,
) -> Body:
    """Read ``response``'s body: hashed while streaming, refused past ``max_bytes``
    (announced or received: :class:`ModuleTooLarge` naming ``what``), and, when
    ``expected`` (``sha256:<hex>``) is given, checked against it
    (:class:`VerificationError` for ``kind`` of ``reference``).

    With ``into`` (a directory) the bytes go to a temp file there and never all sit in
    memory; the returned :attr:`Body.path` is fsynced and belongs to the caller; a write
    that fails raises :class:`StoreError`. Errors of the connection (aiohttp, timeouts)
    propagate for the caller's retry policy.
    """
    total = response.content_length
    if total is not None and total > max_bytes:
        raise ModuleTooLarge(f"{what} is {total} bytes, above the cap of {max_bytes} bytes")
    hasher = hashlib.sha256()
    size = 0
    sink = _Sink(into)
    try:
        await sink.open()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise ModuleTooLarge(f"{what} is larger than the cap of {max_bytes} bytes")
            hasher.update(chunk)
            await sink.write(chunk)
            if progress is not None:
                progress(size, total)
        await sink.finish()
        FETCHED_BYTES.inc(size)
        received = hasher.hexdigest()
        if expected is not None and f"sha256:{received}" != expected:
            raise VerificationError(
                kind, reference=reference or what, expected=expected,
                received=f"sha256:{received}",
            )
    except BaseException:
        sink.discard()
        raise
    if sink.path is not None:
        return Body(received, size, path=sink.path)
    return Body(received, size, data=bytes(sink.buffer))
