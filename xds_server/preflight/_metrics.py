"""Prometheus metrics of dry runs."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

__all__ = ["PREFLIGHT_CHECKS", "PREFLIGHT_DURATION"]

PREFLIGHT_CHECKS = Counter(
    "xds_server_preflight_checks_total",
    "Dry runs in the sandbox Envoy, by result (passed, refused, cached_passed, cached_refused, error)",
    ["result"],
)
PREFLIGHT_DURATION = Histogram(
    "xds_server_preflight_duration_seconds", "Time of a dry run that ran in the sandbox Envoy",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
