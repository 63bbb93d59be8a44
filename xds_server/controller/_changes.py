"""Changes: deploy, delete, rollback and promote, each recorded as a new revision
before the cache changes; a change that fails leaves the running version untouched."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog

from xds_server.config import FilterSpec
from xds_server.controller._build import Builder
from xds_server.controller._context import Context
from xds_server.controller._metrics import FILTER_CHANGES
from xds_server.controller._model import (
    Deployed,
    FilterError,
    FilterEvent,
    FilterState,
    remember_previous,
    specs_of,
)
from xds_server.controller._sync import ReplicaSync
from xds_server.state import ANY_REVISION, Conflict, Revision, StateError

log = structlog.get_logger("xds_server.controller")


class Changes:
    """The filter mutations. Each one is a compare-and-set against the revision this
    replica serves (or an explicit `expect_revision`), so a fleet-wide decision is
    recorded once; the loser catches up and gets a 409 `FilterError`."""

    def __init__(self, ctx: Context, builder: Builder, sync: ReplicaSync) -> None:
        self.ctx = ctx
        self.builder = builder
        self.sync = sync

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
        details: dict[str, Any] | None = None,
    ) -> FilterState:
        """Make `specs` the filter's new revision, or raise and change nothing.

        A change whose content equals the current revision records nothing new.
        A spec with a `canary` selector is served to canary nodes only; other nodes keep
        the current revision until `promote`. The write is a compare-and-set against
        the revision this replica serves (or `expect_revision`): if another replica
        changed the filter meanwhile, this one catches up and the call fails with 409.
        `details` is recorded with the revision (`Revision.details`).
        """
        _check_names(name, specs)
        async with self.ctx.lock(name):
            state = self.ctx.filters.get(name) or FilterState(name=name)
            try:
                deployed = await self.builder.build_all(specs, digests)
                if self.ctx.preflight is not None:
                    await self.ctx.preflight(deployed)
            except FilterError as exc:
                self._rejected(state, specs, exc, author=author, action=action, config_hash=config_hash)
                raise
            base: tuple[Deployed, ...] = ()
            if any(d.spec.canary is not None for d in deployed):
                base = state.base if state.canary else tuple(d for d in state.deployed if d.spec.canary is None)
            if _unchanged(state, deployed):
                if config_hash is not None:
                    await self.ctx.state.set_config_hash(name, config_hash)
                state.error = state.error_at = None
                return state
            expect = expect_revision if expect_revision is not None else (
                state.revision.revision if state.revision is not None else ANY_REVISION)
            revision = await self._record(state, deployed, base, author=author, action=action,
                                          summary=summary, config_hash=config_hash, expect=expect,
                                          details=details)
            self._serve(state, revision, deployed, base, author=author)
            return state

    def _rejected(self, state: FilterState, specs: Sequence[FilterSpec], exc: FilterError, *,
                  author: str, action: str, config_hash: str | None) -> None:
        """Note a change that could not be built; what is served stays."""
        name = state.name
        state.error, state.error_at = exc.message, time.time()
        if action == "config":
            state.pending, state.pending_key = tuple(specs), config_hash
        if name in self.ctx.filters or action == "config":
            # A filter the config file asks for stays known (not ready) until it gets a
            # module, and is retried; a refused API change of a new name leaves no trace.
            self.ctx.filters[name] = state
        FILTER_CHANGES.labels(action, "rejected").inc()
        log.error("filter_rejected", filter=name, action=action, error=exc.message,
                  serving=state.versions, author=author)
        self.ctx.emit(FilterEvent("rejected", name, state.revision.revision if state.revision else 0,
                                  action, author, exc.message))

    async def _record(self, state: FilterState, deployed: Sequence[Deployed], base: Sequence[Deployed], *,
                      author: str, action: str, summary: str, config_hash: str | None,
                      expect: int, details: dict[str, Any] | None = None) -> Revision:
        """Append the revision (compare-and-set on `expect`); on a conflict, catch up."""
        name = state.name
        try:
            return await self.ctx.state.append(
                name, author=author, action=action,
                summary=summary or _summary(state, deployed),
                specs=[d.spec.to_dict() for d in deployed],
                digests=[d.module.sha256 for d in deployed],
                versions=[d.resource.version for d in deployed],
                base_revision=_base_revision(state) if base else None,
                config_hash=config_hash,
                expect_current=expect,
                verdicts=[dict(d.module.verdict or {}) for d in deployed],
                details=details,
            )
        except Conflict as exc:
            FILTER_CHANGES.labels(action, "conflict").inc()
            await self.sync.sync_locked(name)
            raise FilterError(name, f"{exc}; this server now serves the current revision, "
                              "retry the change if it still applies", status=409) from exc
        except StateError as exc:
            FILTER_CHANGES.labels(action, "error").inc()
            raise FilterError(name, str(exc), status=503) from exc

    def _serve(self, state: FilterState, revision: Revision, deployed: tuple[Deployed, ...],
               base: tuple[Deployed, ...], *, author: str) -> None:
        """Make a recorded revision the served one."""
        name, action = state.name, revision.action
        if state.deployed and [d.resource.version for d in deployed] != state.versions:
            state.previous_digests = remember_previous(state.previous_digests,
                                                       tuple(d.module.sha256 for d in state.deployed))
        state.revision, state.deployed, state.base = revision, deployed, base
        state.error = state.error_at = None
        state.remote_forms = {}
        state.pending, state.pending_key = (), None
        self.ctx.filters[name] = state
        self.builder.publish(name, deployed, base)
        FILTER_CHANGES.labels(action, "applied").inc()
        self.ctx.emit(FilterEvent("deployed", name, revision.revision, action, author, revision.summary))
        for d in deployed:
            log.info("filter_version", filter=name, revision=revision.revision, action=action,
                     version=d.resource.version, digest=d.module.sha256, author=author,
                     source=d.module.reference, selector=d.spec.selector.describe(),
                     canary=d.spec.canary.describe() if d.spec.canary else None)

    async def delete(self, name: str, *, author: str, forget_config: bool = False) -> Revision:
        """Stop serving the filter; recorded as a revision with no specs.

        The config file's last word on the filter is kept (so an unchanged file does not
        bring it back) unless `forget_config`.
        """
        async with self.ctx.lock(name):
            state = self.ctx.filters.get(name)
            if state is None:
                raise FilterError(name, "no such filter", status=404)
            for guard in self.ctx.delete_guards:
                if (reason := guard(name)) is not None:
                    raise FilterError(name, f"in use: {reason}", status=409)
            try:
                revision = await self.ctx.state.append(
                    name, author=author, action="delete", summary="deleted", specs=[],
                    digests=[], versions=[],
                    expect_current=state.revision.revision if state.revision else ANY_REVISION,
                )
                if forget_config:
                    await self.ctx.state.set_config_hash(name, None)
            except Conflict as exc:
                await self.sync.sync_locked(name)
                raise FilterError(name, f"{exc}; retry the delete if it still applies", status=409) from exc
            except StateError as exc:
                raise FilterError(name, str(exc), status=503) from exc
            del self.ctx.filters[name]
            self.builder.unpublish(name)
            self.ctx.modules.pin(self.ctx.digests_in_use())
            FILTER_CHANGES.labels("delete", "applied").inc()
            self.ctx.emit(FilterEvent("deleted", name, revision.revision, "delete", author))
            log.info("filter_removed", filter=name, revision=revision.revision, author=author)
            return revision

    async def rollback(self, name: str, *, author: str, to: int | str | None = None,
                       action: str = "rollback", reason: str = "",
                       expect_revision: int | None = None,
                       details: dict[str, Any] | None = None) -> FilterState:
        """Serve an earlier revision's content again, as a new revision.

        `to`: a revision number (`7` or `"v7"`) or an xDS version it served; default:
        the newest earlier revision whose content differs from the current one. Its
        modules come from the store by digest. `expect_revision` makes it a
        compare-and-set (409 when the filter moved on); `details` is recorded.
        """
        state = self.ctx.filters.get(name)
        current = state.revision if state and state.revision else await self.ctx.state.current(name)
        if current is None:
            raise FilterError(name, "no such filter", status=404)
        target = await self._rollback_target(name, current, to)
        summary = f"rollback to revision {target.revision}" + (f": {reason}" if reason else "")
        return await self.deploy(name, specs_of(target), author=author, action=action, summary=summary,
                                 digests=target.digests, expect_revision=expect_revision,
                                 details=details)

    async def _rollback_target(self, name: str, current: Revision, to: int | str | None) -> Revision:
        """The revision `rollback(to=...)` means; `FilterError` if there is none."""
        if isinstance(to, str):  # "7", "v7", or an xDS version
            digits = to[1:] if to[:1] in ("v", "V") else to
            if digits.isdigit():
                to = int(digits)
            else:
                found = next((r.revision for r in await self.ctx.state.history(name, limit=10_000)
                              if not r.deleted and to in r.versions), None)
                if found is None:
                    raise FilterError(name, f"no revision served xDS version {to!r}", status=404)
                to = found
        if to is not None:
            target = await self.ctx.state.get(name, to)
            if target is None or target.deleted:
                raise FilterError(name, f"no revision {to} with content to roll back to", status=404)
            return target
        found_rev = next(
            (r for r in await self.ctx.state.history(name, limit=1000)
             if r.revision < current.revision and not r.deleted and r.versions != current.versions),
            None,
        )
        if found_rev is None:
            raise FilterError(name, "no earlier revision to roll back to", status=409)
        return found_rev

    async def promote(self, name: str, *, author: str, action: str = "promote", summary: str = "",
                      expect_revision: int | None = None,
                      details: dict[str, Any] | None = None) -> FilterState:
        """Widen a canary revision to its full selectors. A debug override is not a
        canary to promote (409). `expect_revision` makes it a compare-and-set."""
        state = self.ctx.filters.get(name)
        if state is None:
            raise FilterError(name, "no such filter", status=404)
        if state.revision is not None and state.revision.action == "debug":
            raise FilterError(name, "the current revision is a debug override, not a canary: end it "
                              "(`xds-server debug NAME --end`) instead", status=409)
        if not state.canary:
            raise FilterError(name, "no canary to promote: the current revision serves every "
                              "targeted node already", status=409)
        specs = [replace(d.spec, canary=None) for d in state.deployed]
        return await self.deploy(name, specs, author=author, action=action,
                                 summary=summary or "promoted canary to all targeted nodes",
                                 digests=[d.module.sha256 for d in state.deployed],
                                 expect_revision=expect_revision, details=details)


def _base_revision(state: FilterState) -> int | None:
    """The revision nodes outside a new canary keep: the current one, or, when the
    current one is staged itself, the revision it keeps."""
    if state.revision is None:
        return None
    return state.revision.base_revision if state.canary and state.revision.base_revision else state.revision.revision


def _check_names(name: str, specs: Sequence[FilterSpec]) -> None:
    if not specs:
        raise FilterError(name, "no specs given", status=400)
    for s in specs:
        if s.name != name:
            raise FilterError(name, f"spec names filter {s.name!r}, not {name!r}", status=400)


def _unchanged(state: FilterState, deployed: Sequence[Deployed]) -> bool:
    """True when `deployed` equals what the current revision serves (nothing to record)."""
    return (
        state.revision is not None
        and [d.resource.version for d in deployed] == state.versions
        and [d.spec.to_dict() for d in deployed] == [d.spec.to_dict() for d in state.deployed]
    )


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
