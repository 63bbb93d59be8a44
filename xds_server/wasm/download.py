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
import collections
import concurrent.futures
import contextlib
import ctypes
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

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
    """A body read in full: its sha256 (hex) and size, and the bytes (``data``), the
    temp file holding them (``path``; the caller renames or removes it), or both. A
    ``bytearray`` ``data`` (a body streamed to a file and kept) is not to be modified."""

    sha256: str
    size: int
    data: bytes | bytearray | None = None
    path: Path | None = None

    @property
    def digest(self) -> str:
        """``sha256:<hex>``."""
        return f"sha256:{self.sha256}"


_WRITE_AHEAD = 16
"""Chunks handed to the writer thread and not yet written, at most (4 MiB)."""

_WRITEBACK_BYTES = 2**20
"""Written bytes after which the writer starts their writeback (Linux), so that the final
fsync finds little left to do."""


class _Writer:
    """A temp file that one worker thread hashes and writes chunk by chunk, in order,
    while the download goes on: the event loop only hands chunks over (and waits when
    :data:`_WRITE_AHEAD` are pending). The sha256 of what was written comes from
    :meth:`finish`."""

    def __init__(self, directory: Path, *, keep: int | None) -> None:
        """``keep``: the announced size when the bytes are also to be kept in memory
        (copied by the worker into one buffer of that size, so no copy is left for the
        end), else ``None``."""
        self.directory = directory
        self.path: Path | None = None
        self.buffer = bytearray(keep) if keep is not None else None
        self._fd = -1
        self._hasher = hashlib.sha256()
        self._written = 0
        self._synced = 0
        self._aborted = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xds-download")
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xds-sha256")
        self._hashed: concurrent.futures.Future[None] | None = None
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    async def open(self) -> None:
        self._fd, self.path = await self._run(_open_temp, self.directory)

    async def write(self, chunk: bytes) -> None:
        """Queue ``chunk``; raise the error of an earlier write if one failed."""
        while self._pending and self._pending[0].done():
            self._pending.popleft().result()
        if len(self._pending) >= _WRITE_AHEAD:
            await self._pending.popleft()
        self._pending.append(self._submit(self._write, chunk))
        self._hashed = self._hashing.submit(self._hasher.update, chunk)

    async def finish(self, *, durable: bool) -> str:
        """Wait for every write, close the file (fsynced when ``durable``); return the
        sha256 (hex) of the bytes written."""
        while self._pending:
            await self._pending.popleft()
        await self._run(self._close, durable)
        self._executor.shutdown(wait=False)
        if self._hashed is not None:
            await asyncio.wrap_future(self._hashed)
        self._hashing.shutdown(wait=False)
        return self._hasher.hexdigest()

    def discard(self) -> None:
        """Stop the writer, close and remove the temp file (blocking, brief: at most the
        write in progress is waited for; also runs on cancellation)."""
        self._aborted = True
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._hashing.shutdown(wait=False, cancel_futures=True)
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()

    # -- in the worker thread ------------------------------------------------------------

    def _write(self, chunk: bytes) -> None:
        if self._aborted:
            return
        if self.buffer is not None:
            self.buffer[self._written:self._written + len(chunk)] = chunk
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view):]
        self._written += len(chunk)
        if self._written - self._synced >= _WRITEBACK_BYTES:
            _start_writeback(self._fd, self._synced, self._written - self._synced)
            self._synced = self._written

    def _close(self, durable: bool) -> None:
        fd, self._fd = self._fd, -1
        try:
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)

    # -- plumbing ------------------------------------------------------------------------

    def _submit(self, call: Callable[[_A], _R], arg: _A) -> asyncio.Future[_R]:
        future = asyncio.wrap_future(self._executor.submit(self._guarded, call, arg))
        future.add_done_callback(_retrieve)  # raised where awaited; never "not retrieved"
        return future

    async def _run(self, call: Callable[[_A], _R], arg: _A) -> _R:
        return await self._submit(call, arg)

    def _guarded(self, call: Callable[[_A], _R], arg: _A) -> _R:
        """Run a file operation; a failure (disk full, permissions) is a
        :class:`StoreError` naming the directory."""
        try:
            return call(arg)
        except OSError as error:
            self._aborted = True
            raise StoreError(
                f"temp file in {self.directory} cannot be written: {error.strerror or error}"
            ) from None


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _open_temp(directory: Path) -> tuple[int, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_fs.TEMP_PREFIX, dir=directory)
    return fd, Path(name)


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    if sys.platform != "linux":
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start writeback, do not wait

    return start


_sync_file_range = _load_sync_file_range()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing ``length`` bytes at ``offset`` of ``fd`` to disk without waiting
    (Linux ``sync_file_range``; elsewhere nothing): a hint, durability is still fsync's."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length)


async def read_body(
    response: aiohttp.ClientResponse,
    *,
    what: str,
    max_bytes: int,
    expected: str | None = None,
    kind: str = "content",
    reference: str = "",
    into: Path | None = None,
    keep: bool = False,
    durable: bool = True,
    progress: ProgressCallback | None = None,
) -> Body:
    """Read ``response``'s body: hashed while streaming, refused past ``max_bytes``
    (announced or received: :class:`ModuleTooLarge` naming ``what``), and, when
    ``expected`` (``sha256:<hex>``) is given, checked against it
    (:class:`VerificationError` for ``kind`` of ``reference``).

    With ``into`` (a directory) the bytes go to a temp file there as they arrive (one
    worker thread hashes and writes them, in order, while the next chunks download); the
    returned :attr:`Body.path` belongs to the caller. It is fsynced when ``durable``;
    otherwise the caller must fsync it before naming it (to overlap that with other
    work). With ``keep`` the bytes are also returned in :attr:`Body.data` (so a caller
    that validates them need not read the file back); without, they never all sit in
    memory. A write that fails raises :class:`StoreError`. Errors of the connection
    (aiohttp, timeouts) propagate for the caller's retry policy.
    """
    total = response.content_length
    if total is not None and total > max_bytes:
        raise ModuleTooLarge(f"{what} is {total} bytes, above the cap of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    if into is None:
        hasher = hashlib.sha256()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > max_bytes:
                raise ModuleTooLarge(f"{what} is larger than the cap of {max_bytes} bytes")
            hasher.update(chunk)
            chunks.append(chunk)
            if progress is not None:
                progress(size, total)
        received = hasher.hexdigest()
        _check(received, size, expected, kind, reference or what)
        return Body(received, size, data=b"".join(chunks))
    # Kept bytes of an announced size go to one buffer, filled by the writer thread as
    # they arrive; otherwise chunks are joined at the end.
    writer = _Writer(into, keep=total if keep else None)
    limit = max_bytes if total is None or not keep else min(max_bytes, total)
    try:
        await writer.open()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                if size <= max_bytes:
                    raise aiohttp.ClientPayloadError(
                        f"{what}: more than the {total} bytes announced"
                    )
                raise ModuleTooLarge(f"{what} is larger than the cap of {max_bytes} bytes")
            await writer.write(chunk)
            if keep and writer.buffer is None:
                chunks.append(chunk)
            if progress is not None:
                progress(size, total)
        received = await writer.finish(durable=durable)
        if writer.buffer is not None and size != total:
            raise aiohttp.ClientPayloadError(f"{what}: {size} of {total} bytes announced")
        _check(received, size, expected, kind, reference or what)
    except BaseException:
        writer.discard()
        raise
    data: bytes | bytearray | None = None
    if keep:
        data = writer.buffer if writer.buffer is not None else b"".join(chunks)
    return Body(received, size, data=data, path=writer.path)


def _check(received: str, size: int, expected: str | None, kind: str, reference: str) -> None:
    """Count the bytes fetched; raise :class:`VerificationError` unless ``received``
    (hex) is ``expected`` (``sha256:<hex>``, when given)."""
    FETCHED_BYTES.inc(size)
    if expected is not None and f"sha256:{received}" != expected:
        raise VerificationError(
            kind, reference=reference, expected=expected, received=f"sha256:{received}",
        )
