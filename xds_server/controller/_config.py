"""Config apply and pull-`Always` refresh: what the config file says, applied once
fleet-wide, retried while it cannot be; image tags re-resolved on an interval."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

import structlog

from xds_server.config import Config, FilterSpec
from xds_server.controller._changes import Changes
from xds_server.controller._context import Context
from xds_server.controller._metrics import FILTER_CHANGES
from xds_server.controller._model import FilterError, FilterState, spec_key
from xds_server.controller._sync import ReplicaSync

log = structlog.get_logger("xds_server.controller")


class ConfigApplier:
    """Applies the config file and keeps `pull_policy: Always` images current.

    Every change goes through `Changes` (so it is a recorded revision); a failure is
    returned or logged, never raised out of the background loop.
    """

    def __init__(self, ctx: Context, changes: Changes, sync: ReplicaSync) -> None:
        self.ctx = ctx
        self.changes = changes
        self.sync = sync

    async def apply_config(self, config: Config, *, author: str = "config") -> list[FilterError]:
        """Apply what the config file says, name by name, where it changed.

        A name whose specs equal what the file said last time is left alone (so changes
        made through the API survive a restart). A name the file no longer lists is
        removed if it came from the file. Returns the names that failed.

        Fleet-wide, once: each change is decided from the store's (revision, config
        hash) of the name and recorded with a compare-and-set on that revision, so
        replicas applying the same file at the same moment record one revision; the
        others catch up (their 409 is not an error).
        """
        by_name: dict[str, list[FilterSpec]] = {}
        for spec in config.filters:
            by_name.setdefault(spec.name, []).append(spec)
        heads = await self.ctx.state.config_heads()
        jobs: list[Coroutine[Any, Any, object]] = []
        for name, specs in sorted(by_name.items()):
            head, known = heads.get(name, (0, None))
            key = spec_key(specs)
            if known == key:
                continue  # the file did not change for this name: keep what the API made of it
            jobs.append(self._apply_config_name(name, specs, key, head, author=author,
                                                summary="from the configuration file"))
        for name, (_, old_key) in heads.items():
            if old_key is not None and name not in by_name and name in self.ctx.filters:
                jobs.append(self.changes.delete(name, author=author, forget_config=True))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, FilterError):
                raise r
        errors = [r for r in results if isinstance(r, FilterError)]
        if any(e.status == 409 for e in errors):
            # Another replica applied this file first: that is the "once" we want.
            heads = await self.ctx.state.config_heads()

            def applied(name: str) -> bool:
                wanted = spec_key(by_name[name]) if name in by_name else None
                return heads.get(name, (0, None))[1] == wanted

            errors = [e for e in errors if not (e.status == 409 and applied(e.name))]
        return errors

    async def _apply_config_name(self, name: str, specs: Sequence[FilterSpec], key: str | None,
                                 head: int, *, author: str, summary: str) -> FilterState:
        """Deploy the config file's `specs` for `name` as a compare-and-set on `head`, the
        store revision the decision was made from (0: the store has none)."""
        state = self.ctx.filters.get(name)
        if (state.revision.revision if state is not None and state.revision is not None else 0) < head:
            await self.sync.sync(name)  # build on what the store holds, not on an older view
        return await self.changes.deploy(name, specs, author=author, action="config", summary=summary,
                                         config_hash=key, expect_revision=head)

    async def retry_pending(self) -> list[str]:
        """Retry config filters that could not be applied yet (e.g. the registry was
        down at start-up), once fleet-wide like `apply_config`. Returns the names that
        now serve."""
        done: list[str] = []
        pending = [(n, s) for n, s in self.ctx.filters.items() if s.pending]
        if not pending:
            return done
        heads = await self.ctx.state.config_heads()
        for name, state in pending:
            head, known = heads.get(name, (0, None))
            if known is not None and known == state.pending_key:
                await self.sync.sync(name)  # another replica applied it meanwhile
                continue
            try:
                await self._apply_config_name(name, state.pending, state.pending_key, head,
                                              author="system:retry",
                                              summary="from the configuration file (retried)")
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
        for name, state in list(self.ctx.filters.items()):
            specs = [d.spec for d in state.deployed]
            if not any(s.pull_policy == "Always" and s.source.kind == "image" for s in specs):
                continue
            try:
                modules = await asyncio.gather(*(self.ctx.modules.module_for(s) for s in specs))
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
                moved = ", ".join(f"{o[:12]} -> {n[:12]}" for o, n in zip(old, new, strict=True) if o != n)
                await self.changes.deploy(name, specs, author="system:pull-always", action="tag-update",
                                          summary=f"tag moved: {moved}", digests=new)
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
