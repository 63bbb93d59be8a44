"""The `Controller`: desired filters -> verified modules -> TypedExtensionConfig
resources -> the cache, composed of one part per concern.

The only place where wasm modules meet xDS. Every accepted change is a new immutable
revision in the state store, then the cache is updated: a change that fails to resolve,
verify or record leaves the running version untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from xds_server.cache import ResourceCache
from xds_server.controller._analysis import Analysis, HealthReader
from xds_server.controller._build import Builder
from xds_server.controller._changes import Changes
from xds_server.controller._config import ConfigApplier
from xds_server.controller._context import Context
from xds_server.controller._debug import DebugOverrides, debug_of
from xds_server.controller._model import Deployed, FilterState
from xds_server.controller._modules import ModuleProvider
from xds_server.controller._nack import NackPolicy
from xds_server.controller._remote import RemoteRepush
from xds_server.controller._sync import ReplicaSync
from xds_server.controller.delivery import Delivery
from xds_server.state import StateStore


class Controller:
    """Keeps the cache's TypedExtensionConfig resources equal to the current revisions.

    Its methods come from its parts: building and delivery (`build`, `module_path`,
    `on_module_fetched`), changes (`deploy`, `delete`, `rollback`, `promote`), restore
    and replica sync (`restore`, `sync`, `on_store_change`, `reconcile`), the config
    file and pull-`Always` refresh (`apply_config`, `retry_pending`, `refresh_once`,
    `refresh_forever`), the NACK policy (`on_proxy_report`), debug overrides
    (`debug`, `end_debug`) and health-gated rollouts (`analyze_forever`,
    `analysis_tick`, `analysis_view`).

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
        ctx = self._ctx = Context(cache, modules, state, delivery=delivery or Delivery(),
                                  replica_id=replica_id)
        builder = Builder(ctx)
        self.remote = RemoteRepush(builder.flip_form)
        sync = ReplicaSync(ctx, builder)
        changes = Changes(ctx, builder, sync)
        config = ConfigApplier(ctx, changes, sync)
        nack = NackPolicy(ctx, changes, self.remote)
        self.subscribe = ctx.subscribe
        self.delete_guards = ctx.delete_guards
        self.build, self.module_path = builder.build, builder.module_path
        self.on_module_fetched = self.remote.on_module_fetched
        self.deploy, self.delete = changes.deploy, changes.delete
        self.rollback, self.promote = changes.rollback, changes.promote
        self.restore, self.sync = sync.restore, sync.sync
        self.on_store_change, self.reconcile = sync.on_store_change, sync.reconcile
        self.apply_config, self.retry_pending = config.apply_config, config.retry_pending
        self.refresh_once, self.refresh_forever = config.refresh_once, config.refresh_forever
        self.on_proxy_report = nack.on_proxy_report
        debug = DebugOverrides(ctx, changes)
        self.debug, self.end_debug = debug.start, debug.end
        self.analysis = Analysis(ctx, changes, debug)
        self.analysis_tick, self.analysis_view = self.analysis.tick, self.analysis.view

    def attach_health(self, health: HealthReader, *, bucket_seconds: int = 10, settle: float = 3.0) -> None:
        """Base analyses and the runtime-failure policy on `health` (buckets
        `bucket_seconds` wide; an interval is judged `settle` seconds after its end)."""
        self.analysis.attach(health, bucket_seconds=bucket_seconds, settle=settle)

    async def analyze_forever(self, tick: float = 1.0) -> None:
        """Run analyses, the runtime-failure policy and debug expiry every `tick`
        seconds until cancelled."""
        await self.analysis.run(tick)

    def debug_view(self, name: str) -> dict[str, Any] | None:
        """The debug override the filter runs (node, configuration, expires_at), or None."""
        state = self._ctx.filters.get(name)
        return debug_of(state.revision) if state is not None else None

    @property
    def preflight(self) -> Callable[[Sequence[Deployed]], Awaitable[None]] | None:
        """The dry run every change passes before it is recorded or served (raises
        `FilterError` to refuse it); None: no dry run."""
        return self._ctx.preflight

    @preflight.setter
    def preflight(self, gate: Callable[[Sequence[Deployed]], Awaitable[None]] | None) -> None:
        self._ctx.preflight = gate

    @property
    def cache(self) -> ResourceCache:
        """The cache the resources are served from."""
        return self._ctx.cache

    @property
    def modules(self) -> ModuleProvider:
        """Where verified modules come from."""
        return self._ctx.modules

    @property
    def state(self) -> StateStore:
        """The durable revisions (shared by replicas)."""
        return self._ctx.state

    @property
    def replica_id(self) -> str:
        """This replica's id ("" with one process)."""
        return self._ctx.replica_id

    @property
    def filters(self) -> dict[str, FilterState]:
        """What this replica serves, by filter name (read-only for callers)."""
        return self._ctx.filters

    @property
    def delivery(self) -> Delivery:
        """The delivery settings; replaceable (the admin URL is known after binding),
        taken by the next build."""
        return self._ctx.delivery

    @delivery.setter
    def delivery(self, value: Delivery) -> None:
        self._ctx.delivery = value

    @property
    def ready(self) -> bool:
        """True when every desired filter has a module and is being served."""
        return all(s.deployed for s in self._ctx.filters.values())
