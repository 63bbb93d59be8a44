"""Desired filters -> verified modules -> TypedExtensionConfig resources -> the cache.

The only place where wasm modules meet xDS. A change to a filter name is applied all or
nothing: if any of its specs fails to resolve or build, the name keeps serving what it
served before and the failure is recorded and raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from xds_server.cache import TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant
from xds_server.config import Config, FilterSpec
from xds_server.controller._extension import Code, build_extension_config
from xds_server.controller._modules import ModuleProvider, ResolvedModule

log = structlog.get_logger("xds_server.controller")


class FilterError(Exception):
    """A filter change that cannot be applied; the running version stays.

    `name` is the filter, `message` says what was wrong and where.
    """

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"filter {name!r}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True, slots=True)
class Deployed:
    """One spec as it is served: the spec, its module and the resource built from both."""

    spec: FilterSpec
    module: ResolvedModule
    resource: Resource


@dataclass(slots=True)
class FilterState:
    """What the controller serves for one filter name, and its last failure."""

    name: str
    deployed: tuple[Deployed, ...] = ()
    error: str | None = None
    error_at: float | None = None
    updated_at: float = field(default_factory=time.time)


class Controller:
    """Keeps the cache's TypedExtensionConfig resources equal to the desired specs.

    Concurrency: changes to one name are serialized by a per-name lock; different names
    resolve concurrently. `apply_config` applies every name of a config.
    """

    def __init__(self, cache: ResourceCache, modules: ModuleProvider) -> None:
        self.cache = cache
        self.modules = modules
        self.filters: dict[str, FilterState] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    async def build(self, spec: FilterSpec) -> Deployed:
        """Resolve and verify the module of `spec` and build its resource."""
        try:
            module = await self.modules.module_for(spec)
        except Exception as exc:
            raise FilterError(spec.name, str(exc)) from exc
        if spec.sha256 and module.sha256 != spec.sha256:
            raise FilterError(
                spec.name,
                f"module sha256 {module.sha256} does not match the pinned sha256 {spec.sha256} "
                f"(source {module.reference})",
            )
        root_id = spec.root_id or (module.root_ids[0] if module.root_ids else "")
        code = await asyncio.to_thread(self._code, spec, module)
        message = build_extension_config(spec, code, root_id)
        resource = await asyncio.to_thread(Resource.from_message, spec.name, message)
        return Deployed(spec=spec, module=module, resource=resource)

    def _code(self, spec: FilterSpec, module: ResolvedModule) -> Code:
        return Code(sha256=module.sha256, inline=module.read_bytes())

    async def set_filter(self, name: str, specs: Sequence[FilterSpec]) -> FilterState:
        """Serve `specs` (all of name `name`) or, if any fails, keep what was served.

        Raises `FilterError` on failure after recording it in the filter's state.
        An empty `specs` removes the filter.
        """
        async with self._lock(name):
            state = self.filters.get(name) or FilterState(name=name)
            try:
                deployed = tuple(await asyncio.gather(*(self.build(s) for s in specs)))
            except FilterError as exc:
                state.error, state.error_at = exc.message, time.time()
                if state.deployed or name in self.filters:
                    self.filters[name] = state
                log.error("filter_rejected", filter=name, error=exc.message,
                          serving=[d.resource.version for d in state.deployed])
                raise
            variants = [Variant(d.spec.selector, d.resource) for d in deployed]
            changed = self.cache.set(TYPED_EXTENSION_CONFIG, name, variants)
            if not specs:
                self.filters.pop(name, None)
                log.info("filter_removed", filter=name)
                return FilterState(name=name)
            state.deployed, state.error, state.error_at = deployed, None, None
            if changed:
                state.updated_at = time.time()
                for d in deployed:
                    log.info("filter_version", filter=name, version=d.resource.version,
                             digest=d.module.sha256, source=d.module.reference,
                             selector=d.spec.selector.describe())
            self.filters[name] = state
            return state

    async def apply_config(self, config: Config) -> list[FilterError]:
        """Make the served filters those of `config`. Returns the names that failed.

        Names absent from `config` are removed; a name that fails keeps its old version.
        """
        by_name: dict[str, list[FilterSpec]] = {}
        for spec in config.filters:
            by_name.setdefault(spec.name, []).append(spec)
        for gone in set(self.filters) - set(by_name):
            by_name[gone] = []
        results = await asyncio.gather(
            *(self.set_filter(n, s) for n, s in sorted(by_name.items())), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, FilterError)]
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FilterError):
                raise r
        return errors

    @property
    def ready(self) -> bool:
        """True when every desired filter has a module and is being served."""
        return all(s.deployed for s in self.filters.values())
