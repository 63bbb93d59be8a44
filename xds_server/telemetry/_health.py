"""Health per filter revision: bounded time buckets, shared across replicas.

`HealthWindows` is a `TelemetryConsumer`. For each (filter, revision, canary side) and
each `bucket_seconds` bucket it counts proxies, requests, 5xx, wasm VM failures and
reloads, a latency histogram and the filter's custom metrics. It keeps in memory only the
buckets still filling (about a minute); `flush()` upserts them into the state store under
this replica's id, and every read merges all replicas' rows (plus this replica's unflushed
cells), so any replica answers for the fleet.

What Envoy 1.40 reports when a module fails at run time (measured, see README "Health
per filter revision"): a trapping `proxy_on_response_headers` answers 503 with response
code details `wasm_fail_stream` for that request and, with the default FAIL_CLOSED
policy, for every later one (the VM is dead); no stat counts it. With FAIL_RELOAD Envoy
counts `wasm.<plugin name>.vm_reload_success` / `vm_reload_failure` /
`vm_reload_backoff` (the plugin name is the filter name). Custom metrics are stats named
`wasmcustom.<name>`; Envoy has one namespace per proxy, so a node running several wasm
filters reports their custom metrics to each of them.

Cardinality is bounded whatever arrives: filters, revisions kept per filter (the oldest
is evicted for a newer one; records for revisions older than every kept one are
dropped), custom metric names per filter, nodes per cell and tracked nodes. Everything
dropped is counted in `dropped` by reason. All methods run on the event loop; the
consumer methods never raise and never block.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import structlog

from xds_server.state import HealthRow, StateStore
from xds_server.telemetry._histogram import LatencyHistogram, bucket_of
from xds_server.telemetry._metrics import FILTER_METRICS
from xds_server.telemetry._model import FilterRun, RequestRecord, StatRecord

__all__ = ["WASM_FAIL_DETAILS", "HealthLimits", "HealthTotals", "HealthWindows", "RevisionHealth"]

log = structlog.get_logger("xds_server.telemetry.health")

WASM_FAIL_DETAILS = "wasm_fail_stream"
"""Envoy's response code details when a wasm filter failed the request (measured, 1.40)."""
_CUSTOM_PREFIX = "wasmcustom."
_RELOAD_FAILED = ("vm_reload_failure",)
_RELOADED = ("vm_reload_success",)
_MAX_COUNTERS_PER_NODE = 64
_FAILING_SECONDS = 60.0

Key = tuple[str, int, bool]
"""(filter, revision, canary)."""


@dataclass(frozen=True, slots=True)
class HealthLimits:
    """Bounds of the windows; defaults in one place."""

    bucket_seconds: int = 10
    retention: float = 3600.0
    """How far back buckets are kept (in the store)."""
    open_seconds: float = 60.0
    """How long after its end a bucket still takes late records and stays in memory."""
    max_filters: int = 256
    max_revisions: int = 8
    """Revisions kept per filter (both canary sides count as one revision)."""
    max_custom_metrics: int = 32
    """Custom metric names per filter."""
    max_nodes_per_cell: int = 20_000
    max_tracked_nodes: int = 50_000
    """Nodes whose cumulative counters are remembered (for deltas; at most 64 counters
    each). The least recently reporting node gives way; nodes silent for `idle_seconds`
    are forgotten, and so are filters without records for that long."""
    idle_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class HealthTotals:
    """Fleet-wide numbers over an interval (merged across replicas and buckets).

    `error_rate` is `errors_5xx / requests` (0.0 without requests). `proxies` is the
    peak number of distinct proxies that reported in one bucket. `p50`/`p99` are request
    latency quantiles in milliseconds (None without requests). `vm_failures` counts
    requests a wasm VM failed (`wasm_fail_stream`) plus failed VM reloads; `vm_reloads`
    counts VMs Envoy reloaded after a failure (FAIL_RELOAD). `custom_metrics`: counters
    summed over the interval; gauges: the highest value a proxy reported in the
    latest bucket that has them.
    """

    requests: int = 0
    errors_5xx: int = 0
    error_rate: float = 0.0
    vm_failures: int = 0
    vm_reloads: int = 0
    proxies: int = 0
    p50: float | None = None
    p99: float | None = None
    custom_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def failing(self) -> bool:
        """The runtime-failure rule: Envoy reported a wasm VM failure (a request failed by
        the VM, a failed reload, or a reload after a failure)."""
        return self.vm_failures > 0 or self.vm_reloads > 0


@dataclass(frozen=True, slots=True)
class RevisionHealth:
    """One revision (one canary side) of a filter over a window, with its per-bucket
    series (`series`: one dict per bucket, oldest first, zero-filled) and whether it is
    failing at run time now."""

    revision: int
    canary: bool
    version: str
    totals: HealthTotals
    series: list[dict[str, Any]]
    failing: bool = False
    """The runtime-failure rule over the last minute (see `HealthWindows.failing`)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of `GET /api/v1/filters/{name}/health` entries (a contract)."""
        t = self.totals
        return {
            "revision": self.revision, "version": self.version, "canary": self.canary,
            "proxies": t.proxies, "requests": t.requests, "errors_5xx": t.errors_5xx,
            "error_rate": t.error_rate, "latency_ms": {"p50": t.p50, "p99": t.p99},
            "vm_failures": t.vm_failures, "vm_reloads": t.vm_reloads,
            "custom_metrics": t.custom_metrics, "failing": self.failing, "series": self.series,
        }


class _Cell:
    """One key's numbers in one bucket (this replica)."""

    __slots__ = ("custom", "dirty", "errors_5xx", "latency", "nodes", "requests", "version",
                 "vm_failures", "vm_reloads")

    def __init__(self, version: str) -> None:
        self.version = version
        self.nodes: set[str] = set()
        self.requests = self.errors_5xx = self.vm_failures = self.vm_reloads = 0
        self.latency = LatencyHistogram()
        self.custom: dict[str, float] = {}
        self.dirty = True

    def row(self, replica_id: str, key: Key, start: int) -> HealthRow:
        return HealthRow(
            replica_id=replica_id, filter=key[0], revision=key[1], canary=key[2], bucket_start=start,
            version=self.version, proxies=len(self.nodes), requests=self.requests,
            errors_5xx=self.errors_5xx, vm_failures=self.vm_failures, vm_reloads=self.vm_reloads,
            latency=dict(self.latency.counts), custom=dict(self.custom),
        )


_RUNS = attrgetter("runs")
_TIME = attrgetter("time")
_STATUS = attrgetter("status")
_DETAILS = attrgetter("details")
_DURATION = attrgetter("duration_ms")
_NODE = attrgetter("node_id")
_IS_5XX = frozenset(range(500, 600)).__contains__


class _Group:
    """Access-log entries of one batch with the same bucket and runs, summed."""

    __slots__ = ("durations", "errors", "failed", "nodes", "requests", "runs")

    def __init__(self, runs: tuple[FilterRun, ...]) -> None:
        self.runs = runs
        self.requests = self.errors = self.failed = 0
        self.durations: dict[float, int] = {}
        self.nodes: dict[str, None] = {}  # a set in arrival order


class HealthWindows:
    """Health per filter revision (see the module docstring). A `TelemetryConsumer`.

    Reads (`totals`, `report`, `failing`) are async: they read the store. `run()` flushes
    every `flush_interval` seconds and prunes old buckets until cancelled; `close()`
    flushes once more.
    """

    def __init__(self, store: StateStore, *, replica_id: str, limits: HealthLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.replica_id = replica_id
        self.limits = limits or HealthLimits()
        self.clock = clock
        self.dropped: Counter[str] = Counter()
        """Records or values dropped, by reason (late, filters, revisions, custom_metrics,
        nodes, counters)."""
        self._cells: dict[int, dict[Key, _Cell]] = {}
        self._revisions: dict[str, set[int]] = {}
        self._custom: dict[str, set[str]] = {}
        self._counters: dict[str, dict[str, float]] = {}
        self._node_seen: dict[str, float] = {}  # least recently reporting first
        self._filter_seen: dict[str, float] = {}
        self.local_totals: dict[tuple[str, int], list[float]] = {}
        """(filter, revision) -> [requests, errors_5xx, vm_failures, last seen]: this
        replica's running totals for Prometheus (revisions idle for `retention` go)."""
        FILTER_METRICS.track(self)

    # -- consumer --------------------------------------------------------------------

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """Count access-log entries against every filter revision their node ran.

        The batch is first summed per (bucket, runs) group: in one export every entry
        comes from one node and, between two ACKs, with the same runs, so the cells,
        the revision bookkeeping and the running totals are touched once per group and
        filter, not once per entry and filter. Latency is summed per distinct duration
        (Envoy logs whole milliseconds) before it is put into histogram buckets."""
        now = self.clock()
        lo = now - self.limits.open_seconds
        step = self.limits.bucket_seconds
        groups = self._one_group(records, lo, now, step) if records else None
        if groups is None:
            groups = self._groups(records, lo, now, step)
        for (start, _), group in groups.items():
            histogram: dict[int, int] | None = None
            for run in group.runs:
                cell = self._cell(run, start, group.requests)
                if cell is None:
                    continue
                for node_id in group.nodes:
                    self._see(cell, node_id)
                cell.requests += group.requests
                cell.errors_5xx += group.errors
                cell.vm_failures += group.failed
                if histogram is None:
                    histogram = {}
                    for ms, n in group.durations.items():
                        i = bucket_of(ms)
                        histogram[i] = histogram.get(i, 0) + n
                cell.latency.merge(histogram)
                cell.dirty = True
                self._local(run, now, group.requests, group.errors, group.failed)

    @staticmethod
    def _one_group(records: Sequence[RequestRecord], lo: float, now: float,
                   step: int) -> dict[tuple[int, int], _Group] | None:
        """The common case, summed by C loops: every record of the batch with the same
        runs and in one open bucket (one export: one node, about a second of
        requests). None when the batch is not like that."""
        runs = records[0].runs
        if not all(map(runs.__eq__, map(_RUNS, records))):
            return None
        times = list(map(_TIME, records))
        first, last = min(times), max(times)
        if not (lo <= first and last <= now and math.isfinite(sum(times))):
            return None
        start = int(first // step) * step
        if int(last // step) * step != start:
            return None
        group = _Group(runs)
        group.requests = len(records)
        group.errors = sum(map(_IS_5XX, map(_STATUS, records)))
        group.failed = list(map(_DETAILS, records)).count(WASM_FAIL_DETAILS)
        durations = list(map(_DURATION, records))
        distinct = set(durations)
        if len(distinct) <= 16:  # Envoy logs whole milliseconds: a few distinct values
            group.durations = {ms: durations.count(ms) for ms in distinct}
        else:
            for ms in durations:
                group.durations[ms] = group.durations.get(ms, 0) + 1
        group.nodes = dict.fromkeys(map(_NODE, records))
        return {(start, id(runs)): group}

    def _groups(self, records: Sequence[RequestRecord], lo: float, now: float,
                step: int) -> dict[tuple[int, int], _Group]:
        """Records summed per (bucket, runs), one by one; late ones counted."""
        groups: dict[tuple[int, int], _Group] = {}
        late = 0
        for rec in records:
            at = rec.time
            if not lo <= at <= now:  # also NaN; `_bucket` decides (future = now, or late)
                if not math.isfinite(at) or at > now:
                    at = now
                elif at < lo:
                    late += 1
                    continue
            runs = rec.runs
            key = (int(at // step) * step, id(runs))
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(runs)
            group.requests += 1
            status = rec.status
            if 500 <= status <= 599:
                group.errors += 1
            if rec.details == WASM_FAIL_DETAILS:
                group.failed += 1
            ms = rec.duration_ms
            durations = group.durations
            durations[ms] = durations.get(ms, 0) + 1
            group.nodes[rec.node_id] = None
        if late:
            self.dropped["late"] += late
        return groups

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """Turn cumulative counters into per-bucket deltas per node (a counter that went
        down means Envoy restarted: its new value is the delta; "delta" samples count as
        they are). A node's first batch
        only sets the baseline; a counter first seen from a known node counts in full."""
        now = self.clock()
        seen: set[tuple[str, int]] = set()
        fresh = {r.node_id for r in records if r.node_id not in self._counters}
        for node_id in {r.node_id for r in records}:
            self._node_seen.pop(node_id, None)
            self._node_seen[node_id] = now
        for rec in records:
            start = self._bucket(rec.time, now)
            if start is None:
                continue
            if (rec.node_id, start) not in seen:  # the node reported: count it as a proxy
                seen.add((rec.node_id, start))
                for run in rec.runs:
                    if (cell := self._cell(run, start)) is not None:
                        self._see(cell, rec.node_id)
            self._stat(rec, start, now, baseline=rec.node_id in fresh)

    def _stat(self, rec: StatRecord, start: int, now: float, *, baseline: bool) -> None:
        name = rec.name
        custom = name.startswith(_CUSTOM_PREFIX)
        reload = name.startswith("wasm.") and name.rsplit(".", 1)[-1] in (*_RELOAD_FAILED, *_RELOADED)
        if not (custom or reload) or not rec.runs:
            return
        value: float = rec.value
        kind = rec.kind
        if kind == "counter":
            delta = self._delta(rec.node_id, name, rec.value, baseline=baseline)
            if delta is None or delta == 0:
                return
            value = delta
        elif kind == "delta":  # the sink reports counters as deltas already
            if value <= 0:
                return
            kind = "counter"
        elif reload:
            return
        for run in rec.runs:
            if reload and name.rsplit(".", 1)[0] != f"wasm.{run.filter}":
                continue
            cell = self._cell(run, start)
            if cell is None:
                continue
            cell.dirty = True
            if reload:
                failed = name.endswith(_RELOAD_FAILED)
                cell.vm_failures += int(value) if failed else 0
                cell.vm_reloads += 0 if failed else int(value)
                self._local(run, now, 0, 0, int(value) if failed else 0)
            elif self._custom_allowed(run.filter, name):
                metric = f"{kind}:{name.removeprefix(_CUSTOM_PREFIX)}"
                if kind == "counter":
                    cell.custom[metric] = cell.custom.get(metric, 0.0) + value
                else:
                    cell.custom[metric] = max(cell.custom.get(metric, value), value)

    def _delta(self, node_id: str, name: str, value: float, *, baseline: bool) -> float | None:
        known = self._counters.get(node_id)
        if known is None:
            if len(self._counters) >= self.limits.max_tracked_nodes:
                self._evict_node()
            known = self._counters[node_id] = {}
        last = known.get(name)
        if last is None and len(known) >= _MAX_COUNTERS_PER_NODE:
            self.dropped["counters"] += 1
            return None
        known[name] = value
        if baseline:
            return None
        if last is None:
            return value
        return value - last if value >= last else value

    def _evict_node(self) -> None:
        oldest = next(iter(self._node_seen), None) or next(iter(self._counters))
        self._forget_node(oldest)
        self.dropped["nodes"] += 1

    def _forget_node(self, node_id: str) -> None:
        self._counters.pop(node_id, None)
        self._node_seen.pop(node_id, None)

    def _forget_idle(self, now: float) -> None:
        """Forget nodes and filters that have not reported for `idle_seconds`."""
        idle = now - self.limits.idle_seconds
        while self._node_seen:
            node_id, seen = next(iter(self._node_seen.items()))
            if seen >= idle:
                break
            self._forget_node(node_id)
        for name in [n for n, seen in self._filter_seen.items() if seen < idle]:
            del self._filter_seen[name]
            self._revisions.pop(name, None)
            self._custom.pop(name, None)

    def _custom_allowed(self, filter_name: str, name: str) -> bool:
        names = self._custom.setdefault(filter_name, set())
        if name in names:
            return True
        if len(names) >= self.limits.max_custom_metrics:
            self.dropped["custom_metrics"] += 1
            return False
        names.add(name)
        return True

    # -- cells -----------------------------------------------------------------------

    def _bucket(self, at: float, now: float) -> int | None:
        """The bucket start for a record made at `at` (future times count as now);
        None (counted) when the bucket is closed."""
        if not math.isfinite(at) or at > now:
            at = now
        if at < now - self.limits.open_seconds:
            self.dropped["late"] += 1
            return None
        step = self.limits.bucket_seconds
        return int(at // step) * step

    def _cell(self, run: FilterRun, start: int, records: int = 1) -> _Cell | None:
        """The cell of `run` in the bucket at `start`; None when the filter or the
        revision is beyond the limits (`records` are counted as dropped)."""
        revisions = self._revisions.get(run.filter)
        if revisions is None:
            if len(self._revisions) >= self.limits.max_filters:
                self.dropped["filters"] += records
                return None
            revisions = self._revisions[run.filter] = set()
        self._filter_seen[run.filter] = start
        if run.revision not in revisions:
            if len(revisions) >= self.limits.max_revisions:
                oldest = min(revisions)
                if run.revision < oldest:
                    self.dropped["revisions"] += records
                    return None
                revisions.discard(oldest)
                self.dropped["revisions"] += 1
            revisions.add(run.revision)
        cells = self._cells.setdefault(start, {})
        key = (run.filter, run.revision, run.canary)
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = _Cell(run.version)
        elif run.version and cell.version != run.version:
            cell.version = run.version
        return cell

    def _see(self, cell: _Cell, node_id: str) -> None:
        if node_id in cell.nodes:
            return
        if len(cell.nodes) >= self.limits.max_nodes_per_cell:
            self.dropped["nodes"] += 1
            return
        cell.nodes.add(node_id)
        cell.dirty = True

    def _local(self, run: FilterRun, now: float, requests: int, errors: int, failures: int) -> None:
        if run.revision not in self._revisions.get(run.filter, ()):
            return
        t = self.local_totals.get((run.filter, run.revision))
        if t is None:
            t = self.local_totals[(run.filter, run.revision)] = [0, 0, 0, now]
        t[0] += requests
        t[1] += errors
        t[2] += failures
        t[3] = now

    def local_cells(self, since: float) -> Iterable[tuple[Key, int, _Cell]]:
        """This replica's in-memory cells whose bucket starts at or after `since`."""
        for start, cells in self._cells.items():
            if start >= since:
                for key, cell in cells.items():
                    yield key, start, cell

    # -- sharing ---------------------------------------------------------------------

    async def flush(self) -> int:
        """Upsert the cells that changed since the last flush; forget closed buckets
        and idle state. Returns the number of rows written. On a store error the cells
        stay dirty (the next flush retries) and the error propagates."""
        now = self.clock()
        written: list[_Cell] = []
        rows = []
        for start, cells in self._cells.items():
            for key, cell in cells.items():
                if cell.dirty:
                    rows.append(cell.row(self.replica_id, key, start))
                    cell.dirty = False
                    written.append(cell)
        try:
            await self.store.upsert_health(rows, now=now)
        except BaseException:
            for cell in written:
                cell.dirty = True
            raise
        horizon = now - self.limits.open_seconds - self.limits.bucket_seconds
        for start in [s for s, cells in self._cells.items() if s < horizon
                      and not any(c.dirty for c in cells.values())]:
            del self._cells[start]
        idle = now - self.limits.retention
        for k in [k for k, t in self.local_totals.items() if t[3] < idle]:
            del self.local_totals[k]
        self._forget_idle(now)
        return len(rows)

    async def run(self, flush_interval: float = 2.0, prune_every: float = 60.0) -> None:
        """Flush every `flush_interval` seconds and prune the store's rows older than
        the retention every `prune_every` seconds, until cancelled (store errors are
        logged and retried)."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(flush_interval)
            try:
                await self.flush()
                if self.clock() - last_prune >= prune_every:
                    last_prune = self.clock()
                    await self.store.prune_health(last_prune - self.limits.retention - self.limits.bucket_seconds)
            except Exception as exc:  # the database may be away for a while
                log.warning("health_flush_failed", error=str(exc), replica=self.replica_id)

    async def close(self) -> None:
        """Flush what is left (errors are logged); the windows leave the process's
        Prometheus series."""
        with contextlib.suppress(Exception):
            await self.flush()
        FILTER_METRICS.untrack(self)

    # -- reads -----------------------------------------------------------------------

    async def rows(self, filter_name: str | None, *, since: float, until: float) -> list[HealthRow]:
        """Every replica's rows in [since, until), this replica's from memory where it
        has cells there (fresher than the store)."""
        step = self.limits.bucket_seconds
        lo = int(since // step) * step
        stored = await self.store.health_rows(filter_name, since=lo, until=until)
        local = {}
        for key, start, cell in self.local_cells(lo):
            if start < until and (filter_name is None or key[0] == filter_name):
                row = cell.row(self.replica_id, key, start)
                local[row.key] = row
        return [r for r in stored if r.key not in local] + list(local.values())

    async def totals(self, filter_name: str, *, revision: int | None = None, canary: bool | None = None,
                     since: float, until: float | None = None) -> HealthTotals:
        """Fleet-wide numbers of `filter_name` over the buckets that start in
        [since, until) (until: now), for one revision or all (None), the canary side,
        the rest, or both (None). Buckets are `bucket_seconds` wide, so `since` is
        rounded down to a bucket start; the bucket still filling is included."""
        until = self.clock() + 1 if until is None else until
        rows = [r for r in await self.rows(filter_name, since=since, until=until)
                if (revision is None or r.revision == revision) and (canary is None or r.canary == canary)]
        return merge_rows(rows)

    async def failing(self, filter_name: str, revision: int, *, since: float | None = None) -> bool:
        """Is the revision failing at run time: did any proxy running it report a wasm
        VM failure (`HealthTotals.failing`) since `since` (default: the last minute)?"""
        since = self.clock() - _FAILING_SECONDS if since is None else since
        return (await self.totals(filter_name, revision=revision, since=since)).failing

    async def report(self, filter_name: str, *, window: float = 300.0) -> list[RevisionHealth]:
        """Per revision and canary side, over the last `window` seconds: totals and a
        zero-filled per-bucket series. Newest revision first."""
        now = self.clock()
        step = self.limits.bucket_seconds
        first = int((now - window) // step) * step + step
        rows = await self.rows(filter_name, since=first, until=now + 1)
        groups: dict[tuple[int, bool], list[HealthRow]] = {}
        for r in rows:
            groups.setdefault((r.revision, r.canary), []).append(r)
        out = []
        for (revision, canary), group in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
            by_start: dict[int, list[HealthRow]] = {}
            for r in group:
                by_start.setdefault(r.bucket_start, []).append(r)
            series = []
            for start in range(first, int(now // step) * step + 1, step):
                t = merge_rows(by_start.get(start, []))
                series.append({"t": start, "requests": t.requests, "errors_5xx": t.errors_5xx,
                               "vm_failures": t.vm_failures})
            versions = sorted({r.version for r in group if r.version})
            recent = merge_rows([r for r in group if r.bucket_start >= now - _FAILING_SECONDS])
            out.append(RevisionHealth(revision=revision, canary=canary, version=",".join(versions),
                                      totals=merge_rows(group), series=series, failing=recent.failing))
        return out


def merge_rows(rows: Sequence[HealthRow]) -> HealthTotals:
    """Merge rows of any replicas, buckets and revisions into totals (see `HealthTotals`)."""
    latency = LatencyHistogram()
    proxies: dict[int, int] = {}
    requests = errors = failures = reloads = 0
    counters: dict[str, float] = {}
    gauges: dict[str, tuple[int, float]] = {}
    for r in rows:
        requests += r.requests
        errors += r.errors_5xx
        failures += r.vm_failures
        reloads += r.vm_reloads
        latency.merge(r.latency)
        proxies[r.bucket_start] = proxies.get(r.bucket_start, 0) + r.proxies
        for metric, v in r.custom.items():
            kind, _, name = metric.partition(":")
            if kind == "counter":
                counters[name] = counters.get(name, 0.0) + v
            else:
                at, top = gauges.get(name, (r.bucket_start, v))
                if r.bucket_start >= at:
                    gauges[name] = (r.bucket_start, v if r.bucket_start > at else max(top, v))
    custom = {**counters, **{n: v for n, (_, v) in gauges.items()}}
    return HealthTotals(
        requests=requests, errors_5xx=errors, error_rate=errors / requests if requests else 0.0,
        vm_failures=failures, vm_reloads=reloads, proxies=max(proxies.values(), default=0),
        p50=latency.quantile(0.5), p99=latency.quantile(0.99), custom_metrics=dict(sorted(custom.items())),
    )
