"""The gRPC side of the admin surface, on the xDS port.

* `AdminService` (`xds_server.admin.v1`, protos/xds_server/admin/v1/admin.proto): the
  HTTP API's operations for other control planes. Same core: it calls the `Controller`
  and projects the HTTP API's JSON views (`filter_to_dict`, `ProxyStatus.to_dict`,
  `Revision.to_dict`) into messages, so both APIs always say the same thing.
* CSDS (`_csds`), gRPC health (`_health`) and server reflection, wired together by
  `register_grpc_services`.

`FilterError.status` becomes a gRPC code (`grpc_code`) with the same message.

Access follows the HTTP admin API's rule: with admin tokens configured, a call needs
metadata `authorization: Bearer <token>` (UNAUTHENTICATED otherwise) and mutations need
the `write` role (PERMISSION_DENIED); without tokens, only loopback peers may call
AdminService and CSDS (the xDS port faces the fleet). Health and reflection are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from google.protobuf import descriptor_pool, struct_pb2, timestamp_pb2
from google.protobuf.json_format import MessageToDict
from grpc_reflection.v1alpha import reflection

from xds_server.admin._app import AdminState, filter_to_dict
from xds_server.admin._auth import redact_spec
from xds_server.admin._csds import CSDS_SERVICE, CsdsService
from xds_server.admin._filter_health import WindowError, filter_health_message, filter_health_view, parse_window
from xds_server.admin._health import HEALTH_SERVICE, HealthReporter
from xds_server.admin._specs import parse_specs
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc
from xds_server.cache import ResourceCache
from xds_server.controller import FilterError, FilterEvent
from xds_server.status import StatusEvent

__all__ = [
    "ADMIN_SERVICE",
    "AdminService",
    "GrpcServices",
    "filter_message",
    "grpc_code",
    "parse_specs",
    "proxy_message",
    "register_grpc_services",
    "revision_message",
]

log = structlog.get_logger("xds_server.admin.grpc")

ADMIN_SERVICE: str = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
WATCH_QUEUE_LIMIT = 10_000
"""Events a WatchStatus client may fall behind by before its stream is ended."""

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    # 422: the request is well formed but what it points at is unusable right now (a
    # module that cannot be fetched or verified); fixing the module makes it succeed.
    422: grpc.StatusCode.FAILED_PRECONDITION,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}

# xDS services whose descriptors reflection needs: importing registers them in the pool.
_SERVICE_MODULES = {
    "envoy.service.extension.v3.ExtensionConfigDiscoveryService":
        "envoy.service.extension.v3.config_discovery_pb2",
    "envoy.service.discovery.v3.AggregatedDiscoveryService": "envoy.service.discovery.v3.ads_pb2",
    "envoy.service.listener.v3.ListenerDiscoveryService": "envoy.service.listener.v3.lds_pb2",
    "envoy.service.cluster.v3.ClusterDiscoveryService": "envoy.service.cluster.v3.cds_pb2",
    "envoy.service.route.v3.RouteDiscoveryService": "envoy.service.route.v3.rds_pb2",
    "envoy.service.endpoint.v3.EndpointDiscoveryService": "envoy.service.endpoint.v3.eds_pb2",
}


def grpc_code(status: int) -> Any:
    """The gRPC status code for a `FilterError.status` (an HTTP status)."""
    return _CODES.get(status, grpc.StatusCode.UNKNOWN)


# -- requests -----------------------------------------------------------------------------


def _whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: give whole ones back as ints (5.0 -> 5), recursively,
    so that e.g. a `configuration` mapping renders as the HTTP API would render it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _is_loopback_peer(peer: str) -> bool:
    """`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`, `unix:...` -> is it this machine?"""
    kind, _, rest = peer.partition(":")
    if kind == "unix":
        return True
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_only(state: AdminState, context: Any) -> bool:
    """True when the (already authorized) caller holds a `read` token: configuration
    and env values are then redacted, as over HTTP."""
    tokens = getattr(state, "tokens", None)
    if tokens is None or not tokens.enabled:
        return False
    header = dict(context.invocation_metadata() or ()).get("authorization", "")
    caller = tokens.caller_for(header[7:].strip()) if header.lower().startswith("bearer ") else None
    return caller is None or not caller.can_write


async def authorize(state: AdminState, context: Any, *, write: bool) -> str:
    """Check the caller (see the module docstring); abort the call if refused.

    Returns the caller's name for the revision's author ("" for a local caller).
    """
    tokens = getattr(state, "tokens", None)
    if tokens is None or not tokens.enabled:
        if not _is_loopback_peer(context.peer() or ""):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "no admin tokens are configured: the admin gRPC API answers "
                                "loopback callers only")
        return ""
    header = dict(context.invocation_metadata() or ()).get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    caller = tokens.caller_for(token) if token else None
    if caller is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "a valid bearer token is required (metadata authorization: Bearer <token>)")
        return ""  # unreachable: abort raises
    if write and not caller.can_write:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"token {caller.name!r} has role {caller.role!r}; this call needs role 'write'")
    return str(caller.name)


async def _author(state: AdminState, actor: str, context: Any) -> str:
    who = await authorize(state, context, write=True)
    actor = "".join(c for c in actor.strip()[:200] if c.isprintable())
    if not who or actor:
        who = f"{who} ({actor})" if who else actor
    peer = context.peer() or "unknown"
    return f"{who} (grpc {peer})" if who else f"grpc {peer}"


# -- views -> messages --------------------------------------------------------------------


def _ts(at: float | None) -> timestamp_pb2.Timestamp | None:
    if at is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def _struct(d: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(d))
    return s


def filter_message(view: Mapping[str, Any]) -> admin_pb2.Filter:
    """A `Filter` from the HTTP API's FilterView (`filter_to_dict`)."""
    msg = admin_pb2.Filter(
        name=view["name"], revision=view["revision"], author=view["author"],
        action=view["action"], summary=view["summary"], error=view["error"] or "",
        canary=view["canary"], base_versions=view["base_versions"],
        updated_at=_ts(view["updated_at"]), error_at=_ts(view["error_at"]),
        proxies=admin_pb2.ProxyCounts(**view["proxies"]), rollout=view["rollout"],
    )
    if view["good_revision"] is not None:
        msg.good_revision = view["good_revision"]
    for spec in view["specs"]:
        rest = {k: v for k, v in spec.items() if k not in ("version", "module", "verdict")}
        msg.specs.append(admin_pb2.DeployedSpec(
            spec=_struct(rest), version=spec["version"], module=admin_pb2.Module(**spec["module"]),
        ))
    return msg


def revision_message(rev: Mapping[str, Any]) -> admin_pb2.Revision:
    """A `Revision` from `Revision.to_dict()`."""
    msg = admin_pb2.Revision(
        revision=rev["revision"], created_at=_ts(rev["created_at"]), author=rev["author"],
        action=rev["action"], summary=rev["summary"], specs=[_struct(s) for s in rev["specs"]],
        digests=rev["digests"], versions=rev["versions"],
    )
    if rev["base_revision"] is not None:
        msg.base_revision = rev["base_revision"]
    return msg


def proxy_message(p: Mapping[str, Any]) -> admin_pb2.ProxyStatus:
    """A `ProxyStatus` from `ProxyStatus.to_dict()` (what GET /api/v1/proxies lists)."""
    msg = admin_pb2.ProxyStatus(
        node_id=p["node_id"], cluster=p["cluster"], metadata=_struct(p["metadata"]),
        envoy_version=p["envoy_version"], address=p["address"], connected=p["connected"],
        connected_since=_ts(p["connected_since"]), disconnected_at=_ts(p["disconnected_at"]),
    )
    for name, r in p["resources"].items():
        nack = r["last_nack"]
        msg.resources.append(admin_pb2.ResourceStatus(
            name=name, type_url=r["type_url"],
            state="RESOURCE_STATE_" + r["state"],
            version_sent=r["version_sent"], sent_at=_ts(r["sent_at"]),
            version_acked=r["version_acked"], acked_at=_ts(r["acked_at"]),
            last_nack=None if nack is None else admin_pb2.Nack(
                version=nack["version"], code=nack["code"], message=nack["message"],
                at=_ts(nack["at"])),
        ))
    return msg


_EVENT_KINDS: dict[str, Any] = {
    "connect": admin_pb2.StatusEvent.CONNECT,
    "disconnect": admin_pb2.StatusEvent.DISCONNECT,
    "ack": admin_pb2.StatusEvent.ACK,
    "nack": admin_pb2.StatusEvent.NACK,
    "deployed": admin_pb2.StatusEvent.FILTER_DEPLOYED,
    "deleted": admin_pb2.StatusEvent.FILTER_DELETED,
    "rejected": admin_pb2.StatusEvent.FILTER_REJECTED,
}


def event_message(event: StatusEvent | FilterEvent) -> admin_pb2.StatusEvent:
    """A `StatusEvent` message from a proxy event or a filter change."""
    kind = _EVENT_KINDS.get(event.kind, admin_pb2.StatusEvent.KIND_UNSPECIFIED)
    if isinstance(event, StatusEvent):
        return admin_pb2.StatusEvent(kind=kind, at=_ts(event.at), node_id=event.node_id,
                                     resources=dict(event.resources), message=event.message)
    return admin_pb2.StatusEvent(
        kind=kind, at=_ts(event.at), message=event.message,
        filter=admin_pb2.FilterChange(name=event.name, revision=event.revision,
                                      action=event.action, author=event.author),
    )


# -- the service --------------------------------------------------------------------------

Context = Any  # grpc.aio.ServicerContext (grpc ships no type information)


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """`xds_server.admin.v1.AdminService` (grpc.aio) over the same state as the HTTP API.

    Mutations go through the `Controller` (per-name locks, revisions); reads project
    the HTTP API's views. `begin_shutdown()` ends every WatchStatus stream.
    """

    def __init__(self, state: AdminState) -> None:
        self.state = state
        self._watchers: set[asyncio.Queue[StatusEvent | FilterEvent | None]] = set()
        self._closing = False

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's handlers to `server`."""
        add: Callable[[Any, Any], None] = admin_pb2_grpc.add_AdminServiceServicer_to_server
        add(self, server)

    def begin_shutdown(self) -> None:
        """End open WatchStatus streams; refuse new ones (UNAVAILABLE)."""
        self._closing = True
        for q in tuple(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    def _view(self, name: str, *, redact: bool = False) -> admin_pb2.Filter:
        st = self.state
        return filter_message(filter_to_dict(st.controller.filters[name], st.status, redact=redact))

    @staticmethod
    async def _fail(context: Context, exc: FilterError) -> None:
        log.info("grpc_admin_error", filter=exc.name, status=exc.status, error=exc.message)
        await context.abort(grpc_code(exc.status), exc.message)

    # -- filters ----------------------------------------------------------------------

    async def ApplyFilter(
        self, request: admin_pb2.ApplyFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Deploy `specs` as a new revision of `name`."""
        author = await _author(self.state, request.actor, context)
        name = request.name
        try:
            if not name:
                raise FilterError(name, "'name' is required", status=400)
            raw = [_whole_numbers(MessageToDict(s)) for s in request.specs]
            specs = parse_specs(name, raw)
            state = await self.state.controller.deploy(
                name, specs, author=author, action="deploy")
        except FilterError as exc:
            await self._fail(context, exc)
            raise
        return filter_message(filter_to_dict(state, self.state.status))

    async def DeleteFilter(
        self, request: admin_pb2.DeleteFilterRequest, context: Context
    ) -> admin_pb2.DeleteFilterResponse:
        """Stop serving `name`; the delete is a revision too."""
        author = await _author(self.state, request.actor, context)
        try:
            rev = await self.state.controller.delete(request.name, author=author)
        except FilterError as exc:
            await self._fail(context, exc)
            raise
        return admin_pb2.DeleteFilterResponse(name=request.name, revision=rev.revision)

    async def RollbackFilter(
        self, request: admin_pb2.RollbackFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Serve `to_revision` (default: the previous revision) again."""
        author = await _author(self.state, request.actor, context)
        to = request.to_revision if request.HasField("to_revision") else None
        try:
            state = await self.state.controller.rollback(
                request.name, author=author, to=to)
        except FilterError as exc:
            await self._fail(context, exc)
            raise
        return filter_message(filter_to_dict(state, self.state.status))

    async def PromoteFilter(
        self, request: admin_pb2.PromoteFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Widen a canary to its full selector."""
        author = await _author(self.state, request.actor, context)
        try:
            state = await self.state.controller.promote(request.name, author=author)
        except FilterError as exc:
            await self._fail(context, exc)
            raise
        return filter_message(filter_to_dict(state, self.state.status))

    async def ListFilters(
        self, request: admin_pb2.ListFiltersRequest, context: Context
    ) -> admin_pb2.ListFiltersResponse:
        """Every served filter, by name."""
        await authorize(self.state, context, write=False)
        redact = read_only(self.state, context)
        return admin_pb2.ListFiltersResponse(
            filters=[self._view(n, redact=redact) for n in sorted(self.state.controller.filters)])

    async def GetFilter(
        self, request: admin_pb2.GetFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """One filter, or NOT_FOUND."""
        await authorize(self.state, context, write=False)
        if request.name not in self.state.controller.filters:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no filter named {request.name!r}")
        return self._view(request.name, redact=read_only(self.state, context))

    async def GetHistory(
        self, request: admin_pb2.GetHistoryRequest, context: Context
    ) -> admin_pb2.GetHistoryResponse:
        """Revisions of a filter, newest first (deleted filters keep their history)."""
        await authorize(self.state, context, write=False)
        limit = max(1, min(10_000, request.limit or 100))
        history = await self.state.controller.state.history(request.name, limit)
        if not history:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no filter named {request.name!r} (no history)")
        redact = read_only(self.state, context)
        views = []
        for r in history:
            d = r.to_dict()
            if redact:
                d["specs"] = [redact_spec(spec) for spec in d["specs"]]
            views.append(revision_message(d))
        return admin_pb2.GetHistoryResponse(name=request.name, history=views)

    async def GetFilterHealth(
        self, request: admin_pb2.GetFilterHealthRequest, context: Context
    ) -> admin_pb2.FilterHealth:
        """Health per revision (GET /api/v1/filters/{name}/health), or NOT_FOUND."""
        await authorize(self.state, context, write=False)
        try:
            window = parse_window(str(request.window_seconds) if request.window_seconds else None)
        except WindowError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        view = await filter_health_view(self.state, request.name, window)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no filter named {request.name!r}")
            raise AssertionError("abort raises")
        return filter_health_message(view)

    # -- proxies ----------------------------------------------------------------------

    async def GetProxyStatus(
        self, request: admin_pb2.GetProxyStatusRequest, context: Context
    ) -> admin_pb2.GetProxyStatusResponse:
        """Every known proxy (or only `node_id`), as GET /api/v1/proxies lists them."""
        await authorize(self.state, context, write=False)
        proxies = self.state.status.proxies
        ids = sorted(proxies) if not request.node_id else [n for n in (request.node_id,) if n in proxies]
        return admin_pb2.GetProxyStatusResponse(proxies=[proxy_message(proxies[n].to_dict()) for n in ids])

    async def WatchStatus(
        self, request: admin_pb2.WatchStatusRequest, context: Context
    ) -> AsyncIterator[admin_pb2.StatusEvent]:
        """Proxy events (and filter changes when asked) from the moment initial metadata
        is sent until the client cancels or the server stops."""
        await authorize(self.state, context, write=False)
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "server is shutting down")
        queue: asyncio.Queue[StatusEvent | FilterEvent | None] = asyncio.Queue(WATCH_QUEUE_LIMIT + 1)
        node_id = request.node_id
        overflow = False

        def push(event: StatusEvent | FilterEvent) -> None:
            nonlocal overflow
            if isinstance(event, StatusEvent) and node_id and event.node_id != node_id:
                return
            if queue.qsize() >= WATCH_QUEUE_LIMIT:
                overflow = True
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
                return
            queue.put_nowait(event)

        unsubscribe = [self.state.status.subscribe(push)]
        if request.include_filter_events:
            unsubscribe.append(self.state.controller.subscribe(push))
        self._watchers.add(queue)
        log.info("watch_opened", peer=context.peer(), node_id=node_id,
                 filter_events=request.include_filter_events)
        try:
            await context.send_initial_metadata(())
            while (event := await queue.get()) is not None:
                yield event_message(event)
        finally:
            for u in unsubscribe:
                u()
            self._watchers.discard(queue)
            log.info("watch_closed", peer=context.peer(), overflow=overflow)
        if overflow:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"the client fell more than {WATCH_QUEUE_LIMIT} events behind")


# -- wiring -------------------------------------------------------------------------------


@dataclass(slots=True)
class GrpcServices:
    """The non-xDS gRPC services of one server, registered on its gRPC server."""

    admin: AdminService
    csds: CsdsService
    health: HealthReporter
    service_names: list[str]

    async def begin_shutdown(self) -> None:
        """Health goes NOT_SERVING for good and WatchStatus streams end."""
        await self.health.shutdown()
        self.admin.begin_shutdown()


def _ensure_descriptors(names: Iterable[str]) -> None:
    import importlib

    pool = descriptor_pool.Default()
    for name in names:
        try:
            pool.FindServiceByName(name)
            continue
        except KeyError:
            pass
        module = _SERVICE_MODULES.get(name)
        if module is not None:
            importlib.import_module(module)
        else:
            log.warning("reflection_no_descriptor", service=name)


def register_grpc_services(
    server: grpc.aio.Server, state: AdminState, cache: ResourceCache, xds_services: Sequence[str]
) -> GrpcServices:
    """Add AdminService, CSDS, health and reflection (listing every service, the xDS
    ones included) to `server`. Health starts NOT_SERVING; see `HealthReporter`."""
    admin = AdminService(state)
    admin.register(server)
    async def csds_access(context: Any) -> None:
        await authorize(state, context, write=False)

    csds = CsdsService(state.status, cache, authorize=csds_access)
    csds.register(server)
    names = [*xds_services, CSDS_SERVICE, ADMIN_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME]
    health = HealthReporter(state, [n for n in names if n not in (HEALTH_SERVICE, reflection.SERVICE_NAME)])
    health.register(server)
    _ensure_descriptors(names)
    reflection.enable_server_reflection(names, server)
    return GrpcServices(admin=admin, csds=csds, health=health, service_names=names)
