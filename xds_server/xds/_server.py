"""gRPC wiring: every served type's services and ADS, as generic handlers.

Service methods are thin: each hands its stream to a `SotwStream` or `DeltaStream`
bound to a type URL (or to none, for ADS). Responses are pre-serialized bytes, so the
gRPC response serializer is the identity.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import structlog
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from xds_server.cache import ResourceCache, ResourceType, TypeRegistry, collection_version
from xds_server.nodes import NodeInfo
from xds_server.xds._callbacks import NullCallbacks, StreamCallbacks
from xds_server.xds._delta import DeltaStream
from xds_server.xds._sotw import SotwStream
from xds_server.xds._stream import Authorizer, Malformed, StreamContext, StreamLimits

log = structlog.get_logger("xds_server.xds")

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _identity(data: bytes) -> bytes:
    return data


def _parser(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError) as exc:
            return Malformed(f"malformed request: {message_type.DESCRIPTOR.name}: {exc}")

    return parse


_SOTW_REQUEST = _parser(discovery_pb2.DiscoveryRequest)
_DELTA_REQUEST = _parser(discovery_pb2.DeltaDiscoveryRequest)


class XdsService:
    """Serves the registered resource types over their own services and over ADS.

    Lifecycle: construct, `register(server)` before the gRPC server starts, then
    `begin_shutdown()` when stopping so no new response is written.
    """

    def __init__(
        self,
        cache: ResourceCache,
        *,
        types: Sequence[ResourceType],
        callbacks: StreamCallbacks | None = None,
        limits: StreamLimits | None = None,
        control_plane: str = "xds-server",
        authorizer: Authorizer | None = None,
    ) -> None:
        self.registry = TypeRegistry(types)
        self.ctx = StreamContext(
            cache,
            self.registry,
            callbacks or NullCallbacks(),
            limits or StreamLimits(),
            control_plane,
            authorizer,
        )

    @property
    def service_names(self) -> list[str]:
        """Fully qualified names of the gRPC services registered."""
        names = [t.service for t in self.registry if t.service]
        return [*names, ADS_SERVICE]

    def register(self, server: grpc.aio.Server) -> None:
        """Add every service's handlers to `server`."""
        for rtype in self.registry:
            if not rtype.service:
                continue
            methods = self._stream_methods(rtype.stream_method, rtype.delta_method,
                                           _short_service(rtype.service), rtype.type_url)
            if rtype.fetch_method:
                methods[rtype.fetch_method] = grpc.unary_unary_rpc_method_handler(
                    self._fetch_handler(rtype.type_url), _SOTW_REQUEST, _identity
                )
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(rtype.service, methods),)
            )
        ads = self._stream_methods("StreamAggregatedResources", "DeltaAggregatedResources", "ads", None)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ADS_SERVICE, ads),)
        )

    def begin_shutdown(self) -> None:
        """Stop writing responses; open streams end when the server stops."""
        self.ctx.closing = True

    @property
    def stream_count(self) -> int:
        """Streams open now."""
        return len(self.ctx.open_streams)

    def _stream_methods(
        self, sotw_method: str, delta_method: str, service: str, type_url: str | None
    ) -> dict[str, grpc.RpcMethodHandler]:
        """The SotW and delta stream methods of one service, bound to `type_url` (None
        for ADS)."""
        return {
            sotw_method: grpc.stream_stream_rpc_method_handler(
                self._stream_handler(SotwStream, service, type_url), _SOTW_REQUEST, _identity
            ),
            delta_method: grpc.stream_stream_rpc_method_handler(
                self._stream_handler(DeltaStream, service, type_url), _DELTA_REQUEST, _identity
            ),
        }

    def _stream_handler(
        self, loop: type[SotwStream] | type[DeltaStream], service: str, type_url: str | None
    ) -> Any:
        delta = loop is DeltaStream

        async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            stream = loop(self.ctx, context, service=service, delta=delta, fixed_type_url=type_url)
            await stream.run(requests)

        return handle

    def _fetch_handler(self, type_url: str) -> Any:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> bytes:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    request.error)
            if request.type_url and request.type_url != type_url:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"type_url {request.type_url!r} is not served by this service; "
                    f"it serves {type_url!r}",
                )
            node = NodeInfo.from_proto(request.node)
            if self.ctx.authorizer is not None:
                refused = self.ctx.authorizer(node, context.auth_context())
                if refused is not None:
                    log.warning("node_identity_refused", node_id=node.id, peer=context.peer(), reason=refused)
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, refused)
            if len(request.resource_names) > self.ctx.limits.max_names:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"request names {len(request.resource_names)} resources; "
                                    f"the limit is {self.ctx.limits.max_names}")
            cache = self.ctx.cache
            names = list(request.resource_names) or cache.names(type_url)
            found = [r for n in sorted(set(names)) if (r := cache.resolve(type_url, n, node))]
            versions = {r.name: r.version for r in found}
            version = collection_version(versions)
            log.info("fetch", node_id=node.id, type_url=type_url, version=version,
                     resources=versions)
            head = discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url
            ).SerializeToString()
            await asyncio.sleep(0)
            body: bytes = head + self.ctx.control_plane_field
            return body + b"".join(r.sotw_field for r in found)

        return handle


def _short_service(service: str) -> str:
    """`envoy.service.extension.v3.ExtensionConfigDiscoveryService` -> `ecds`-like tag."""
    name = service.rsplit(".", 1)[-1]
    return {
        "ExtensionConfigDiscoveryService": "ecds",
        "ListenerDiscoveryService": "lds",
        "ClusterDiscoveryService": "cds",
        "RouteDiscoveryService": "rds",
        "EndpointDiscoveryService": "eds",
    }.get(name, name)
