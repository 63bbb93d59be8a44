"""Envoy listeners, route configurations, clusters and endpoints for standalone fleets.

Written in Envoy's own v3 shape (config `resources` section and the admin API), parsed
into xds-protos messages, checked for snapshot consistency, recorded as revisions and
published into the cache in Envoy's warming order.

May import: `cache`, `state`, `nodes`; never `xds`, `admin`, `runtime`, `cli` or `wasm`.
"""

from xds_server.resources._consistency import check_consistent, serve_all
from xds_server.resources._kinds import KINDS, PUBLISH_ORDER, Kind, kind_of
from xds_server.resources._manager import (
    KEY_PREFIX,
    ResourceManager,
    check_selectors,
    is_resource_key,
    resource_key,
)
from xds_server.resources._model import (
    ResourceConflict,
    ResourceError,
    ResourceSpec,
    RouteRule,
    WasmFilterRef,
    route_instance,
)
from xds_server.resources._parse import parse_resource

__all__ = [
    "KEY_PREFIX",
    "KINDS",
    "PUBLISH_ORDER",
    "Kind",
    "ResourceConflict",
    "ResourceError",
    "ResourceManager",
    "ResourceSpec",
    "RouteRule",
    "WasmFilterRef",
    "check_consistent",
    "check_selectors",
    "is_resource_key",
    "kind_of",
    "parse_resource",
    "resource_key",
    "route_instance",
    "serve_all",
]
