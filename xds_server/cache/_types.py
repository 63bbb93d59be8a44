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
    """Every type this server serves, in Envoy's warming order: a stream with several
    types due sends them in this order (go-control-plane's ADS order: clusters before
    their endpoints, listeners before their route configurations; wasm filters last,
    after the listeners that name them)."""
    return (CLUSTER, ENDPOINT, LISTENER, ROUTE, ECDS)
