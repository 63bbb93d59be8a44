"""Prometheus series of health per filter revision (this replica's share).

Read at scrape time from every live `HealthWindows` of the process, so ingestion adds
to plain integers only. Counters are what this replica ingested (sum them over replicas
in PromQL); latency quantiles are over this replica's last minute. Only revisions seen
within the retention (an hour) have series, so cardinality follows the windows' caps.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from xds_server.telemetry._histogram import LatencyHistogram

if TYPE_CHECKING:
    from xds_server.telemetry._health import HealthWindows

__all__ = ["FILTER_METRICS"]


class _FilterMetrics:
    """The collector; `track(windows)` adds a `HealthWindows` (held weakly)."""

    def __init__(self) -> None:
        self._windows: weakref.WeakSet[HealthWindows] = weakref.WeakSet()

    def track(self, windows: HealthWindows) -> None:
        """Include `windows` in scrapes until it is closed (`untrack`) or garbage."""
        self._windows.add(windows)

    def untrack(self, windows: HealthWindows) -> None:
        """Leave `windows` out of scrapes (a stopped server's windows, which may live on
        in reference cycles until the garbage collector runs)."""
        self._windows.discard(windows)

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (prometheus_client collector protocol)."""
        labels = ["filter", "revision"]
        requests = CounterMetricFamily("xds_server_filter_requests",
                                       "Requests through a filter revision (access logs ingested here)", labels=labels)
        errors = CounterMetricFamily("xds_server_filter_errors_5xx", "5xx responses through a filter revision",
                                     labels=labels)
        failures = CounterMetricFamily(
            "xds_server_filter_vm_failures",
            "Wasm VM failures of a filter revision (requests answered wasm_fail_stream, failed VM reloads)",
            labels=labels)
        latency = GaugeMetricFamily("xds_server_filter_latency_ms",
                                    "Request latency through a filter revision over the last minute (ms)",
                                    labels=[*labels, "quantile"])
        dropped = CounterMetricFamily("xds_server_telemetry_health_dropped",
                                      "Telemetry values the health windows dropped, by reason", labels=["reason"])
        totals: dict[tuple[str, int], list[float]] = {}
        hists: dict[tuple[str, int], LatencyHistogram] = {}
        drops: dict[str, int] = {}
        now = time.time()
        for w in list(self._windows):
            for key, t in w.local_totals.items():
                acc = totals.setdefault(key, [0.0, 0.0, 0.0])
                for i in range(3):
                    acc[i] += t[i]
            for (name, revision, _canary), _start, cell in w.local_cells(now - 60):
                hists.setdefault((name, revision), LatencyHistogram()).merge(cell.latency.counts)
            for reason, count in w.dropped.items():
                drops[reason] = drops.get(reason, 0) + count
        for (name, revision), (n, e, f) in sorted(totals.items()):
            values = [name, str(revision)]
            requests.add_metric(values, n)
            errors.add_metric(values, e)
            failures.add_metric(values, f)
        for (name, revision), h in sorted(hists.items()):
            for q in (0.5, 0.99):
                v = h.quantile(q)
                if v is not None:
                    latency.add_metric([name, str(revision), str(q)], v)
        for reason, n in sorted(drops.items()):
            dropped.add_metric([reason], n)
        yield from (requests, errors, failures, latency, dropped)


FILTER_METRICS = _FilterMetrics()
REGISTRY.register(FILTER_METRICS)
