"""The four Envoy resource kinds of a standalone fleet, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from xds_server.cache import CLUSTER, ENDPOINT, LISTENER, ROUTE, ResourceType

__all__ = ["KINDS", "PUBLISH_ORDER", "Kind", "kind_of"]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of resource: its key in the config's `resources` section and the API
    path (`listeners`), the xds-protos message, and the field holding its name."""

    key: str
    message: Any
    name_field: str
    rtype: ResourceType

    @property
    def type_url(self) -> str:
        """The xDS type URL of the kind."""
        return self.rtype.type_url


LISTENERS = Kind("listeners", listener_pb2.Listener, "name", LISTENER)
ROUTES = Kind("routes", route_pb2.RouteConfiguration, "name", ROUTE)
CLUSTERS = Kind("clusters", cluster_pb2.Cluster, "name", CLUSTER)
ENDPOINTS = Kind("endpoints", endpoint_pb2.ClusterLoadAssignment, "cluster_name", ENDPOINT)

KINDS: dict[str, Kind] = {k.key: k for k in (LISTENERS, ROUTES, CLUSTERS, ENDPOINTS)}
"""By config/API key, in the contract's order."""

PUBLISH_ORDER: tuple[Kind, ...] = (CLUSTERS, ENDPOINTS, LISTENERS, ROUTES)
"""Envoy's warming order (go-control-plane's): a cluster before its endpoints, a
listener before its route configuration. Removals go the other way."""


def kind_of(key: str) -> Kind | None:
    """The kind named `key` (`listeners`, `routes`, `clusters`, `endpoints`), or None."""
    return KINDS.get(key)
