"""Limits on telemetry from Envoys, and the counters of what was taken and dropped.

Telemetry is untrusted input from the network. Everything here is bounded: message
size, records per export, records per second per node, string sizes, and the limiter's
own table of nodes.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily

__all__ = ["DROP_REASONS", "STATS", "NodeRateLimiter", "TelemetryLimits"]


@dataclass(frozen=True, slots=True)
class TelemetryLimits:
    """Per-server limits on telemetry (defaults a healthy fleet never reaches).

    `max_message_bytes`: an export larger than this is refused whole (`too_large`).
    `records_per_second` / `record_burst`: a token bucket per node id shared by its
    access-log and stats exports; records beyond it are dropped (`rate_limited`).
    `max_records_per_export`: records of one export beyond this are dropped (`too_many`).
    `max_value_chars`: longer attribute values are cut to this many characters.
    `max_attributes`: attributes of one record beyond this are ignored.
    `max_nodes`: node ids the rate limiter remembers (least recently seen forgotten).
    """

    max_message_bytes: int = 1 * 2**20
    records_per_second: float = 2_000.0
    record_burst: int = 20_000
    max_records_per_export: int = 50_000
    max_value_chars: int = 1_024
    max_attributes: int = 64
    max_nodes: int = 100_000


DROP_REASONS = (
    "too_large",      # the export exceeded max_message_bytes
    "malformed",      # bytes that are not the OTLP message
    "unknown_node",   # no node id, or one that never had an xDS stream here
    "identity",       # the mTLS identity binding refused the node id
    "node_mismatch",  # a resource claims another node than the caller's
    "rate_limited",   # over the node's records per second
    "too_many",       # over max_records_per_export
    "bad_record",     # a record whose fields cannot be read (e.g. a non-numeric status)
    "consumer_error",  # a consumer raised on a batch (a bug; the stream goes on)
)


class _TelemetryStats:
    """Counters as plain integers (event-loop owned), read by Prometheus at scrape time,
    like the xDS protocol counters: the hot path never takes a lock."""

    def __init__(self) -> None:
        self.records: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.exports: Counter[str] = Counter()

    def collect(self) -> Iterator[Any]:
        records = CounterMetricFamily(
            "xds_server_telemetry_records", "Telemetry records accepted from Envoys, by kind",
            labels=["kind"])
        for kind in ("request", "stat"):
            records.add_metric([kind], self.records[kind])
        yield records
        dropped = CounterMetricFamily(
            "xds_server_telemetry_dropped",
            "Telemetry records (or whole exports) dropped, by reason", labels=["reason"])
        for reason in DROP_REASONS:
            dropped.add_metric([reason], self.dropped[reason])
        yield dropped
        exports = CounterMetricFamily(
            "xds_server_telemetry_exports", "OTLP export calls received, by signal",
            labels=["signal"])
        for signal in ("logs", "metrics"):
            exports.add_metric([signal], self.exports[signal])
        yield exports


STATS = _TelemetryStats()
REGISTRY.register(STATS)


class NodeRateLimiter:
    """A token bucket per node id: `take(node, n)` returns how many of `n` records may
    pass now. The table holds at most `limits.max_nodes` buckets (least recently used
    forgotten), so it is bounded whatever node ids arrive."""

    def __init__(self, limits: TelemetryLimits, *, clock: Any = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, node_id: str, n: int) -> int:
        """Take up to `n` tokens from `node_id`'s bucket; returns how many were taken."""
        lim = self.limits
        now = self._clock()
        tokens, at = self._buckets.pop(node_id, (float(lim.record_burst), now))
        tokens = min(float(lim.record_burst), tokens + (now - at) * lim.records_per_second)
        granted = min(n, int(tokens))
        self._buckets[node_id] = (tokens - granted, now)
        while len(self._buckets) > lim.max_nodes:
            self._buckets.popitem(last=False)
        return granted
