"""The gRPC side of the admin surface, on the xDS port.

* `AdminServicer` serves `xds_server.admin.v1.AdminService`
  (protos/xds_server/admin/v1/admin.proto): the HTTP API's operations for other control
  planes. Same core: it calls `AdminService` (`_service`), as the HTTP API does, and
  projects its JSON views into messages (`_messages`), so both APIs always say the same
  thing.
* CSDS (`_csds`), gRPC health (`_health`) and server reflection, wired together by
  `register_grpc_services`; another concern's gRPC service joins them (reflection and
  health included) as a `GrpcExtension` in its `extensions`.

`FilterError.status` and `ResourceError.status` become a gRPC code (`grpc_code`) with the
same message.

Access follows the HTTP admin API's rule: with admin tokens configured, a call needs
metadata `authorization: Bearer <token>` (UNAUTHENTICATED otherwise) and mutations need
the `write` role (PERMISSION_DENIED); without tokens, only loopback peers may call
AdminService and CSDS (the xDS port faces the fleet). Health and reflection are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import structlog
from google.protobuf import descriptor_pool
from google.protobuf.json_format import MessageToDict
from grpc_reflection.v1alpha import reflection

from xds_server.admin._auth import Caller, TokenStore
from xds_server.admin._csds import CSDS_SERVICE, CsdsService
from xds_server.admin._filter_health import WindowError, filter_health_message, filter_health_view, parse_window
from xds_server.admin._health import HEALTH_SERVICE, HealthReporter
from xds_server.admin._messages import (
    event_message,
    filter_message,
    proxy_message,
    resource_message,
    revision_message,
    summary_message,
    whole_numbers,
)
from xds_server.admin._service import AdminService
from xds_server.admin._specs import FilterRequest, expect_revision, parse_debug_body, parse_specs
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc
from xds_server.cache import ResourceCache
from xds_server.controller import FilterError, FilterEvent
from xds_server.proxy_index import ProxyQuery, QueryError
from xds_server.resources import ResourceError
from xds_server.status import StatusEvent

__all__ = [
    "ADMIN_SERVICE",
    "AdminServicer",
    "GrpcExtension",
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


# -- access -------------------------------------------------------------------------------


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


def _caller(tokens: TokenStore, context: Any) -> Caller | None:
    """The caller of the call's `authorization: Bearer <token>` metadata,
    or None without a known token."""
    header = dict(context.invocation_metadata() or ()).get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    return tokens.caller_for(token) if token else None


def read_only(service: AdminService, context: Any) -> bool:
    """True when the (already authorized) caller holds a `read` token: configuration
    and env values are then redacted, as over HTTP."""
    tokens = getattr(service, "tokens", None)
    if tokens is None or not tokens.enabled:
        return False
    caller = _caller(tokens, context)
    return caller is None or not caller.can_write


async def authorize(service: AdminService, context: Any, *, write: bool) -> str:
    """Check the caller (see the module docstring); abort the call if refused.

    Returns the caller's name for the revision's author ("" for a local caller).
    """
    tokens = getattr(service, "tokens", None)
    if tokens is None or not tokens.enabled:
        if not _is_loopback_peer(context.peer() or ""):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "no admin tokens are configured: the admin gRPC API answers "
                                "loopback callers only")
        return ""
    caller = _caller(tokens, context)
    if caller is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                            "a valid bearer token is required (metadata authorization: Bearer <token>)")
        return ""  # unreachable: abort raises
    if write and not caller.can_write:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"token {caller.name!r} has role {caller.role!r}; this call needs role 'write'")
    return caller.name


async def _author(service: AdminService, actor: str, context: Any) -> str:
    who = await authorize(service, context, write=True)
    actor = "".join(c for c in actor.strip()[:200] if c.isprintable())
    if not who or actor:
        who = f"{who} ({actor})" if who else actor
    peer = context.peer() or "unknown"
    return f"{who} (grpc {peer})" if who else f"grpc {peer}"


Context = Any  # grpc.aio.ServicerContext (grpc ships no type information)


@contextlib.asynccontextmanager
async def _refusals(context: Context) -> AsyncIterator[None]:
    """End the call with the gRPC code and message of a `FilterError` (or a
    `ResourceError`) raised inside."""
    try:
        yield
    except FilterError as exc:
        log.info("grpc_admin_error", filter=exc.name, status=exc.status, error=exc.message)
        await context.abort(grpc_code(exc.status), exc.message)
    except ResourceError as exc:
        log.info("grpc_admin_error", resource=exc.where, status=exc.status, error=str(exc))
        await context.abort(grpc_code(exc.status), str(exc))


async def _window(seconds: float, context: Context) -> float:
    """The health window a request's `window_seconds` asks for (0: the default), as
    `?window=` over HTTP; INVALID_ARGUMENT when out of range."""
    try:
        return parse_window(str(seconds) if seconds else None)
    except WindowError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise


# -- the service --------------------------------------------------------------------------


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """`xds_server.admin.v1.AdminService` (grpc.aio): `AdminService`'s operations as
    messages, the same ones the HTTP API serves as JSON.

    Each method checks access, calls the service, projects its answer.
    `begin_shutdown()` ends every WatchStatus stream.
    """

    def __init__(self, service: AdminService) -> None:
        self.service = service
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

    # -- filters ----------------------------------------------------------------------

    async def ApplyFilter(
        self, request: admin_pb2.ApplyFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Deploy `specs` as a new revision of `name` (if `expect_revision` is current)."""
        author = await _author(self.service, request.actor, context)
        name = request.name
        async with _refusals(context):
            if not name:
                raise FilterError(name, "'name' is required", status=400)
            raw = [whole_numbers(MessageToDict(s)) for s in request.specs]
            change = FilterRequest(parse_specs(name, raw), expect_revision(
                name, request.expect_revision if request.HasField("expect_revision") else None))
            view, _ = await self.service.apply(name, change, author=author)
        return filter_message(view)

    async def DeleteFilter(
        self, request: admin_pb2.DeleteFilterRequest, context: Context
    ) -> admin_pb2.DeleteFilterResponse:
        """Stop serving `name`; the delete is a revision too."""
        author = await _author(self.service, request.actor, context)
        async with _refusals(context):
            revision = await self.service.delete(request.name, author=author)
        return admin_pb2.DeleteFilterResponse(name=request.name, revision=revision)

    async def RollbackFilter(
        self, request: admin_pb2.RollbackFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Serve `to_revision` (default: the previous revision) again."""
        author = await _author(self.service, request.actor, context)
        to = request.to_revision if request.HasField("to_revision") else None
        async with _refusals(context):
            view = await self.service.rollback(request.name, author=author, to=to)
        return filter_message(view)

    async def PromoteFilter(
        self, request: admin_pb2.PromoteFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """Widen a canary to its full selector."""
        author = await _author(self.service, request.actor, context)
        async with _refusals(context):
            view = await self.service.promote(request.name, author=author)
        return filter_message(view)

    async def ListFilters(
        self, request: admin_pb2.ListFiltersRequest, context: Context
    ) -> admin_pb2.ListFiltersResponse:
        """Every served filter, by name."""
        await authorize(self.service, context, write=False)
        views = self.service.filters(redact=read_only(self.service, context))
        return admin_pb2.ListFiltersResponse(filters=[filter_message(v) for v in views])

    async def GetFilter(
        self, request: admin_pb2.GetFilterRequest, context: Context
    ) -> admin_pb2.Filter:
        """One filter, or NOT_FOUND."""
        await authorize(self.service, context, write=False)
        async with _refusals(context):
            view = self.service.filter(request.name, redact=read_only(self.service, context))
        return filter_message(view)

    async def GetHistory(
        self, request: admin_pb2.GetHistoryRequest, context: Context
    ) -> admin_pb2.GetHistoryResponse:
        """Revisions of a filter, newest first (deleted filters keep their history)."""
        await authorize(self.service, context, write=False)
        async with _refusals(context):
            history = await self.service.history(
                request.name, request.limit or None, redact=read_only(self.service, context))
        return admin_pb2.GetHistoryResponse(
            name=request.name, history=[revision_message(r) for r in history])

    async def StartDebug(
        self, request: admin_pb2.StartDebugRequest, context: Context
    ) -> admin_pb2.Filter:
        """A time-boxed configuration override for the proxies `node` matches."""
        author = await _author(self.service, request.actor, context)
        body: dict[str, Any] = {"node": request.node}
        if request.duration:
            body["for"] = request.duration
        if request.HasField("configuration"):
            body["configuration"] = whole_numbers(MessageToDict(request.configuration))
        async with _refusals(context):
            node, configuration, seconds = parse_debug_body(request.name, body, where="request")
            view = await self.service.debug(request.name, node=node, configuration=configuration,
                                            seconds=seconds, author=author)
        return filter_message(view)

    async def EndDebug(
        self, request: admin_pb2.EndDebugRequest, context: Context
    ) -> admin_pb2.Filter:
        """End the filter's debug override now (FAILED_PRECONDITION without one)."""
        author = await _author(self.service, request.actor, context)
        async with _refusals(context):
            view = await self.service.end_debug(request.name, author=author)
        return filter_message(view)

    async def GetFilterHealth(
        self, request: admin_pb2.GetFilterHealthRequest, context: Context
    ) -> admin_pb2.FilterHealth:
        """Health per revision (GET /api/v1/filters/{name}/health), or NOT_FOUND."""
        await authorize(self.service, context, write=False)
        window = await _window(request.window_seconds, context)
        view = await filter_health_view(self.service, request.name, window)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no filter named {request.name!r}")
            raise AssertionError("abort raises")
        return filter_health_message(view)

    # -- resources (standalone fleets) ----------------------------------------------------

    async def ListResources(
        self, request: admin_pb2.ListResourcesRequest, context: Context
    ) -> admin_pb2.ListResourcesResponse:
        """Every resource of a kind, by name."""
        await authorize(self.service, context, write=False)
        async with _refusals(context):
            views = self.service.resources(request.kind)
        return admin_pb2.ListResourcesResponse(resources=[resource_message(v) for v in views])

    async def GetResource(
        self, request: admin_pb2.GetResourceRequest, context: Context
    ) -> admin_pb2.Resource:
        """One resource, or NOT_FOUND."""
        await authorize(self.service, context, write=False)
        async with _refusals(context):
            view = self.service.resource(request.kind, request.name)
        return resource_message(view)

    async def PutResource(
        self, request: admin_pb2.PutResourceRequest, context: Context
    ) -> admin_pb2.Resource:
        """Make `specs` the resource's new revision (if `expect_revision` is current)."""
        author = await _author(self.service, request.actor, context)
        expect = request.expect_revision if request.HasField("expect_revision") else None
        async with _refusals(context):
            if not request.specs:
                raise ResourceError(f"{request.kind}/{request.name}", "specs", "no specs given")
            items = [whole_numbers(MessageToDict(s)) for s in request.specs]
            view, _ = await self.service.put_resource(request.kind, request.name, items, author=author,
                                                      expect_revision=expect)
        return resource_message(view)

    async def DeleteResource(
        self, request: admin_pb2.DeleteResourceRequest, context: Context
    ) -> admin_pb2.DeleteResourceResponse:
        """Stop serving a resource; the delete is a revision too."""
        author = await _author(self.service, request.actor, context)
        async with _refusals(context):
            revision = await self.service.delete_resource(request.kind, request.name, author=author)
        return admin_pb2.DeleteResourceResponse(kind=request.kind, name=request.name, revision=revision)

    async def GetResourceHistory(
        self, request: admin_pb2.GetResourceHistoryRequest, context: Context
    ) -> admin_pb2.GetHistoryResponse:
        """Revisions of a resource, newest first (`name` answers as `kind/name`)."""
        await authorize(self.service, context, write=False)
        async with _refusals(context):
            history = await self.service.resource_history(request.kind, request.name, request.limit or None)
        return admin_pb2.GetHistoryResponse(name=f"{request.kind}/{request.name}",
                                            history=[revision_message(r) for r in history])

    async def RollbackResource(
        self, request: admin_pb2.RollbackResourceRequest, context: Context
    ) -> admin_pb2.Resource:
        """Serve `to_revision` (default: the newest earlier one with other content) again."""
        author = await _author(self.service, request.actor, context)
        to = request.to_revision if request.HasField("to_revision") else None
        async with _refusals(context):
            view = await self.service.rollback_resource(request.kind, request.name, author=author, to=to)
        return resource_message(view)

    # -- proxies ----------------------------------------------------------------------

    async def GetProxyStatus(
        self, request: admin_pb2.GetProxyStatusRequest, context: Context
    ) -> admin_pb2.GetProxyStatusResponse:
        """Known proxies (only `node_id`, or those the query fields select, a page at a
        time), as GET /api/v1/proxies lists them."""
        await authorize(self.service, context, write=False)
        if request.node_id:
            views = self.service.proxies(request.node_id)
            return admin_pb2.GetProxyStatusResponse(proxies=[proxy_message(p) for p in views],
                                                    total=len(views))
        try:
            state = admin_pb2.ResourceState.Name(request.state).removeprefix("RESOURCE_STATE_")
            query = ProxyQuery(node=request.node, cluster=request.cluster, filter=request.filter,
                               state="" if state == "UNSPECIFIED" else state, version=request.version,
                               limit=request.limit or None, cursor=request.cursor)
        except (QueryError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise
        answer = self.service.query_proxies(query)
        return admin_pb2.GetProxyStatusResponse(
            proxies=[proxy_message(p) for p in answer["proxies"]], total=answer["total"],
            next_cursor=answer["next_cursor"] or "")

    async def GetSummary(
        self, request: admin_pb2.GetSummaryRequest, context: Context
    ) -> admin_pb2.Summary:
        """The fleet summary (GET /api/v1/summary)."""
        await authorize(self.service, context, write=False)
        window = await _window(request.window_seconds, context)
        return summary_message(await self.service.summary(window=window))

    async def WatchStatus(
        self, request: admin_pb2.WatchStatusRequest, context: Context
    ) -> AsyncIterator[admin_pb2.StatusEvent]:
        """Proxy events (and filter changes when asked) from the moment initial metadata
        is sent until the client cancels or the server stops."""
        await authorize(self.service, context, write=False)
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

        unsubscribe = [self.service.subscribe_proxies(push)]
        if request.include_filter_events:
            unsubscribe.append(self.service.subscribe_filters(push))
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


class GrpcExtension(Protocol):
    """Another concern's gRPC service on the xDS port (e.g. telemetry): registered
    beside the admin services and listed by reflection and health."""

    @property
    def service_name(self) -> str:
        """The full service name (`package.Service`)."""
        ...

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's handlers to `server`."""
        ...


@dataclass(slots=True)
class GrpcServices:
    """The non-xDS gRPC services of one server, registered on its gRPC server."""

    admin: AdminServicer
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
    server: grpc.aio.Server, service: AdminService, cache: ResourceCache,
    xds_services: Sequence[str], *, extensions: Sequence[GrpcExtension] = (),
) -> GrpcServices:
    """Add AdminService, CSDS, health, each extension and reflection (listing every
    service, the xDS ones included) to `server`. Health starts NOT_SERVING; see
    `HealthReporter`."""
    admin = AdminServicer(service)
    admin.register(server)

    async def csds_access(context: Any) -> None:
        await authorize(service, context, write=False)

    csds = CsdsService(service.tracker, cache, authorize=csds_access)
    csds.register(server)
    for extension in extensions:
        extension.register(server)
    names = [*xds_services, CSDS_SERVICE, ADMIN_SERVICE, *(e.service_name for e in extensions),
             HEALTH_SERVICE, reflection.SERVICE_NAME]
    health = HealthReporter(service, [n for n in names if n not in (HEALTH_SERVICE, reflection.SERVICE_NAME)])
    health.register(server)
    _ensure_descriptors(names)
    reflection.enable_server_reflection(names, server)
    return GrpcServices(admin=admin, csds=csds, health=health, service_names=names)
