"""The admin operations, once: what the HTTP API (`_app`) and the gRPC admin API
(`_grpc`) both call, so they say the same thing by construction.

`AdminService` is the only place in `admin/` that reads the controller's filters, the
standalone fleet's resources (`ResourceManager`), the state store's history and the
proxy status; it answers in JSON views (the HTTP API's
documents; `_grpc` projects them into messages). It also holds the readiness rule
(`problems`, used by `GET /readyz` and gRPC health) and history redaction.

Used from one event loop. Mutations go through the `Controller` (per-name locks,
revisions) and raise `FilterError` with the status that fits; resource operations go
through the `ResourceManager` and raise `ResourceError` (also with a status).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xds_server.admin._auth import TokenStore, redact_spec
from xds_server.admin._fleet import add_health, fleet_summary
from xds_server.admin._fleet_feed import FleetFeed
from xds_server.admin._specs import FilterRequest
from xds_server.controller import Controller, Deployed, FilterError, FilterEvent, FilterState
from xds_server.proxy_index import ProxyQuery
from xds_server.resources import ResourceError, ResourceManager
from xds_server.state import Revision
from xds_server.status import StatusEvent, StatusTracker
from xds_server.telemetry import HealthWindows, LogBuffer

__all__ = ["HISTORY_LIMIT", "AdminService", "filter_to_dict"]

HISTORY_LIMIT = (1, 100, 10_000)
"""History page size: (least, default, most)."""

Event = StatusEvent | FilterEvent
Unsubscribe = Callable[[], None]


def filter_to_dict(state: FilterState, status: StatusTracker, *, redact: bool = False,
                   analysis: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON form of one filter (the API's FilterView). With `redact`, plugin
    configuration and env values are hidden (read-only callers). `analysis` is the live
    state of its health-gated rollout; `debug` the override it runs (or None)."""
    rev = state.revision
    debug = rev.details.get("debug") if rev is not None and rev.action == "debug" else None
    if redact and isinstance(debug, dict):
        debug = redact_spec(debug)
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
                # present only when a verify policy covered the image (gRPC carries it in
                # the spec Struct, so both APIs show the same members)
                **({"verdict": verdict} if (verdict := _verdict(d, rev, i)) else {}),
            }
            for i, d in enumerate(state.deployed)
        ],
        "proxies": status.counts(state.name),
        "rollout": status.rollout(state.name),
        "analysis": analysis,
        "debug": debug,
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
    telemetry) are the telemetry the admin surface reads. `resources` serves the
    standalone fleet's listeners, routes, clusters and endpoints (None: refused, 404).
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
        resources: ResourceManager | None = None,
    ) -> None:
        self._controller = controller
        self._status = status
        self._module_path = module_path
        self.tokens = tokens if tokens is not None else TokenStore()
        self.logs = logs if logs is not None else LogBuffer()
        self.health = health
        self._resources = resources
        self.loaded = False
        self.draining = False
        self.fleet_feed = FleetFeed(status, self.summary_now)
        """Coalesced proxy changes for the status page (`subscribe_fleet`)."""

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
        return [self._filter_view(filters[n], redact=redact) for n in sorted(filters)]

    def _filter_view(self, state: FilterState, *, redact: bool = False) -> dict[str, Any]:
        return filter_to_dict(state, self._status, redact=redact,
                              analysis=self._controller.analysis_view(state.name))

    def filter(self, name: str, *, redact: bool = False) -> dict[str, Any]:
        """One filter's view; `FilterError` 404 when it is not served."""
        state = self._controller.filters.get(name)
        if state is None:
            raise FilterError(name, f"no filter named {name!r}", status=404)
        return self._filter_view(state, redact=redact)

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
                if isinstance(d["details"].get("debug"), dict):  # an override's configuration
                    d["details"] = {**d["details"], "debug": redact_spec(d["details"]["debug"])}
            views.append(d)
        return views

    def proxies(self, node_id: str = "") -> list[dict[str, Any]]:
        """Every known proxy's view (or only `node_id`'s, if known), in natural node
        order (`fleet-2` before `fleet-10`)."""
        if node_id:
            p = self._status.proxy(node_id)
            return [] if p is None else [self._view(p.node.id, p.to_dict())]
        views: list[dict[str, Any]] = self.query_proxies(ProxyQuery())["proxies"]
        return views

    def _view(self, node_id: str, view: dict[str, Any]) -> dict[str, Any]:
        view["seq"] = self._status.index.node_seq(node_id)
        return view

    def query_proxies(self, query: ProxyQuery) -> dict[str, Any]:
        """The proxies `query` selects, one page in natural node order:
        `{"proxies": [view + "seq"], "total": all that match, "next_cursor": the cursor
        of the next page or None}`. Only the page is serialized."""
        page, total, cursor = self._status.query(query)
        return {"proxies": [self._view(p.node.id, p.to_dict()) for p in page], "total": total,
                "next_cursor": cursor or None}

    def summary_now(self) -> dict[str, Any]:
        """The fleet summary without health (counters only; see `_fleet`)."""
        heads = self._resources.heads() if self._resources is not None else None
        return fleet_summary(self._controller.filters, self._status, heads)

    async def summary(self, *, window: float = 300.0) -> dict[str, Any]:
        """The fleet summary with health per revision over `window` seconds."""
        return await add_health(self.summary_now(), self.health, window=window)

    # -- changes ----------------------------------------------------------------------

    async def apply(self, name: str, change: FilterRequest, *, author: str) -> tuple[dict[str, Any], bool]:
        """Deploy `change` as a new revision of `name`; returns (view, created)."""
        created = not self.exists(name)
        state = await self._controller.deploy(name, change.specs, author=author, action="deploy",
                                              expect_revision=change.expect_revision)
        return self._filter_view(state), created

    async def delete(self, name: str, *, author: str) -> int:
        """Stop serving `name`; returns the revision that records it."""
        return (await self._controller.delete(name, author=author)).revision

    async def rollback(self, name: str, *, author: str, to: int | str | None = None) -> dict[str, Any]:
        """Serve revision `to` (a number or an xDS version; default: the previous
        content) again, as a new revision."""
        return self._filter_view(await self._controller.rollback(name, author=author, to=to))

    async def promote(self, name: str, *, author: str) -> dict[str, Any]:
        """Widen a canary to its full selector."""
        return self._filter_view(await self._controller.promote(name, author=author))

    async def debug(self, name: str, *, node: str, configuration: str, seconds: float,
                    author: str) -> dict[str, Any]:
        """Start a time-boxed debug override (see `Controller.debug`)."""
        return self._filter_view(await self._controller.debug(name, node=node, configuration=configuration,
                                                       seconds=seconds, author=author))

    async def end_debug(self, name: str, *, author: str) -> dict[str, Any]:
        """End the filter's debug override early."""
        return self._filter_view(await self._controller.end_debug(name, author=author, reason="ended early"))

    # -- resources (standalone fleets) ----------------------------------------------------

    def _manager(self, kind: str, name: str = "") -> ResourceManager:
        if self._resources is None:
            raise ResourceError(f"{kind}/{name}" if name else kind, "",
                                "this server serves no Envoy resources", status=404)
        return self._resources

    def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of `kind` (listeners, routes, clusters, endpoints), by name;
        `ResourceError` 404 for another kind."""
        return self._manager(kind).all(kind)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        """One resource's view (`{"kind", "name", "revision", "specs", "versions"}`);
        `ResourceError` 404 when it is not served."""
        return self._manager(kind, name).view(kind, name)

    async def put_resource(self, kind: str, name: str, items: Sequence[Any], *, author: str,
                           expect_revision: int | None = None) -> tuple[dict[str, Any], bool]:
        """Parse `items` (Envoy's v3 JSON, one per disjoint selector) and make them the
        resource's new revision (if `expect_revision` is current); returns (view, created).
        `ResourceError` 400 naming the field, 409 inconsistent or conflicting."""
        manager = self._manager(kind, name)
        where = f"{kind}/{name}"
        specs = manager.parse(kind, name, items, where=where)
        created = (kind, name) not in manager.specs
        view = await manager.put(kind, name, specs, author=author, expect_revision=expect_revision)
        return view, created

    async def delete_resource(self, kind: str, name: str, *, author: str) -> int:
        """Stop serving a resource (409 while another one refers to it); returns the
        revision that records it."""
        return await self._manager(kind, name).delete(kind, name, author=author)

    async def resource_history(self, kind: str, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Revisions of a resource, newest first, `limit` clamped to `HISTORY_LIMIT`
        (deleted resources keep theirs); `ResourceError` 404 when there are none."""
        least, default, most = HISTORY_LIMIT
        limit = max(least, min(most, default if limit is None else limit))
        return await self._manager(kind, name).history(kind, name, limit)

    async def rollback_resource(self, kind: str, name: str, *, author: str,
                                to: int | None = None) -> dict[str, Any]:
        """Serve revision `to` (default: the newest earlier one with other content)
        again, as a new revision."""
        return await self._manager(kind, name).rollback(kind, name, author=author, to=to)

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

    def subscribe_fleet(self, listener: Callable[[dict[str, Any]], None]) -> Unsubscribe:
        """Call `listener` with every coalesced fleet tick (see `_fleet_feed`)."""
        return self.fleet_feed.subscribe(listener)

    def subscribe_filters(self, listener: Callable[[Event], None]) -> Unsubscribe:
        """Call `listener` on every filter change (deployed, deleted, rejected)."""
        return self._controller.subscribe(listener)
