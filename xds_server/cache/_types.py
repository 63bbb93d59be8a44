"""The resource types this server knows, as data. Add a type here, not a loop."""

from __future__ import annotations

from xds_server.cache._resource import ResourceType

TYPED_EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

ECDS = ResourceType(
    type_url=TYPED_EXTENSION_CONFIG,
    service="envoy.service.extension.v3.ExtensionConfigDiscoveryService",
    stream_method="StreamExtensionConfigs",
    delta_method="DeltaExtensionConfigs",
    fetch_method="FetchExtensionConfigs",
)
LISTENER = ResourceType(
    type_url="type.googleapis.com/envoy.config.listener.v3.Listener",
    full_state=True,
    service="envoy.service.listener.v3.ListenerDiscoveryService",
    stream_method="StreamListeners",
    delta_method="DeltaListeners",
    fetch_method="FetchListeners",
)
CLUSTER = ResourceType(
    type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster",
    full_state=True,
    service="envoy.service.cluster.v3.ClusterDiscoveryService",
    stream_method="StreamClusters",
    delta_method="DeltaClusters",
    fetch_method="FetchClusters",
)
ROUTE = ResourceType(
    type_url="type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    service="envoy.service.route.v3.RouteDiscoveryService",
    stream_method="StreamRoutes",
    delta_method="DeltaRoutes",
    fetch_method="FetchRoutes",
)
ENDPOINT = ResourceType(
    type_url="type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    service="envoy.service.endpoint.v3.EndpointDiscoveryService",
    stream_method="StreamEndpoints",
    delta_method="DeltaEndpoints",
    fetch_method="FetchEndpoints",
)


def default_types() -> tuple[ResourceType, ...]:
    """The types served by default: ECDS only (this server ships wasm filters).

    LDS/CDS/RDS/EDS are declared above (the protocol serves any of them as data); nothing in
    this server produces them yet (listeners and routes are a later change).
    """
    return (ECDS,)
