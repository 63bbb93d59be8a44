"""What the parts of the controller share: its components, the filter table, per-name
locks, change listeners and background tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from xds_server.cache import ResourceCache
from xds_server.controller._model import Deployed, FilterEvent, FilterState
from xds_server.controller._modules import ModuleProvider
from xds_server.controller.delivery import Delivery
from xds_server.state import StateStore


class Context:
    """Shared by the controller's parts; used from one event loop.

    `filters` maps a filter name to what this replica serves; an entry is replaced or
    changed only by code holding `lock(name)` (changes to one name are serialized,
    different names proceed concurrently). `delivery` may be replaced at any time (the
    server learns its admin URL after binding); readers take it when they build.
    """

    def __init__(self, cache: ResourceCache, modules: ModuleProvider, state: StateStore, *,
                 delivery: Delivery, replica_id: str) -> None:
        self.cache = cache
        self.modules = modules
        self.state = state
        self.delivery = delivery
        self.replica_id = replica_id
        self.filters: dict[str, FilterState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Callable[[FilterEvent], None]] = []
        self.delete_guards: list[Callable[[str], str | None]] = []
        """Asked before a filter is deleted: None to allow, or why not (e.g. a listener
        of this server names it); the delete is then refused with 409."""
        # A dry run every change passes before it is recorded or served (FilterError if not).
        self.preflight: Callable[[Sequence[Deployed]], Awaitable[None]] | None = None

    def lock(self, name: str) -> asyncio.Lock:
        """The lock serializing changes to filter `name`."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def subscribe(self, listener: Callable[[FilterEvent], None]) -> Callable[[], None]:
        """Call `listener` (synchronously; must not block or raise) on every filter
        change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def emit(self, event: FilterEvent) -> None:
        """Tell every listener about `event`."""
        for listener in tuple(self._listeners):
            listener(event)

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run `coro` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def digests_in_use(self) -> list[str]:
        """Every module digest a served or base spec runs, and the modules of each
        filter's rollback targets (the last contents served before, the last good revision),
        so that an automatic rollback never finds its module evicted."""
        return [*(d.module.sha256 for f in self.filters.values() for d in (*f.deployed, *f.base)),
                *(h for f in self.filters.values() for prev in f.previous_digests for h in prev),
                *(h for f in self.filters.values() for h in f.good_digests)]
