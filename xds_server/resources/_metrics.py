"""The resources' Prometheus metrics (process-wide, registered at import)."""

from prometheus_client import Counter

RESOURCE_CHANGES = Counter(
    "xds_server_resource_changes_total",
    "Changes of listeners, routes, clusters and endpoints by kind, action and result "
    "(applied, unchanged, inconsistent, conflict, error)",
    ["kind", "action", "result"],
)
RESOURCE_PINS = Counter(
    "xds_server_resource_nack_pins_total",
    "Proxies kept on their last good version of a resource after a NACK, by kind",
    ["kind"],
)
