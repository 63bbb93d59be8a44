"""NACK auto-rollback: a NACK of the current revision with `on_nack: rollback` sends
the filter back, once fleet-wide, to a revision the proxies are known to run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from xds_server.controller._changes import Changes
from xds_server.controller._context import Context
from xds_server.controller._metrics import AUTO_ROLLBACKS
from xds_server.controller._model import FilterError
from xds_server.controller._remote import RemoteRepush

log = structlog.get_logger("xds_server.controller")


class NackPolicy:
    """Reacts to proxies' ACKs and NACKs. Called from status events; never blocks (the
    rollback runs in the background). "Once fleet-wide": the rollback is a
    compare-and-set on the NACKed revision, so however many replicas see NACKs, one
    records it and the others find the filter already moved on."""

    def __init__(self, ctx: Context, changes: Changes, remote: RemoteRepush) -> None:
        self.ctx = ctx
        self.changes = changes
        self.remote = remote

    def on_proxy_report(self, kind: str, node_id: str, resources: dict[str, str],
                        message: str, acked_everywhere: Any,
                        running: Callable[[str, str], str] | None = None) -> None:
        """React to an ACK or NACK.

        ACK: the revision becomes the filter's last good one once every connected proxy
        sent it has ACKed it. NACK of the current revision with `on_nack: rollback`: go
        back, once fleet-wide, to the newest earlier revision serving what the NACKing
        proxy still runs (`running(node_id, name)`: its last ACKed version), else to
        the last good revision.
        """
        for name, version in resources.items():
            state = self.ctx.filters.get(name)
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
                self.ctx.spawn(self._auto_rollback(name, bad, keep, state.good_revision, reason))

    async def _auto_rollback(self, name: str, bad: int, running: str, good: int | None,
                             reason: str) -> None:
        state = self.ctx.filters.get(name)
        if state is None or state.revision is None or state.revision.revision != bad:
            return  # already moved on: roll back once
        if running:
            target = next((r.revision for r in await self.ctx.state.history(name, limit=1000)
                           if r.revision < bad and not r.deleted and running in r.versions), None)
            good = target or good
        if good is None or good >= bad:
            log.error("auto_rollback_impossible", filter=name, revision=bad,
                      reason="no earlier revision is known to run on the proxies")
            return
        try:
            await self.changes.rollback(name, author="system:on_nack", to=good, action="auto-rollback",
                                        reason=reason, expect_revision=bad)
        except FilterError as exc:
            if exc.status == 409:
                log.info("auto_rollback_done_elsewhere", filter=name, from_revision=bad)
                return
            log.error("auto_rollback_failed", filter=name, error=exc.message)
            return
        AUTO_ROLLBACKS.labels(name, "nack").inc()
        log.warning("auto_rollback", filter=name, from_revision=bad, to_revision=good, reason=reason)
