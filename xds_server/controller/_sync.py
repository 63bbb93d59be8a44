"""Restore and replica sync: serve what the state store holds, after a restart or when
another replica recorded a revision."""

from __future__ import annotations

import contextlib
import time

import structlog

from xds_server.controller._build import Builder
from xds_server.controller._context import Context
from xds_server.controller._model import (
    KEEP_PREVIOUS,
    Deployed,
    FilterError,
    FilterEvent,
    FilterState,
    remember_previous,
    specs_of,
)
from xds_server.resources import is_resource_key
from xds_server.state import Revision

log = structlog.get_logger("xds_server.controller")


class ReplicaSync:
    """Keeps this replica's served filters equal to the store's current revisions.

    Versions derive from content, so what is served after a restore equals what was
    served before (or by another replica), and Envoy reloads nothing.
    """

    def __init__(self, ctx: Context, builder: Builder) -> None:
        self.ctx = ctx
        self.builder = builder

    async def _load(self, rev: Revision) -> FilterState:
        """Build what a stored revision serves (modules by digest: store, peers, source)."""
        deployed = await self.builder.build_all(specs_of(rev), rev.digests)
        base: tuple[Deployed, ...] = ()
        if rev.base_revision is not None:
            base_rev = await self.ctx.state.get(rev.filter, rev.base_revision)
            if base_rev is not None and not base_rev.deleted:
                base = tuple(d for d in await self.builder.build_all(
                    specs_of(base_rev), base_rev.digests) if d.spec.canary is None)
        return FilterState(name=rev.filter, revision=rev, deployed=deployed, base=base)

    async def restore(self) -> list[FilterError]:
        """Serve every filter's current revision from the state store, modules by digest;
        returns the filters that could not be served (they stay known, not ready)."""
        errors: list[FilterError] = []
        for rev in await self.ctx.state.current_all():
            if is_resource_key(rev.filter):
                continue  # a listener, route, cluster or endpoints (xds_server.resources)
            async with self.ctx.lock(rev.filter):
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
            old = self.ctx.filters.get(rev.filter)
            if old is None or not old.deployed:
                self.ctx.filters[rev.filter] = FilterState(
                    name=rev.filter, revision=rev, error=exc.message, error_at=time.time())
            else:
                old.error, old.error_at = exc.message, time.time()
            log.error("filter_restore_failed", filter=rev.filter, revision=rev.revision, error=exc.message)
            raise
        old = self.ctx.filters.get(rev.filter)
        if old is not None:
            new.good_revision, new.good_digests = old.good_revision, old.good_digests
            new.previous_digests = (
                remember_previous(old.previous_digests, tuple(d.module.sha256 for d in old.deployed))
                if old.deployed and old.versions != new.versions else old.previous_digests)
        else:  # a restart: the rollback targets are the newest earlier contents
            for r in await self.ctx.state.history(rev.filter, 50):
                if (r.revision < rev.revision and not r.deleted and r.versions != rev.versions
                        and tuple(r.digests) not in new.previous_digests):
                    new.previous_digests = (*new.previous_digests, tuple(r.digests))[:KEEP_PREVIOUS]
        self.ctx.filters[rev.filter] = new
        self.builder.publish(rev.filter, new.deployed, new.base)
        self.ctx.emit(FilterEvent("deployed", rev.filter, rev.revision, rev.action, rev.author, rev.summary))
        log.info("filter_restored", filter=rev.filter, revision=rev.revision,
                 versions=[d.resource.version for d in new.deployed])

    async def sync_locked(self, name: str) -> None:
        """Catch up with the store's current revision of `name` (caller holds the lock)."""
        rev = await self.ctx.state.current(name)
        state = self.ctx.filters.get(name)
        if rev is None:
            return
        if rev.deleted:
            if state is not None and state.revision is not None:
                del self.ctx.filters[name]
                self.builder.unpublish(name)
                self.ctx.emit(FilterEvent("deleted", name, rev.revision, "delete", rev.author))
                log.info("filter_removed", filter=name, revision=rev.revision, author=rev.author)
            return
        if state is not None and state.revision is not None and state.revision.revision == rev.revision:
            return
        with contextlib.suppress(FilterError):
            await self._adopt(rev)

    async def sync(self, name: str, revision: int | None = None) -> None:
        """Serve the store's current revision of `name` if this replica is behind."""
        state = self.ctx.filters.get(name)
        if (revision is not None and state is not None and state.revision is not None
                and state.revision.revision >= revision):
            return
        async with self.ctx.lock(name):
            await self.sync_locked(name)

    def on_store_change(self, name: str, revision: int) -> None:
        """A replica recorded a revision (LISTEN/NOTIFY): catch up soon."""
        self.ctx.spawn(self.sync(name, revision))

    async def reconcile(self) -> None:
        """Compare every filter with the store and catch up (covers lost notifications)."""
        current = {r.filter: r.revision for r in await self.ctx.state.current_all()
                   if not is_resource_key(r.filter)}
        for name in set(current) | {n for n, s in self.ctx.filters.items() if s.revision is not None}:
            state = self.ctx.filters.get(name)
            have = state.revision.revision if state is not None and state.revision is not None else None
            if current.get(name) != have and not (state is not None and state.pending):
                await self.sync(name)
