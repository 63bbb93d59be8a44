"""Safe extraction of ``plugin.wasm`` from an image layer (tar, optionally gzip)."""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterable, Iterator

from .errors import InvalidModule, ModuleTooLarge, UnsafeArchive
from .limits import ARCHIVE_OVERHEAD_BYTES

PLUGIN_NAMES = ("plugin.wasm",)
_GZIP_MAGIC = b"\x1f\x8b"


def _decompress(data: bytes, *, limit: int, where: str) -> bytes:
    if data[:2] != _GZIP_MAGIC:
        return data
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as error:
        raise UnsafeArchive(f"{where}: corrupt gzip stream ({error})") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise UnsafeArchive(
            f"{where}: layer expands beyond {limit} bytes (decompression bomb refused)"
        )
    return out


def extract_plugin(
    data: bytes, *, max_bytes: int, where: str, max_members: int = 10_000
) -> bytes:
    """Return the bytes of ``plugin.wasm`` from a tar or tar.gz layer.

    Every member is checked before anything is read: absolute names, ``..`` components,
    symlinks, hardlinks and device files raise :class:`UnsafeArchive`; so does a layer whose
    decompressed size exceeds ``max_bytes`` plus tar overhead, or that holds more than
    ``max_members`` entries (read one at a time, so a layer of a million empty entries
    costs no memory). A ``plugin.wasm`` above
    ``max_bytes`` raises :class:`ModuleTooLarge`; no ``plugin.wasm`` raises
    :class:`InvalidModule`. Nothing is written to disk.
    """
    limit = max_bytes + ARCHIVE_OVERHEAD_BYTES
    raw = _decompress(data, limit=limit, where=where)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            plugin = _check_members(
                _members(archive, max_members, where), limit=limit, where=where
            )
            if plugin.size > max_bytes:
                raise ModuleTooLarge(
                    f"{where}: plugin.wasm is {plugin.size} bytes, above the cap of {max_bytes}"
                )
            handle = archive.extractfile(plugin)
            if handle is None:
                raise InvalidModule(f"{where}: plugin.wasm cannot be read")
            return handle.read(max_bytes + 1)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, ValueError, OverflowError,
            UnicodeError, RecursionError) as error:
        detail = str(error)[:200] or type(error).__name__
        raise InvalidModule(f"{where}: layer is not a tar archive ({detail})") from None


def _members(archive: tarfile.TarFile, cap: int, where: str) -> Iterator[tarfile.TarInfo]:
    count = 0
    while True:
        member = archive.next()
        if member is None:
            return
        count += 1
        if count > cap:
            raise UnsafeArchive(f"{where}: layer holds more than {cap} tar entries (refused)")
        yield member


def _check_members(
    members: Iterable[tarfile.TarInfo], *, limit: int, where: str
) -> tarfile.TarInfo:
    plugin: tarfile.TarInfo | None = None
    total = 0
    for member in members:
        name = member.name
        normalized = posixpath.normpath(name)
        if name.startswith("/") or normalized.startswith("..") or "/../" in f"/{name}/":
            raise UnsafeArchive(
                f"{where}: tar entry {name[:200]!r} escapes the extraction directory"
            )
        if member.issym() or member.islnk():
            raise UnsafeArchive(
                f"{where}: tar entry {name[:200]!r} is a link to {member.linkname[:200]!r}; "
                "links are refused"
            )
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"{where}: tar entry {name[:200]!r} is not a regular file")
        total += member.size
        if total > limit:
            raise UnsafeArchive(
                f"{where}: tar entries add up to more than {limit} bytes (refused)"
            )
        is_plugin = member.isfile() and posixpath.basename(normalized) in PLUGIN_NAMES
        if is_plugin and (plugin is None or "/" not in normalized):
            plugin = member
    if plugin is None:
        raise InvalidModule(f"{where}: layer holds no plugin.wasm")
    return plugin
