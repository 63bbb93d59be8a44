"""Versioned, immutable xDS resources per type URL and per node group, with watches.

The xDS protocol loops read resources only through `ResourceCache`; what the resources
mean (wasm filters, listeners, ...) is decided elsewhere.

May import: `nodes` (node selectors of variants); never `xds`, `controller`, `wasm`,
`admin`, `runtime` or `cli`.
"""

from xds_server.cache._cache import ResourceCache, Snapshot, Variant, Watch
from xds_server.cache._resource import Resource, ResourceType, TypeRegistry, collection_version
from xds_server.cache._types import (
    CLUSTER,
    ECDS,
    ENDPOINT,
    LISTENER,
    ROUTE,
    TYPED_EXTENSION_CONFIG,
    default_types,
)

__all__ = [
    "CLUSTER",
    "ECDS",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "TYPED_EXTENSION_CONFIG",
    "Resource",
    "ResourceCache",
    "ResourceType",
    "Snapshot",
    "TypeRegistry",
    "Variant",
    "Watch",
    "collection_version",
    "default_types",
]
