"""Desired filters -> verified modules -> TypedExtensionConfig resources -> the cache.

The only place where wasm modules meet xDS. Every accepted change is a new immutable
revision in the state store, then the cache is updated: a change that fails to resolve,
verify or record leaves the running version untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter

from xds_server.cache import TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant
from xds_server.config import Config, ConfigError, FilterSpec, parse_filter_spec
from xds_server.controller._extension import Code, build_extension_config
from xds_server.controller._modules import ModuleProvider, ResolvedModule
from xds_server.controller._remote import RemoteRepush
from xds_server.nodes import AllOf, NodeIdSet
from xds_server.state import ANY_REVISION, Conflict, Revision, StateError, StateStore
from xds_server.wasm import SMALL_MODULE_BYTES

log = structlog.get_logger("xds_server.controller")

FILTER_CHANGES = Counter(
    "xds_server_filter_changes_total", "Filter changes by action and result", ["action", "result"]
)

AUTO_ROLLBACKS = Counter(
    "xds_server_filter_auto_rollbacks_total", "Rollbacks triggered by a NACK", ["filter"]
)


class FilterError(Exception):
    """A filter change that cannot be applied; the running version stays.

    `name` is the filter, `message` says what was wrong and where, `status` the HTTP
    status that fits (400 invalid, 404 unknown, 409 conflict, 422 module unusable).
    """

    def __init__(self, name: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"filter {name!r}: {message}")
        self.name = name
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Deployed:
    """One spec as it is served: the spec, its module and the resource built from both."""

    spec: FilterSpec
    module: ResolvedModule
    resource: Resource
    alt: Resource | None = None  # remote delivery: the other equivalent form

    @property
    def versions(self) -> tuple[str, ...]:
        """Every xDS version this spec may be served as."""
        return (self.resource.version,) if self.alt is None else (self.resource.version, self.alt.version)


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where modules go for `file` and `remote` delivery.

    `module_dir`: directory this server writes modules to (a volume shared with Envoy);
    `envoy_module_dir`: the same directory as Envoy sees it (default: `module_dir`).
    `module_base_url`: URL prefix Envoy fetches `/modules/sha256/<hex>` from.
    """

    module_dir: Path | None = None
    envoy_module_dir: str | None = None
    module_base_url: str = "http://127.0.0.1:18080"


@dataclass(slots=True)
class FilterState:
    """What the controller serves for one filter name, and its last failure."""

    name: str
    revision: Revision | None = None
    deployed: tuple[Deployed, ...] = ()
    base: tuple[Deployed, ...] = ()
    error: str | None = None
    error_at: float | None = None
    good_revision: int | None = None
    remote_forms: dict[str, int] = field(default_factory=dict)  # node id -> form 1
    pending: tuple[FilterSpec, ...] = ()  # config specs not applied yet (retried)
    pending_key: str | None = None
    acks_unchecked: bool = False

    def refresh_good(self, acked_everywhere: Callable[[str, list[str]], bool]) -> int | None:
        """Update and return `good_revision`: the current revision once every connected
        proxy sent it has ACKed it. Checked lazily (ACKs only mark it due), so a push to
        N proxies costs O(N), not O(N^2)."""
        if self.acks_unchecked and self.revision is not None:
            self.acks_unchecked = False
            if acked_everywhere(self.name, self.all_versions):
                self.good_revision = self.revision.revision
        return self.good_revision

    @property
    def versions(self) -> list[str]:
        """xDS versions of the current revision, one per spec."""
        return [d.resource.version for d in self.deployed]

    @property
    def all_versions(self) -> list[str]:
        """Every xDS version the current revision may be served as (remote forms too)."""
        return [v for d in self.deployed for v in d.versions]

    @property
    def canary(self) -> bool:
        """True while a staged rollout waits for `promote`."""
        return any(d.spec.canary is not None for d in self.deployed)


@dataclass(frozen=True, slots=True)
class FilterEvent:
    """A change of a filter's served state: `kind` is deployed, deleted or rejected."""

    kind: str
    name: str
    revision: int
    action: str
    author: str
    message: str = ""
    at: float = field(default_factory=time.time)


def spec_key(specs: Iterable[FilterSpec]) -> str:
    """A stable hash of specs' JSON form (what the config file said)."""
    doc = json.dumps([s.to_dict() for s in specs], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


class Controller:
    """Keeps the cache's TypedExtensionConfig resources equal to the current revisions.

    Concurrency: changes to one name are serialized by a per-name lock; different names
    proceed concurrently. Public mutators raise `FilterError` with a clear message.
    """

    def __init__(
        self,
        cache: ResourceCache,
        modules: ModuleProvider,
        state: StateStore,
        *,
        delivery: Delivery | None = None,
        replica_id: str = "",
    ) -> None:
        self.replica_id = replica_id
        self.cache = cache
        self.modules = modules
        self.state = state
        self.delivery = delivery or Delivery()
        self.filters: dict[str, FilterState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.remote = RemoteRepush(self._flip_remote_form)
        self._listeners: list[Callable[[FilterEvent], None]] = []
        # A dry run every change passes before it is recorded or served (FilterError if not).
        self.preflight: Callable[[Sequence[Deployed]], Awaitable[None]] | None = None

    def subscribe(self, listener: Callable[[FilterEvent], None]) -> Callable[[], None]:
        """Call `listener` (synchronously; must not block or raise) on every filter
        change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: FilterEvent) -> None:
        for listener in tuple(self._listeners):
            listener(event)

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    # -- building -------------------------------------------------------------------

    async def build(self, spec: FilterSpec, *, digest: str | None = None) -> Deployed:
        """Resolve and verify the module of `spec` (by `digest` from the store when
        given and present) and build its resource."""
        module = None
        if digest is not None:
            module = self.modules.stored(digest) or await self._from_peers(spec, digest)
        if module is None:
            try:
                module = await self.modules.module_for(spec)
            except Exception as exc:
                raise FilterError(spec.name, f"module {spec.source.location}: {exc}") from exc
        pin = digest or spec.sha256
        if pin and module.sha256 != pin:
            raise FilterError(
                spec.name,
                f"module sha256 {module.sha256} does not match the expected sha256 {pin} "
                f"(source {module.reference})",
            )
        root_id = spec.root_id or (module.root_ids[0] if module.root_ids else "")
        # Reading, copying and hashing a large module happen off the event loop; for a
        # small one the thread hop would cost more than the work.
        offload = module.size > SMALL_MODULE_BYTES
        code = await asyncio.to_thread(self._code, spec, module) if offload else self._code(spec, module)
        message = build_extension_config(spec, code, root_id)
        resource = (await asyncio.to_thread(Resource.from_message, spec.name, message) if offload
                    else Resource.from_message(spec.name, message))
        alt = None
        if code.url is not None:
            alt_msg = build_extension_config(spec, replace(code, form=1), root_id)
            alt = await asyncio.to_thread(Resource.from_message, spec.name, alt_msg)
            # Both forms run the same module: a proxy holding either one is current.
            resource = replace(resource, aliases=frozenset({alt.version}))
            alt = replace(alt, aliases=frozenset({resource.version}))
        return Deployed(spec=spec, module=module, resource=resource, alt=alt)

    async def module_path(self, digest: str) -> Path | None:
        """The stored file of a module by digest; with replicas, fetched from a peer when
        this replica does not hold it (so any replica can answer Envoy's remote fetch)."""
        path = self.modules.module_path(digest)
        if path is None and digest in self._digests_in_use():
            module = await self._from_peers(None, digest)
            path = module.path if module is not None else None
        return path

    async def _from_peers(self, spec: FilterSpec | None, digest: str) -> ResolvedModule | None:
        """Fetch a module by digest from another replica's store (verified by digest),
        so a replica that starts while the registry is down serves what peers hold."""
        try:
            peers = await self.state.replicas()
        except StateError:
            return None
        for replica_id, url in sorted(peers.items()):
            if replica_id == self.replica_id or not url:
                continue
            try:
                module = await self.modules.fetch_by_digest(digest, f"{url.rstrip('/')}/modules/sha256/{digest}")
            except Exception as exc:
                log.info("peer_fetch_failed", filter=spec.name if spec else None, digest=digest,
                         replica=replica_id, error=str(exc))
                continue
            log.info("peer_fetch", filter=spec.name if spec else None, digest=digest, replica=replica_id)
            return module
        return None

    def _code(self, spec: FilterSpec, module: ResolvedModule) -> Code:
        if spec.delivery == "remote":
            base = self.delivery.module_base_url.rstrip("/")
            return Code(sha256=module.sha256, url=f"{base}/modules/sha256/{module.sha256}")
        if spec.delivery == "file":
            directory = self.delivery.module_dir
            if directory is None:
                raise FilterError(spec.name, "delivery 'file' needs server.module_dir in the config",
                                  status=400)
            directory.mkdir(parents=True, exist_ok=True)
            target = directory / f"{module.sha256}.wasm"
            if not target.exists():
                tmp = directory / f".{module.sha256}.tmp"
                shutil.copyfile(module.path, tmp)
                tmp.replace(target)
            envoy_dir = self.delivery.envoy_module_dir or str(directory)
            return Code(sha256=module.sha256, filename=f"{envoy_dir.rstrip('/')}/{target.name}")
        return Code(sha256=module.sha256, inline=module.read_bytes())

    async def _build_all(self, specs: Sequence[FilterSpec],
                         digests: Sequence[str | None] = ()) -> tuple[Deployed, ...]:
        pins = list(digests) + [None] * (len(specs) - len(digests))
        return tuple(await asyncio.gather(*(self.build(s, digest=d) for s, d in zip(specs, pins, strict=True))))

    def _publish(self, name: str, deployed: Sequence[Deployed], base: Sequence[Deployed],
                 remote_forms: dict[str, int] | None = None) -> None:
        variants: list[Variant] = []
        flipped = frozenset(n for n, form in (remote_forms or {}).items() if form == 1)
        if flipped:
            for d in deployed:
                if d.alt is not None:
                    sel = d.spec.selector if d.spec.canary is None else AllOf((d.spec.canary, d.spec.selector))
                    variants.append(Variant(AllOf((NodeIdSet(flipped), sel)), d.alt))
        for d in deployed:
            if d.spec.canary is not None:
                variants.append(Variant(AllOf((d.spec.canary, d.spec.selector)), d.resource))
        variants += [Variant(b.spec.selector, b.resource) for b in base]
        variants += [Variant(d.spec.selector, d.resource) for d in deployed if d.spec.canary is None]
        self.cache.set(TYPED_EXTENSION_CONFIG, name, variants)
        self.modules.pin(self._digests_in_use())

    def _digests_in_use(self) -> list[str]:
        return [d.module.sha256 for f in self.filters.values() for d in (*f.deployed, *f.base)]

    # -- changes --------------------------------------------------------------------

    async def deploy(
        self,
        name: str,
        specs: Sequence[FilterSpec],
        *,
        author: str,
        action: str = "deploy",
        summary: str = "",
        digests: Sequence[str | None] = (),
        config_hash: str | None = None,
        expect_revision: int | None = None,
    ) -> FilterState:
        """Make `specs` the filter's new revision, or raise and change nothing.

        A change whose content equals the current revision records nothing new.
        A spec with a `canary` selector is served to canary nodes only; other nodes keep
        the current revision until `promote`. The write is a compare-and-set against
        the revision this replica serves (or `expect_revision`): if another replica
        changed the filter meanwhile, this one catches up and the call fails with 409.
        """
        if not specs:
            raise FilterError(name, "no specs given", status=400)
        for s in specs:
            if s.name != name:
                raise FilterError(name, f"spec names filter {s.name!r}, not {name!r}", status=400)
        async with self._lock(name):
            state = self.filters.get(name) or FilterState(name=name)
            try:
                deployed = await self._build_all(specs, digests)
                if self.preflight is not None:
                    await self.preflight(deployed)
            except FilterError as exc:
                state.error, state.error_at = exc.message, time.time()
                if action == "config":
                    state.pending, state.pending_key = tuple(specs), config_hash
                if name in self.filters or action == "config":
                    # A filter the config file asks for stays known (not ready) until it
                    # gets a module, and is retried; a refused API change of a new name
                    # leaves no trace.
                    self.filters[name] = state
                FILTER_CHANGES.labels(action, "rejected").inc()
                log.error("filter_rejected", filter=name, action=action, error=exc.message,
                          serving=state.versions, author=author)
                self._emit(FilterEvent("rejected", name, state.revision.revision if state.revision else 0,
                                       action, author, exc.message))
                raise
            base: tuple[Deployed, ...] = ()
            if any(d.spec.canary is not None for d in deployed):
                base = state.base if state.canary else tuple(
                    d for d in state.deployed if d.spec.canary is None
                )
            same = (
                state.revision is not None
                and [d.resource.version for d in deployed] == state.versions
                and [d.spec.to_dict() for d in deployed] == [d.spec.to_dict() for d in state.deployed]
            )
            if same:
                if config_hash is not None:
                    await self.state.set_config_hash(name, config_hash)
                state.error = state.error_at = None
                return state
            expect = expect_revision if expect_revision is not None else (
                state.revision.revision if state.revision is not None else ANY_REVISION)
            try:
                revision = await self.state.append(
                    name, author=author, action=action,
                    summary=summary or _summary(state, deployed),
                    specs=[d.spec.to_dict() for d in deployed],
                    digests=[d.module.sha256 for d in deployed],
                    versions=[d.resource.version for d in deployed],
                    base_revision=state.revision.revision if base and state.revision else None,
                    config_hash=config_hash,
                    expect_current=expect,
                    verdicts=[dict(d.module.verdict or {}) for d in deployed],
                )
            except Conflict as exc:
                FILTER_CHANGES.labels(action, "conflict").inc()
                await self._sync_locked(name)
                raise FilterError(name, f"{exc}; this server now serves the current revision, "
                                  "retry the change if it still applies", status=409) from exc
            except StateError as exc:
                FILTER_CHANGES.labels(action, "error").inc()
                raise FilterError(name, str(exc), status=503) from exc
            state.revision, state.deployed, state.base = revision, deployed, base
            state.error = state.error_at = None
            state.remote_forms = {}
            state.pending, state.pending_key = (), None
            self.filters[name] = state
            self._publish(name, deployed, base)
            FILTER_CHANGES.labels(action, "applied").inc()
            self._emit(FilterEvent("deployed", name, revision.revision, action, author, revision.summary))
            for d in deployed:
                log.info("filter_version", filter=name, revision=revision.revision, action=action,
                         version=d.resource.version, digest=d.module.sha256, author=author,
                         source=d.module.reference, selector=d.spec.selector.describe(),
                         canary=d.spec.canary.describe() if d.spec.canary else None)
            return state

    async def delete(self, name: str, *, author: str, forget_config: bool = False) -> Revision:
        """Stop serving the filter; recorded as a revision with no specs.

        The config file's last word on the filter is kept (so an unchanged file does not
        bring it back) unless `forget_config`.
        """
        async with self._lock(name):
            state = self.filters.get(name)
            if state is None:
                raise FilterError(name, "no such filter", status=404)
            try:
                revision = await self.state.append(
                    name, author=author, action="delete", summary="deleted", specs=[],
                    digests=[], versions=[],
                    expect_current=state.revision.revision if state.revision else ANY_REVISION,
                )
                if forget_config:
                    await self.state.set_config_hash(name, None)
            except Conflict as exc:
                await self._sync_locked(name)
                raise FilterError(name, f"{exc}; retry the delete if it still applies", status=409) from exc
            except StateError as exc:
                raise FilterError(name, str(exc), status=503) from exc
            del self.filters[name]
            self.cache.delete(TYPED_EXTENSION_CONFIG, name)
            self.modules.pin(self._digests_in_use())
            FILTER_CHANGES.labels("delete", "applied").inc()
            self._emit(FilterEvent("deleted", name, revision.revision, "delete", author))
            log.info("filter_removed", filter=name, revision=revision.revision, author=author)
            return revision

    def _specs_of(self, revision: Revision) -> list[FilterSpec]:
        try:
            return [parse_filter_spec(s, where=f"revision {revision.revision} of {revision.filter}")
                    for s in revision.specs]
        except ConfigError as exc:
            raise FilterError(revision.filter, str(exc), status=500) from exc

    async def rollback(self, name: str, *, author: str, to: int | str | None = None,
                       action: str = "rollback", reason: str = "",
                       expect_revision: int | None = None) -> FilterState:
        """Serve an earlier revision's content again, as a new revision.

        `to`: a revision number (`7` or `"v7"`) or an xDS version it served; default:
        the newest earlier revision whose content differs from the current one. Its
        modules come from the store by digest.
        """
        state = self.filters.get(name)
        current = state.revision if state and state.revision else await self.state.current(name)
        if current is None:
            raise FilterError(name, "no such filter", status=404)
        if isinstance(to, str):  # "7", "v7", or an xDS version
            digits = to[1:] if to[:1] in ("v", "V") else to
            if digits.isdigit():
                to = int(digits)
            else:
                found = next((r.revision for r in await self.state.history(name, limit=10_000)
                              if not r.deleted and to in r.versions), None)
                if found is None:
                    raise FilterError(name, f"no revision served xDS version {to!r}", status=404)
                to = found
        if to is not None:
            target = await self.state.get(name, to)
            if target is None or target.deleted:
                raise FilterError(name, f"no revision {to} with content to roll back to", status=404)
        else:
            target = next(
                (r for r in await self.state.history(name, limit=1000)
                 if r.revision < current.revision and not r.deleted and r.versions != current.versions),
                None,
            )
            if target is None:
                raise FilterError(name, "no earlier revision to roll back to", status=409)
        specs = self._specs_of(target)
        summary = f"rollback to revision {target.revision}" + (f": {reason}" if reason else "")
        return await self.deploy(name, specs, author=author, action=action, summary=summary,
                                 digests=target.digests, expect_revision=expect_revision)

    async def promote(self, name: str, *, author: str) -> FilterState:
        """Widen a canary revision to its full selectors."""
        state = self.filters.get(name)
        if state is None:
            raise FilterError(name, "no such filter", status=404)
        if not state.canary:
            raise FilterError(name, "no canary to promote: the current revision serves every "
                              "targeted node already", status=409)
        specs = [replace(d.spec, canary=None) for d in state.deployed]
        return await self.deploy(name, specs, author=author, action="promote",
                                 summary="promoted canary to all targeted nodes",
                                 digests=[d.module.sha256 for d in state.deployed])

    # -- start-up and config --------------------------------------------------------

    async def _load(self, rev: Revision) -> FilterState:
        """Build what a stored revision serves (modules by digest: store, peers, source)."""
        deployed = await self._build_all(self._specs_of(rev), rev.digests)
        base: tuple[Deployed, ...] = ()
        if rev.base_revision is not None:
            base_rev = await self.state.get(rev.filter, rev.base_revision)
            if base_rev is not None and not base_rev.deleted:
                base = tuple(d for d in await self._build_all(
                    self._specs_of(base_rev), base_rev.digests) if d.spec.canary is None)
        return FilterState(name=rev.filter, revision=rev, deployed=deployed, base=base)

    async def restore(self) -> list[FilterError]:
        """Serve every filter's current revision from the state store, modules by digest.

        Versions derive from content, so what is served equals what was served before
        the restart (or by another replica), and Envoy reloads nothing.
        """
        errors: list[FilterError] = []
        for rev in await self.state.current_all():
            async with self._lock(rev.filter):
                try:
                    await self._adopt(rev)
                except FilterError as exc:
                    errors.append(exc)
        return errors

    async def _adopt(self, rev: Revision) -> None:
        """Serve stored revision `rev` (another replica's change, or a restart)."""
        try:
            new = await self._load(rev)
        except FilterError as exc:
            old = self.filters.get(rev.filter)
            if old is None or not old.deployed:
                self.filters[rev.filter] = FilterState(
                    name=rev.filter, revision=rev, error=exc.message, error_at=time.time())
            else:
                old.error, old.error_at = exc.message, time.time()
            log.error("filter_restore_failed", filter=rev.filter, revision=rev.revision, error=exc.message)
            raise
        old = self.filters.get(rev.filter)
        if old is not None:
            new.good_revision = old.good_revision
        self.filters[rev.filter] = new
        self._publish(rev.filter, new.deployed, new.base)
        self._emit(FilterEvent("deployed", rev.filter, rev.revision, rev.action, rev.author, rev.summary))
        log.info("filter_restored", filter=rev.filter, revision=rev.revision,
                 versions=[d.resource.version for d in new.deployed])

    async def _sync_locked(self, name: str) -> None:
        """Catch up with the store's current revision of `name` (caller holds the lock)."""
        rev = await self.state.current(name)
        state = self.filters.get(name)
        if rev is None:
            return
        if rev.deleted:
            if state is not None and state.revision is not None:
                del self.filters[name]
                self.cache.delete(TYPED_EXTENSION_CONFIG, name)
                self._emit(FilterEvent("deleted", name, rev.revision, "delete", rev.author))
                log.info("filter_removed", filter=name, revision=rev.revision, author=rev.author)
            return
        if state is not None and state.revision is not None and state.revision.revision == rev.revision:
            return
        with contextlib.suppress(FilterError):
            await self._adopt(rev)

    async def sync(self, name: str, revision: int | None = None) -> None:
        """Serve the store's current revision of `name` if this replica is behind."""
        state = self.filters.get(name)
        if (revision is not None and state is not None and state.revision is not None
                and state.revision.revision >= revision):
            return
        async with self._lock(name):
            await self._sync_locked(name)

    def on_store_change(self, name: str, revision: int) -> None:
        """A replica recorded a revision (LISTEN/NOTIFY): catch up soon."""
        task = asyncio.ensure_future(self.sync(name, revision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile(self) -> None:
        """Compare every filter with the store and catch up (covers lost notifications)."""
        current = {r.filter: r.revision for r in await self.state.current_all()}
        for name in set(current) | {n for n, s in self.filters.items() if s.revision is not None}:
            state = self.filters.get(name)
            have = state.revision.revision if state is not None and state.revision is not None else None
            if current.get(name) != have and not (state is not None and state.pending):
                await self.sync(name)

    async def apply_config(self, config: Config, *, author: str = "config") -> list[FilterError]:
        """Apply what the config file says, name by name, where it changed.

        A name whose specs equal what the file said last time is left alone (so changes
        made through the API survive a restart). A name the file no longer lists is
        removed if it came from the file. Returns the names that failed.
        """
        by_name: dict[str, list[FilterSpec]] = {}
        for spec in config.filters:
            by_name.setdefault(spec.name, []).append(spec)
        known = await self.state.config_hashes()
        jobs: list[Coroutine[Any, Any, object]] = []
        for name, specs in sorted(by_name.items()):
            key = spec_key(specs)
            if known.get(name) == key:
                continue  # the file did not change for this name: keep what the API made of it
            jobs.append(self.deploy(name, specs, author=author, action="config",
                                    summary="from the configuration file", config_hash=key))
        for name, old_key in known.items():
            if old_key is not None and name not in by_name and name in self.filters:
                jobs.append(self.delete(name, author=author, forget_config=True))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FilterError):
                raise r
        errors = [r for r in results if isinstance(r, FilterError)]
        if any(e.status == 409 for e in errors):
            # Another replica applied this file first: that is the "once" we want.
            known = await self.state.config_hashes()
            errors = [e for e in errors if not (e.status == 409 and known.get(e.name) == spec_key(
                by_name.get(e.name, [])))]
        return errors

    # -- pull policy Always -----------------------------------------------------------

    async def retry_pending(self) -> list[str]:
        """Retry config filters that could not be applied yet (e.g. the registry was
        down at start-up). Returns the names that now serve."""
        done = []
        for name, state in list(self.filters.items()):
            if not state.pending:
                continue
            try:
                await self.deploy(name, state.pending, author="system:retry", action="config",
                                  summary="from the configuration file (retried)",
                                  config_hash=state.pending_key)
            except FilterError:
                continue
            done.append(name)
        return done

    async def refresh_once(self) -> list[str]:
        """Re-resolve every `pull_policy: Always` image spec; deploy what moved.

        A tag that now names another module becomes a new revision (action
        `tag-update`). A registry that is down changes nothing: the filter keeps its
        module and the next round tries again. Returns the names that changed.
        """
        changed = []
        for name, state in list(self.filters.items()):
            specs = [d.spec for d in state.deployed]
            if not any(s.pull_policy == "Always" and s.source.kind == "image" for s in specs):
                continue
            try:
                modules = await asyncio.gather(*(self.modules.module_for(s) for s in specs))
            except Exception as exc:
                FILTER_CHANGES.labels("tag-update", "fetch_failed").inc()
                log.warning("tag_refresh_failed", filter=name, error=str(exc),
                            serving=state.versions)
                continue
            old = [d.module.sha256 for d in state.deployed]
            new = [m.sha256 for m in modules]
            if new == old or state.canary:
                continue
            try:
                await self.deploy(name, specs, author="system:pull-always", action="tag-update",
                                  summary="tag moved: " + ", ".join(
                                      f"{o[:12]} -> {n[:12]}" for o, n in zip(old, new, strict=True) if o != n),
                                  digests=new)
            except FilterError:
                continue
            changed.append(name)
        return changed

    async def refresh_forever(self, interval: float, *, retry_interval: float = 5.0) -> None:
        """Until cancelled: retry pending config filters every `retry_interval` seconds
        and re-resolve `Always` tags every `interval` seconds."""
        loop = asyncio.get_running_loop()
        next_tags = loop.time() + interval
        while True:
            await asyncio.sleep(min(retry_interval, interval))
            try:
                await self.retry_pending()
                if loop.time() >= next_tags:
                    next_tags = loop.time() + interval
                    await self.refresh_once()
            except Exception as exc:  # never let the loop die
                log.error("refresh_error", error=str(exc))

    # -- NACK policy ----------------------------------------------------------------

    def on_proxy_report(self, kind: str, node_id: str, resources: dict[str, str],
                        message: str, acked_everywhere: Any,
                        running: Callable[[str, str], str] | None = None) -> None:
        """React to an ACK or NACK (called from status events; never blocks).

        ACK: the revision becomes the filter's last good one once every connected proxy
        sent it has ACKed it. NACK of the current revision with `on_nack: rollback`: go
        back, once fleet-wide, to the newest earlier revision serving what the NACKing
        proxy still runs (`running(node_id, name)`: its last ACKed version), else to
        the last good revision.
        """
        for name, version in resources.items():
            state = self.filters.get(name)
            if state is None or state.revision is None or version not in state.all_versions:
                continue
            if kind == "ack":
                self.remote.on_ack(name, node_id)
                state.acks_unchecked = True
            elif kind == "nack":
                d = next(d for d in state.deployed if version in d.versions)
                if d.alt is not None and self.remote.on_nack(name, node_id, d.module.sha256, message):
                    continue
                policy = d.spec.on_nack
                log.warning("filter_nacked", filter=name, version=version, node_id=node_id,
                            revision=state.revision.revision, error=message, on_nack=policy)
                if policy != "rollback":
                    continue
                bad = state.revision.revision
                state.refresh_good(acked_everywhere)
                keep = running(node_id, name) if running is not None else ""
                reason = f"NACK from {node_id} of revision {bad}: {message}"
                task = asyncio.ensure_future(self._auto_rollback(name, bad, keep, state.good_revision, reason))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    # -- remote delivery ------------------------------------------------------------

    def on_module_fetched(self, sha256: str) -> None:
        """The admin server finished sending a module (`GET /modules/sha256/<hex>`)."""
        self.remote.on_module_fetched(sha256)

    async def _flip_remote_form(self, name: str, node_id: str) -> None:
        async with self._lock(name):
            state = self.filters.get(name)
            if state is None:
                return
            state.remote_forms[node_id] = 1 - state.remote_forms.get(node_id, 0)
            self._publish(name, state.deployed, state.base, state.remote_forms)
            log.info("remote_repush", filter=name, node_id=node_id, form=state.remote_forms[node_id])

    async def _auto_rollback(self, name: str, bad: int, running: str, good: int | None,
                             reason: str) -> None:
        state = self.filters.get(name)
        if state is None or state.revision is None or state.revision.revision != bad:
            return  # already moved on: roll back once
        if running:
            target = next((r.revision for r in await self.state.history(name, limit=1000)
                           if r.revision < bad and not r.deleted and running in r.versions), None)
            good = target or good
        if good is None or good >= bad:
            log.error("auto_rollback_impossible", filter=name, revision=bad,
                      reason="no earlier revision is known to run on the proxies")
            return
        try:
            await self.rollback(name, author="system:on_nack", to=good, action="auto-rollback",
                                reason=reason, expect_revision=bad)
        except FilterError as exc:
            if exc.status == 409:
                log.info("auto_rollback_done_elsewhere", filter=name, from_revision=bad)
                return
            log.error("auto_rollback_failed", filter=name, error=exc.message)
            return
        AUTO_ROLLBACKS.labels(name).inc()
        log.warning("auto_rollback", filter=name, from_revision=bad, to_revision=good, reason=reason)

    @property
    def ready(self) -> bool:
        """True when every desired filter has a module and is being served."""
        return all(s.deployed for s in self.filters.values())


def _summary(state: FilterState, deployed: Sequence[Deployed]) -> str:
    before = {d.spec.selector.describe(): d for d in state.deployed}
    parts = []
    for d in deployed:
        old = before.get(d.spec.selector.describe())
        what = f"module {d.module.sha256[:12]} from {d.module.reference}"
        if old is None:
            parts.append(f"new spec for {d.spec.selector.describe()}: {what}")
        elif old.module.sha256 != d.module.sha256:
            parts.append(f"module {old.module.sha256[:12]} -> {d.module.sha256[:12]}")
        elif old.resource.version != d.resource.version:
            parts.append("settings changed (same module)")
        if d.spec.canary is not None:
            parts.append(f"canary {d.spec.canary.describe()}")
    return "; ".join(parts) or "no change"
