"""Prometheus metrics of the wasm subsystem, on the default ``prometheus_client`` registry.

All names start with ``xds_server_module_``. Objects are created once at import time.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CACHE_REQUESTS",
    "FETCHED_BYTES",
    "FETCHES",
    "FETCH_DURATION",
    "STORE_BYTES",
    "STORE_MODULES",
]

FETCHES = Counter(
    "xds_server_module_fetches_total",
    "Module fetches from a registry, URL or file, by source kind and result "
    "(ok, not_found, auth_error, unsafe_destination, unavailable, registry_error, "
    "verification_error, too_large, invalid_module, invalid_reference, error).",
    ["kind", "result"],
)
"""Counter of fetches by ``kind`` (image, url, file) and ``result``."""

FETCH_DURATION = Histogram(
    "xds_server_module_fetch_duration_seconds",
    "Duration of module fetches (download, verification and store), by source kind.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
"""Histogram of fetch durations by ``kind``."""

FETCHED_BYTES = Counter(
    "xds_server_module_fetched_bytes_total",
    "Bytes downloaded from registries and URLs (manifests, configs and blobs).",
)
"""Counter of bytes downloaded."""

CACHE_REQUESTS = Counter(
    "xds_server_module_cache_requests_total",
    "Module resolutions answered from the store (hit) or needing a fetch (miss), and "
    "stale modules served because a re-resolution failed (stale).",
    ["result"],
)
"""Counter of store look-ups by ``result`` (hit, miss, stale)."""

STORE_BYTES = Gauge(
    "xds_server_module_store_bytes",
    "Total size of the modules in the content-addressed store.",
)
"""Gauge of the store's total module bytes."""

STORE_MODULES = Gauge(
    "xds_server_module_store_modules",
    "Number of modules in the content-addressed store.",
)
"""Gauge of the number of modules in the store."""
