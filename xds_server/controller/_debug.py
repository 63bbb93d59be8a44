"""Debug overrides: a time-boxed configuration for the proxies a node glob selects.

An override is a revision (action `debug`) served like a canary: each spec's
configuration replaced, narrowed to the nodes matching the glob (and the spec's own
selector); every other node keeps the revision before it (`base_revision`). Its node
glob, configuration and expiry are in the revision's `details["debug"]`, so it survives
a restart and every replica knows when it ends. Ending it (time up, or early) is a
`debug-end` revision serving the base revision's content again, a compare-and-set on
the override's revision: recorded once across replicas, and never undoing a change
made since.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import structlog

from xds_server.controller._changes import Changes
from xds_server.controller._context import Context
from xds_server.controller._model import FilterError, FilterState
from xds_server.nodes import NodeSelector
from xds_server.state import Revision

log = structlog.get_logger("xds_server.controller")

MAX_SECONDS = 7 * 24 * 3600.0
"""The longest override (a week)."""


def debug_of(revision: Revision | None) -> dict[str, Any] | None:
    """The override a revision records (`node`, `configuration`, `expires_at`,
    `seconds`), or None when it is not a debug revision."""
    if revision is None or revision.action != "debug":
        return None
    found = revision.details.get("debug")
    return found if isinstance(found, dict) else None


class DebugOverrides:
    """Starts and ends debug overrides (see the module docstring)."""

    def __init__(self, ctx: Context, changes: Changes) -> None:
        self.ctx = ctx
        self.changes = changes

    async def start(self, name: str, *, node: str, configuration: str, seconds: float,
                    author: str) -> FilterState:
        """Serve `configuration` to the nodes matching `node` (a node id glob) for
        `seconds`. Refused (409) while a canary is staged; a running override is
        replaced (its base stays). `FilterError` 400 for a bad duration or glob."""
        if not 0 < seconds <= MAX_SECONDS:
            raise FilterError(name, f"'for' must be between 1s and {MAX_SECONDS / 3600:g}h "
                              f"(got {seconds:g}s)", status=400)
        if not node or len(node) > 256:
            raise FilterError(name, "'node' must be a node id glob of 1-256 characters", status=400)
        state = self.ctx.filters.get(name)
        if state is None or state.revision is None or not state.deployed:
            raise FilterError(name, "no such filter", status=404)
        running = debug_of(state.revision)
        if state.canary and running is None:
            raise FilterError(name, "a canary is staged: promote or roll it back before a debug override",
                              status=409)
        plain = state.base if running is not None else state.deployed
        canary = NodeSelector(node_id=node)
        specs = [replace(d.spec, configuration=configuration, canary=canary) for d in plain]
        expires_at = time.time() + seconds
        details = {"debug": {"node": node, "configuration": configuration, "seconds": seconds,
                             "expires_at": expires_at}}
        summary = (f"debug override for nodes {node!r} for {seconds:g}s "
                   f"(until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires_at))})")
        new = await self.changes.deploy(name, specs, author=author, action="debug", summary=summary,
                                        digests=[d.module.sha256 for d in plain],
                                        expect_revision=state.revision.revision, details=details)
        log.warning("debug_started", filter=name, node=node, seconds=seconds, expires_at=expires_at,
                    revision=new.revision.revision if new.revision else None, author=author)
        return new

    async def end(self, name: str, *, author: str, reason: str = "ended",
                  expect_revision: int | None = None) -> FilterState:
        """Serve the override's base revision again (`debug-end`); 409 when the
        filter runs no override (or moved on from `expect_revision`)."""
        state = self.ctx.filters.get(name)
        if state is None or state.revision is None:
            raise FilterError(name, "no such filter", status=404)
        rev = state.revision
        if debug_of(rev) is None or rev.base_revision is None:
            raise FilterError(name, "no debug override is running", status=409)
        new = await self.changes.rollback(name, author=author, to=rev.base_revision, action="debug-end",
                                          reason=f"debug override of revision {rev.revision} {reason}",
                                          expect_revision=expect_revision or rev.revision,
                                          details={"debug_end": {"revision": rev.revision, "reason": reason}})
        log.warning("debug_ended", filter=name, revision=rev.revision, reason=reason, author=author)
        return new

    async def expire_if_due(self, name: str, rev: Revision, now: float) -> None:
        """End the override when its time is up (once fleet-wide)."""
        found = debug_of(rev)
        if found is None or now < float(found.get("expires_at", 0)):
            return
        try:
            await self.end(name, author="system:debug", reason="expired", expect_revision=rev.revision)
        except FilterError as exc:
            if exc.status != 409:
                raise
            log.info("debug_end_done_elsewhere", filter=name, revision=rev.revision)
