"""Prometheus metrics of signature checks."""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["SIGNATURE_CHECKS"]

SIGNATURE_CHECKS = Counter(
    "xds_server_signature_checks_total",
    "Images checked against a verify policy, by result (verified, refused, unverified, error)",
    ["result"],
)
