"""The content-addressed module store and the resolve API the server calls.

Layout on disk under ``root``::

    blobs/sha256/<hex>   module bytes, named by their sha256, written atomically and
                         durably (fsync of the file and the directory) before resolve returns
    index.json           reference -> digest, layout, root ids, resolved_at; module sizes
                         and last use (written atomically, not fsynced: after a crash it
                         may be older than the blobs; a blob it does not list is adopted
                         at start-up once its content matches its name, and a reference
                         it lost is resolved again)

Durability: a module is durable when :meth:`ModuleStore.resolve` returns it, so a revision
that a caller records after that (one more durable commit, in the state database) never
names a module a crash could lose. One journal commit per new module, not three.

Concurrency contract: one :class:`ModuleStore` per directory and per process, used from one
event loop. Stored module files are immutable once written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from aiohttp.abc import AbstractResolver

from . import _fs
from ._http import fetch_url
from ._validate import validate_module
from .errors import (
    AuthError,
    InvalidModule,
    InvalidReference,
    ModuleTooLarge,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    StoreError,
    UnsafeDestination,
    VerificationError,
    WasmError,
)
from .guard import DEFAULT_POLICY, AddressPolicy
from .layouts import fetch_image_module
from .limits import DEFAULT_LIMITS, MAX_MODULE_BYTES, SMALL_MODULE_BYTES, FetchLimits
from .metrics import CACHE_REQUESTS, FETCH_DURATION, FETCHES, STORE_BYTES, STORE_MODULES
from .reference import ImageReference, normalize_sha256, parse_reference
from .registry import ProgressCallback, RegistryClient, RegistrySettings
from .retry import DEFAULT_RETRY, RetryPolicy

__all__ = ["Module", "ModuleSource", "ModuleStore"]

log = structlog.get_logger(__name__)

_INDEX_VERSION = 1
_INLINE_INDEX_BYTES = 64 * 2**10


@dataclass(frozen=True)
class ModuleSource:
    """Where a filter's module comes from.

    ``kind`` is ``"image"`` (``location`` is an image reference), ``"url"`` (an http(s) URL)
    or ``"file"`` (a local path). ``sha256`` optionally pins the **module**: the sha256 of
    the wasm bytes (hex, or ``sha256:<hex>``), not the image manifest digest; pin the
    manifest with an ``@sha256:`` reference instead. It is required for ``url`` sources.
    ``pull_policy`` ``IfNotPresent`` resolves a reference once; ``Always`` re-resolves a
    tag when its last resolution is older than the store's ``resolve_interval``.
    """

    kind: Literal["image", "url", "file"]
    location: str
    sha256: str | None = None
    pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"

    def __post_init__(self) -> None:
        if self.kind not in ("image", "url", "file"):
            raise InvalidReference(f"module source kind {self.kind!r} is not image, url or file")
        if self.pull_policy not in ("IfNotPresent", "Always"):
            raise InvalidReference(
                f"pull policy {self.pull_policy!r} of {self.location} is not IfNotPresent "
                "or Always"
            )
        if self.kind == "url":
            if not self.location.startswith(("http://", "https://")):
                raise InvalidReference(f"module URL {self.location!r} is not http(s)")
            if not self.sha256:
                raise InvalidReference(f"module URL {self.location} needs a sha256 pin")
        if self.sha256 is not None:
            normalize_sha256(self.sha256, what=f"sha256 pin of {self.location}")


@dataclass(frozen=True)
class Module:
    """A verified module in the store. Immutable; ``path`` never changes content."""

    sha256: str
    size: int
    path: Path
    layout: str
    root_ids: tuple[str, ...]
    reference: str
    manifest_digest: str | None
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)

    @property
    def digest(self) -> str:
        """``sha256:<hex>``."""
        return f"sha256:{self.sha256}"

    def read_bytes(self) -> bytes:
        """The module bytes (blocking file read)."""
        return self.path.read_bytes()


@dataclass(frozen=True)
class _Fetched:
    """A module as fetched, before it is validated and stored: its bytes in memory
    (``data``) or in a temp file in the blob directory (``path``), its sha256 (hex) when
    the fetch already verified it, what the source says about it, and who read it."""

    reference: str
    layout: str
    data: bytes | bytearray | None = None
    path: Path | None = None
    sha256: str | None = None
    root_ids: tuple[str, ...] = ()
    manifest_digest: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    identity: str | None = None
    """The registry username it was fetched as (``""``: anonymous); ``None`` for URLs
    and files."""


async def _sha256_hex(data: bytes | bytearray) -> str:
    """sha256 of ``data`` (hex): on the event loop for a small module, else in a thread."""
    if len(data) <= SMALL_MODULE_BYTES:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


def _result_label(error: BaseException) -> str:
    for cls, label in (
        (NotFound, "not_found"),
        (AuthError, "auth_error"),
        (UnsafeDestination, "unsafe_destination"),
        (RegistryUnavailable, "unavailable"),
        (RegistryError, "registry_error"),
        (VerificationError, "verification_error"),
        (ModuleTooLarge, "too_large"),
        (InvalidModule, "invalid_module"),
        (InvalidReference, "invalid_reference"),
        (StoreError, "store_error"),
    ):
        if isinstance(error, cls):
            return label
    return "error"


def _read_file_capped(location: str, max_bytes: int) -> bytes:
    path = Path(location).expanduser()
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise NotFound(f"module file {path} does not exist") from None
    except OSError as error:
        raise WasmError(f"module file {path} cannot be read: {error.strerror}") from None
    if len(data) > max_bytes:
        raise ModuleTooLarge(f"module file {path} is larger than the cap of {max_bytes} bytes")
    return data


def _small_file(location: str) -> bool:
    try:
        return Path(location).expanduser().stat().st_size <= SMALL_MODULE_BYTES
    except OSError:
        return False  # the read reports it


def _hash_file(path: Path) -> str | None:
    hasher = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
    except OSError:
        return None
    return hasher.hexdigest()


class ModuleStore:
    """Resolves :class:`ModuleSource` s to verified :class:`Module` s kept on disk.

    Lifecycle: construct (loads the index), ``await start()`` (opens HTTP), use,
    ``await close()``. :meth:`get` and :meth:`pin` work without ``start``.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_module_bytes: int = MAX_MODULE_BYTES,
        max_store_bytes: int | None = None,
        registries: Sequence[RegistrySettings] = (),
        docker_config: Path | None = None,
        resolve_interval: float = 300.0,
        env: Mapping[str, str] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        retries: int | None = None,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        request_timeout: float | None = None,
        limits: FetchLimits = DEFAULT_LIMITS,
        default_policy: AddressPolicy = DEFAULT_POLICY,
        resolver: AbstractResolver | None = None,
        client: RegistryClient | None = None,
    ) -> None:
        """Registry settings, the retry policy (``retry``, whose ``retries``,
        ``backoff_base`` and ``backoff_max`` fields the keywords of those names override),
        ``request_timeout`` (connect and per-read),
        ``limits`` (caps and timeouts) and ``default_policy`` (the fetch guard's policy for
        hosts without settings) and ``resolver`` (DNS) configure the client made here
        unless ``client`` is given. ``max_module_bytes`` caps each module."""
        self._root = Path(root)
        self._blobs = self._root / "blobs" / "sha256"
        self._index_path = self._root / "index.json"
        self._max_module_bytes = max_module_bytes
        self._max_store_bytes = max_store_bytes
        self._resolve_interval = resolve_interval
        self._client = client or RegistryClient(
            registries=registries,
            docker_config=docker_config,
            env=env,
            retry=retry,
            retries=retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            request_timeout=request_timeout,
            limits=limits,
            default_policy=default_policy,
            resolver=resolver,
        )
        self._own_client = client is None
        self._started = False
        self._inflight: dict[str, asyncio.Task[Module]] = {}
        self._pinned: frozenset[str] = frozenset()
        self._verified: set[str] = set()
        self._save_lock = asyncio.Lock()
        self._blobs.mkdir(parents=True, exist_ok=True)
        _fs.remove_stale_temp_files(self._blobs)
        _fs.remove_stale_temp_files(self._root)
        self._refs: dict[str, dict[str, Any]] = {}
        self._modules: dict[str, dict[str, Any]] = {}
        self._load_index()
        self._adopt_blobs()
        self._update_gauges()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The store directory."""
        return self._root

    @property
    def client(self) -> RegistryClient:
        """The registry client the store fetches with."""
        return self._client

    async def start(self) -> None:
        """Open the HTTP session. Must be called before :meth:`resolve`."""
        if self._own_client:
            await self._client.start()
        self._started = True

    async def close(self) -> None:
        """Cancel downloads in flight, then close the HTTP session."""
        self._started = False
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._own_client:
            await self._client.close()

    # -- index -------------------------------------------------------------------------

    def _load_index(self) -> None:
        try:
            data = json.loads(self._index_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.error("module_index_unreadable", path=str(self._index_path), error=str(error))
            return
        if not isinstance(data, dict) or data.get("version") != _INDEX_VERSION:
            log.error("module_index_unsupported", path=str(self._index_path))
            return
        modules = data.get("modules") or {}
        refs = data.get("refs") or {}
        for hex_digest, meta in modules.items():
            if isinstance(meta, dict) and (self._blobs / hex_digest).is_file():
                self._modules[hex_digest] = meta
        for key, entry in refs.items():
            if isinstance(entry, dict) and entry.get("sha256") in self._modules:
                self._refs[key] = entry

    def _adopt_blobs(self) -> None:
        """Index stored blobs the index does not list (it is not fsynced, so a crash can
        lose its last writes): each is hashed, and kept only if it matches its name."""
        for path in self._blobs.iterdir():
            name = path.name
            if name in self._modules or len(name) != 64 or name.startswith(_fs.TEMP_PREFIX):
                continue
            actual = _hash_file(path)
            if actual != name:
                log.warning("module_blob_discarded", path=str(path), received=actual)
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            self._modules[name] = {"size": stat.st_size, "last_used": stat.st_mtime}
            self._verified.add(name)
            log.info("module_blob_adopted", digest=f"sha256:{name}", size=stat.st_size)

    def _index_json(self) -> bytes:
        payload = {"version": _INDEX_VERSION, "modules": self._modules, "refs": self._refs}
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()

    async def _save_index(self) -> None:
        """Replace the index atomically, without fsync (see the module docstring): on the
        event loop when it is small, so a deploy makes no thread hop for it."""
        async with self._save_lock:
            data = self._index_json()
            if len(data) <= _INLINE_INDEX_BYTES:
                _fs.replace(self._index_path, data)
            else:
                await asyncio.to_thread(_fs.replace, self._index_path, data)

    def _update_gauges(self) -> None:
        STORE_MODULES.set(len(self._modules))
        STORE_BYTES.set(sum(int(m.get("size", 0)) for m in self._modules.values()))

    # -- queries -----------------------------------------------------------------------

    def _module_from(self, hex_digest: str, entry: Mapping[str, Any] | None) -> Module:
        meta = self._modules[hex_digest]
        entry = entry or {}
        return Module(
            sha256=hex_digest,
            size=int(meta.get("size", 0)),
            path=self._blobs / hex_digest,
            layout=str(entry.get("layout", meta.get("layout", "unknown"))),
            root_ids=tuple(entry.get("root_ids", meta.get("root_ids", ()))),
            reference=str(entry.get("reference", meta.get("reference", ""))),
            manifest_digest=entry.get("manifest_digest"),
            annotations=dict(entry.get("annotations", {})),
        )

    def get(self, sha256: str) -> Module | None:
        """The stored module with this sha256 (hex or ``sha256:<hex>``), or ``None``.

        Metadata comes from the reference that most recently resolved to it.
        """
        try:
            hex_digest = normalize_sha256(sha256)
        except InvalidReference:
            return None
        if hex_digest not in self._modules or not (self._blobs / hex_digest).is_file():
            return None
        self._modules[hex_digest]["last_used"] = time.time()
        entries = [e for e in self._refs.values() if e.get("sha256") == hex_digest]
        entry = max(entries, key=lambda e: float(e.get("resolved_at", 0)), default=None)
        return self._module_from(hex_digest, entry)

    def pin(self, digests: Iterable[str]) -> None:
        """Replace the set of modules in use; pinned modules are never evicted."""
        self._pinned = frozenset(normalize_sha256(d) for d in digests)

    def modules(self) -> list[Module]:
        """Every stored module (metadata from its latest reference)."""
        result = []
        for hex_digest in list(self._modules):
            module = self.get(hex_digest)
            if module is not None:
                result.append(module)
        return result

    # -- resolve -----------------------------------------------------------------------

    @staticmethod
    def _key(source: ModuleSource) -> tuple[str, ImageReference | None]:
        if source.kind == "image":
            ref = parse_reference(source.location)
            return f"image:{ref}", ref
        if source.kind == "file":
            return f"file:{Path(source.location).expanduser().resolve()}", None
        return f"url:{source.location}", None

    async def _stored(self, key: str) -> Module | None:
        entry = self._refs.get(key)
        if entry is None:
            return None
        hex_digest = str(entry.get("sha256"))
        if hex_digest not in self._modules:
            return None
        if hex_digest not in self._verified:
            actual = await asyncio.to_thread(_hash_file, self._blobs / hex_digest)
            if actual != hex_digest:
                log.error(
                    "module_store_corrupt", reference=key, digest=f"sha256:{hex_digest}",
                    received=f"sha256:{actual}" if actual else None,
                )
                await self._forget(hex_digest)
                return None
            self._verified.add(hex_digest)
        return self._module_from(hex_digest, entry)

    def _fresh(self, source: ModuleSource, ref: ImageReference | None, key: str) -> bool:
        if source.kind == "file":
            return False
        if source.kind == "url" or source.pull_policy == "IfNotPresent":
            return True
        if ref is not None and ref.digest:
            return True
        resolved_at = float(self._refs[key].get("resolved_at", 0))
        return time.time() - resolved_at < self._resolve_interval

    def _read_by(self, key: str, reader: str | None) -> bool:
        """True when the stored entry for ``key`` was fetched as ``reader`` (a registry
        username, ``""`` anonymous; ``None``: not an image). A stored image is served
        without asking the registry only to the identity that fetched it; entries from
        before identities were recorded count as fetched by anyone."""
        recorded = self._refs.get(key, {}).get("identity")
        return reader is None or recorded is None or recorded == reader

    async def resolve(
        self, source: ModuleSource, *, progress: ProgressCallback | None = None
    ) -> Module:
        """Return the verified module for ``source``, fetching and storing it if needed.

        ``IfNotPresent``: a reference in the store is not re-resolved, unless the registry
        identity in use (its username, or anonymous) differs from the one that fetched it:
        then the registry is asked again, as for a new reference. ``Always``: a tag
        resolved longer than ``resolve_interval`` ago is resolved again (digest references
        and URLs never are; local files are re-read every time). If a fetch fails while the
        store holds a module for this reference because the registry could not be reached
        or kept failing (connection errors, timeouts, 5xx), the failure is logged and the
        stored module returned; when the registry refused the credentials (401/403,
        :attr:`AuthError.refused`) the error is raised and the stored copy never served.
        Concurrent calls for one reference share one download. A
        ``sha256`` pin that the module does not match raises :class:`VerificationError`.
        """
        if not self._started:
            raise RuntimeError("ModuleStore is not started: call start() first")
        key, ref = self._key(source)
        pin = normalize_sha256(source.sha256) if source.sha256 else None
        stored = await self._stored(key)
        if stored is None and source.kind == "url" and pin in self._modules:
            stored = self.get(pin)
        usable = stored is not None and (pin is None or stored.sha256 == pin)
        reader = await self._client.identity(ref.endpoint_host) if ref is not None else None
        if (stored is not None and usable and self._fresh(source, ref, key)
                and self._read_by(key, reader)):
            CACHE_REQUESTS.labels("hit").inc()
            self._modules[stored.sha256]["last_used"] = time.time()
            log.debug("module_cache_hit", reference=key, digest=stored.digest)
            return stored
        CACHE_REQUESTS.labels("miss").inc()
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(source, key, ref, progress))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._fetch_done, key))
        try:
            module = await asyncio.shield(task)
        except WasmError as error:
            if stored is not None and usable and isinstance(error, AuthError) and error.refused:
                log.warning(
                    "module_resolve_credentials_refused", reference=key, digest=stored.digest,
                    status=error.status, error=str(error),
                )
                raise
            if stored is not None and usable:
                CACHE_REQUESTS.labels("stale").inc()
                log.warning(
                    "module_resolve_failed_serving_stored",
                    reference=key, digest=stored.digest, error=str(error),
                    error_type=type(error).__name__,
                )
                return stored
            raise
        if pin is not None and module.sha256 != pin:
            raise VerificationError(
                "module", reference=source.location, expected=f"sha256:{pin}",
                received=module.digest,
            )
        return module

    def _fetch_done(self, key: str, task: asyncio.Task[Module]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: callers got it through the shield

    async def _fetch_and_store(
        self,
        source: ModuleSource,
        key: str,
        ref: ImageReference | None,
        progress: ProgressCallback | None,
    ) -> Module:
        """Fetch, verify, validate and store the module of ``source``; record ``key``."""
        started = time.monotonic()
        kind = source.kind
        log.info("module_fetch_started", reference=key)
        try:
            fetched = await self._fetch(source, ref, progress)
            hex_digest, size = await self._install(fetched, source.location)
            module = await self._record(key, hex_digest, size, fetched)
        except WasmError as error:
            FETCHES.labels(kind, _result_label(error)).inc()
            log.warning(
                "module_fetch_failed", reference=key, error=str(error),
                error_type=type(error).__name__,
            )
            raise
        finally:
            FETCH_DURATION.labels(kind).observe(time.monotonic() - started)
        FETCHES.labels(kind, "ok").inc()
        log.info(
            "module_stored", reference=key, digest=module.digest, size=module.size,
            layout=module.layout, manifest_digest=module.manifest_digest,
        )
        return module

    async def _fetch(
        self, source: ModuleSource, ref: ImageReference | None,
        progress: ProgressCallback | None,
    ) -> _Fetched:
        """The module's bytes as fetched: in memory (files, compat images), or in memory
        and in a temp file in the blob directory, written while they downloaded (image
        layers that are the module, URLs), to be fsynced and named by :meth:`_install`."""
        if ref is not None:
            image = await fetch_image_module(
                self._client, ref, max_bytes=self._max_module_bytes, progress=progress,
                into=self._blobs,
            )
            try:
                identity = await self._client.identity(ref.endpoint_host)
            except BaseException:
                if image.path is not None:
                    with contextlib.suppress(OSError):
                        image.path.unlink()
                raise
            return _Fetched(
                reference=str(ref), layout=image.layout, data=image.data, path=image.path,
                sha256=image.sha256, root_ids=image.root_ids,
                manifest_digest=image.manifest_digest, annotations=image.annotations,
                identity=identity,
            )
        if source.kind == "url":
            body = await fetch_url(
                self._client.session, source.location,
                sha256=normalize_sha256(source.sha256 or ""), max_bytes=self._max_module_bytes,
                retry=self._client.retry_policy, into=self._blobs, keep=True, durable=False,
                progress=progress, limits=self._client.limits,
            )
            return _Fetched(reference=source.location, layout="url", data=body.data,
                            path=body.path, sha256=body.sha256)
        if _small_file(source.location):  # no thread hop for a small local module
            data = _read_file_capped(source.location, self._max_module_bytes)
        else:
            data = await asyncio.to_thread(
                _read_file_capped, source.location, self._max_module_bytes)
        return _Fetched(reference=source.location, layout="file", data=data)

    async def _install(self, fetched: _Fetched, location: str) -> tuple[str, int]:
        """Validate the fetched module and put it under its digest (unless already
        there); return (sha256 hex, size). A temp file is always consumed."""
        if fetched.path is not None:
            try:
                data = fetched.data
                if data is None:
                    data = await asyncio.to_thread(fetched.path.read_bytes)
                hex_digest = fetched.sha256 or await _sha256_hex(data)
                path = self._blobs / hex_digest
                if hex_digest not in self._modules or not path.is_file():
                    await self._validate_and_write(
                        data, hex_digest, location, path, temp=fetched.path
                    )
            finally:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(fetched.path.unlink)
            return hex_digest, len(data)
        data = fetched.data or b""
        if len(data) > self._max_module_bytes:
            raise ModuleTooLarge(
                f"module of {location} is {len(data)} bytes, above the cap of "
                f"{self._max_module_bytes} bytes"
            )
        hex_digest = fetched.sha256 or await _sha256_hex(data)
        path = self._blobs / hex_digest
        if hex_digest not in self._modules or not path.is_file():
            if len(data) <= SMALL_MODULE_BYTES:
                await self._validate(data, hex_digest, location)
                await self._write(path, location, data=data)
            else:
                await self._validate_and_write(data, hex_digest, location, path)
        return hex_digest, len(data)

    async def _validate_and_write(self, data: bytes | bytearray, hex_digest: str, location: str,
                                  path: Path, *, temp: Path | None = None) -> None:
        """Validate a large module and write (and fsync) its temp file at the same time,
        in two threads (wasmtime and the disk both release the GIL); the file gets its
        name only once both are done and validation passed. ``temp``: the bytes were
        already written there while they downloaded (and verified), only its fsync is
        left; the caller removes it if it is not installed."""
        where = f"module sha256:{hex_digest} of {location}"
        checked = asyncio.ensure_future(asyncio.to_thread(validate_module, data, where=where))
        try:
            if temp is None:
                temp = await asyncio.to_thread(_fs.write_temp, self._blobs, data)
            else:
                await asyncio.to_thread(_fs.fsync_file, temp)
        except OSError as error:
            checked.cancel()
            with contextlib.suppress(BaseException):
                await checked
            raise StoreError(
                f"module {hex_digest[:12]} of {location} cannot be stored in {self._blobs}: "
                f"{error.strerror or error}"
            ) from None
        except BaseException:
            checked.cancel()
            raise
        try:
            await checked
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        try:
            await self._write(path, location, temp=temp)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()  # gone once installed; left only when the rename failed

    async def _write(self, path: Path, location: str, *, data: bytes | bytearray = b"",
                     temp: Path | None = None) -> None:
        """Put a module's bytes (``data``, or the complete ``temp`` file) at ``path``
        atomically; raise :class:`StoreError` when the disk refuses."""
        try:
            if temp is not None:
                await asyncio.to_thread(_fs.install, temp, path)
            else:
                await asyncio.to_thread(_fs.atomic_write, path, data)
        except OSError as error:
            raise StoreError(
                f"module {path.name[:12]} of {location} cannot be stored in {path.parent}: "
                f"{error.strerror or error}"
            ) from None

    @staticmethod
    async def _validate(data: bytes | bytearray, hex_digest: str, location: str) -> None:
        where = f"module sha256:{hex_digest} of {location}"
        if len(data) <= SMALL_MODULE_BYTES:
            validate_module(data, where=where)
        else:
            await asyncio.to_thread(validate_module, data, where=where)

    async def _record(self, key: str, hex_digest: str, size: int, fetched: _Fetched) -> Module:
        """Index the stored module under ``key``, evict over capacity, save the index."""
        self._verified.add(hex_digest)
        now = time.time()
        self._modules[hex_digest] = {"size": size, "last_used": now}
        self._refs[key] = {
            "sha256": hex_digest,
            "resolved_at": now,
            "layout": fetched.layout,
            "root_ids": list(fetched.root_ids),
            "reference": fetched.reference,
            "manifest_digest": fetched.manifest_digest,
            "annotations": dict(fetched.annotations),
            "identity": fetched.identity,
        }
        await self._evict(keep=hex_digest)
        await self._save_index()
        self._update_gauges()
        return self._module_from(hex_digest, self._refs[key])

    # -- eviction ----------------------------------------------------------------------

    async def _forget(self, hex_digest: str) -> None:
        self._modules.pop(hex_digest, None)
        self._verified.discard(hex_digest)
        for key in [k for k, e in self._refs.items() if e.get("sha256") == hex_digest]:
            del self._refs[key]
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((self._blobs / hex_digest).unlink)
        self._update_gauges()

    async def _evict(self, *, keep: str) -> None:
        if self._max_store_bytes is None:
            return
        total = sum(int(m.get("size", 0)) for m in self._modules.values())
        if total <= self._max_store_bytes:
            return
        candidates = sorted(
            (h for h in self._modules if h != keep and h not in self._pinned),
            key=lambda h: float(self._modules[h].get("last_used", 0)),
        )
        for hex_digest in candidates:
            if total <= self._max_store_bytes:
                break
            size = int(self._modules[hex_digest].get("size", 0))
            await self._forget(hex_digest)
            total -= size
            log.info("module_evicted", digest=f"sha256:{hex_digest}", size=size)
        if total > self._max_store_bytes:
            log.warning(
                "module_store_over_capacity", total_bytes=total, cap=self._max_store_bytes
            )
