"""The admin operations, once: what the HTTP API (`_app`) and the gRPC admin API
(`_grpc`) both call, so they say the same thing by construction.

`AdminService` is the only place in `admin/` that reads the controller's filters, the
state store's history and the proxy status; it answers in JSON views (the HTTP API's
documents; `_grpc` projects them into messages). It also holds the readiness rule
(`problems`, used by `GET /readyz` and gRPC health) and history redaction.

Used from one event loop. Mutations go through the `Controller` (per-name locks,
revisions) and raise `FilterError` with the status that fits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xds_server.admin._auth import TokenStore, redact_spec
from xds_server.admin._specs import FilterRequest
from xds_server.controller import Controller, Deployed, FilterError, FilterEvent, FilterState
from xds_server.state import Revision
from xds_server.status import StatusEvent, StatusTracker
from xds_server.telemetry import HealthWindows, LogBuffer

__all__ = ["HISTORY_LIMIT", "AdminService", "filter_to_dict"]

HISTORY_LIMIT = (1, 100, 10_000)
"""History page size: (least, default, most)."""

Event = StatusEvent | FilterEvent
Unsubscribe = Callable[[], None]


def filter_to_dict(state: FilterState, status: StatusTracker, *, redact: bool = False) -> dict[str, Any]:
    """JSON form of one filter (the API's FilterView). With `redact`, plugin
    configuration and env values are hidden (read-only callers)."""
    rev = state.revision
    return {
        "name": state.name,
        "revision": rev.revision if rev else 0,
        "author": rev.author if rev else "",
        "action": rev.action if rev else "",
        "updated_at": rev.created_at if rev else None,
        "summary": rev.summary if rev else "",
        "error": state.error,
        "error_at": state.error_at,
        "canary": state.canary,
        "good_revision": state.refresh_good(status.all_acked),
        "base_versions": [b.resource.version for b in state.base],
        "specs": [
            {
                **(redact_spec(d.spec.to_dict()) if redact else d.spec.to_dict()),
                "version": d.resource.version,
                "module": {
                    "sha256": d.module.sha256,
                    "size": d.module.size,
                    "layout": d.module.layout,
                    "reference": d.module.reference,
                    "root_ids": list(d.module.root_ids),
                    "manifest_digest": d.module.manifest_digest,
                },
                "verdict": _verdict(d, rev, i),
            }
            for i, d in enumerate(state.deployed)
        ],
        "proxies": status.counts(state.name),
        "rollout": status.rollout(state.name),
    }


def _verdict(d: Deployed, rev: Revision | None, i: int) -> dict[str, Any] | None:
    """The module's signature verdict: as resolved here, else as the revision recorded it
    (a replica that restored the module from a peer has no verdict of its own)."""
    if d.module.verdict:
        return dict(d.module.verdict)
    recorded = rev.verdicts[i] if rev is not None and i < len(rev.verdicts) else None
    return dict(recorded) if recorded else None


class AdminService:
    """The admin surface's one view of the server: filters, history, proxies, changes,
    readiness, module blobs and events.

    `loaded` becomes True once the initial configuration is applied; `draining` once
    shutdown begins. `tokens` are the admin tokens both APIs check (empty: none).
    `logs` (access logs) and `health` (health windows per revision; None without
    telemetry) are the telemetry the admin surface reads.
    """

    def __init__(
        self,
        controller: Controller,
        status: StatusTracker,
        *,
        module_path: Callable[[str], Path | None],
        tokens: TokenStore | None = None,
        logs: LogBuffer | None = None,
        health: HealthWindows | None = None,
    ) -> None:
        self._controller = controller
        self._status = status
        self._module_path = module_path
        self.tokens = tokens if tokens is not None else TokenStore()
        self.logs = logs if logs is not None else LogBuffer()
        self.health = health
        self.loaded = False
        self.draining = False

    @property
    def tracker(self) -> StatusTracker:
        """The proxy status records (CSDS renders them itself)."""
        return self._status

    # -- readiness --------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why the server is not ready (empty: ready). Ready means: the initial
        configuration is applied, every filter has a module, and not shutting down."""
        problems = []
        if not self.loaded:
            problems.append("initial configuration not applied yet")
        if self.draining:
            problems.append("shutting down")
        for f in self._controller.filters.values():
            if not f.deployed:
                problems.append(f"filter {f.name!r} has no module: {f.error}")
        return problems

    @property
    def ready(self) -> bool:
        """True when `problems()` is empty."""
        return not self.problems()

    # -- reads ------------------------------------------------------------------------

    def filters(self, *, redact: bool = False) -> list[dict[str, Any]]:
        """Every served filter's view, by name."""
        filters = self._controller.filters
        return [filter_to_dict(filters[n], self._status, redact=redact) for n in sorted(filters)]

    def filter(self, name: str, *, redact: bool = False) -> dict[str, Any]:
        """One filter's view; `FilterError` 404 when it is not served."""
        state = self._controller.filters.get(name)
        if state is None:
            raise FilterError(name, f"no filter named {name!r}", status=404)
        return filter_to_dict(state, self._status, redact=redact)

    def exists(self, name: str) -> bool:
        """True when `name` is a served (or desired) filter."""
        return name in self._controller.filters

    async def known(self, name: str) -> bool:
        """True when `name` is served or has a history (a deleted filter is known)."""
        return self.exists(name) or bool(await self._controller.state.history(name, 1))

    def current_revision(self, name: str) -> int | None:
        """The revision `name` serves, or None (not served, or no revision yet)."""
        state = self._controller.filters.get(name)
        return state.revision.revision if state is not None and state.revision else None

    async def history(self, name: str, limit: int | None = None, *, redact: bool = False) -> list[dict[str, Any]]:
        """Revisions of `name`, newest first, `limit` clamped to `HISTORY_LIMIT`
        (deleted filters keep theirs); `FilterError` 404 when there are none."""
        least, default, most = HISTORY_LIMIT
        limit = max(least, min(most, default if limit is None else limit))
        revisions = await self._controller.state.history(name, limit)
        if not revisions:
            raise FilterError(name, f"no filter named {name!r} (no history)", status=404)
        views = []
        for r in revisions:
            d = r.to_dict()
            if redact:
                d["specs"] = [redact_spec(spec) for spec in d["specs"]]
            views.append(d)
        return views

    def proxies(self, node_id: str = "") -> list[dict[str, Any]]:
        """Every known proxy's view (or only `node_id`'s, if known), by node id."""
        proxies = self._status.proxies
        ids = [node_id] if node_id else sorted(proxies)
        return [proxies[n].to_dict() for n in ids if n in proxies]

    # -- changes ----------------------------------------------------------------------

    async def apply(self, name: str, change: FilterRequest, *, author: str) -> tuple[dict[str, Any], bool]:
        """Deploy `change` as a new revision of `name`; returns (view, created)."""
        created = not self.exists(name)
        state = await self._controller.deploy(name, change.specs, author=author, action="deploy",
                                              expect_revision=change.expect_revision)
        return filter_to_dict(state, self._status), created

    async def delete(self, name: str, *, author: str) -> int:
        """Stop serving `name`; returns the revision that records it."""
        return (await self._controller.delete(name, author=author)).revision

    async def rollback(self, name: str, *, author: str, to: int | str | None = None) -> dict[str, Any]:
        """Serve revision `to` (a number or an xDS version; default: the previous
        content) again, as a new revision."""
        return filter_to_dict(await self._controller.rollback(name, author=author, to=to), self._status)

    async def promote(self, name: str, *, author: str) -> dict[str, Any]:
        """Widen a canary to its full selector."""
        return filter_to_dict(await self._controller.promote(name, author=author), self._status)

    # -- modules ----------------------------------------------------------------------

    async def module_path(self, digest: str) -> Path | None:
        """The stored module with this sha256 (from a peer replica if need be)."""
        return self._module_path(digest) or await self._controller.module_path(digest)

    def module_sent(self, digest: str) -> None:
        """A module's bytes were sent in full (Envoy's remote fetch)."""
        self._controller.on_module_fetched(digest)

    # -- events -----------------------------------------------------------------------

    def subscribe_proxies(self, listener: Callable[[Event], None]) -> Unsubscribe:
        """Call `listener` on every proxy event (connect, disconnect, ack, nack)."""
        return self._status.subscribe(listener)

    def subscribe_filters(self, listener: Callable[[Event], None]) -> Unsubscribe:
        """Call `listener` on every filter change (deployed, deleted, rejected)."""
        return self._controller.subscribe(listener)
