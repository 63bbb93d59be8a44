"""Health windows: buckets, counter deltas, percentiles, caps, and the merge of several
replicas' rows through a real state store (SQLite file; PostgreSQL from the fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.envoy import wait_for
from xds_server.state import HealthRow, SqliteStateStore, StateStore, open_state_store
from xds_server.telemetry import (
    WASM_FAIL_DETAILS,
    FilterRun,
    HealthLimits,
    HealthWindows,
    LatencyHistogram,
    RequestRecord,
    StatRecord,
)

T0 = 1_800_000_000.0  # a bucket boundary (divisible by 10)
V1 = FilterRun("hdr", 1, "v-one")
V2 = FilterRun("hdr", 2, "v-two", canary=True)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def req(node: str, at: float, status: int = 200, ms: float = 5.0, details: str = "via_upstream",
        runs: tuple[FilterRun, ...] = (V1,)) -> RequestRecord:
    return RequestRecord(node_id=node, cluster="c", time=at, duration_ms=ms, status=status,
                         details=details, runs=runs)


def stat(node: str, at: float, name: str, value: float, kind: str = "counter",
         runs: tuple[FilterRun, ...] = (V1,)) -> StatRecord:
    return StatRecord(node_id=node, cluster="c", time=at, name=name, value=value, kind=kind, runs=runs)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = SqliteStateStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.close()


# -- histogram --------------------------------------------------------------------------


def test_percentiles_from_histogram_are_within_a_bucket() -> None:
    values = [random.Random(7).uniform(1, 1000) for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    exact = sorted(values)
    for q in (0.5, 0.9, 0.99):
        got = h.quantile(q)
        want = exact[int(q * len(exact)) - 1]
        assert got is not None and abs(got - want) / want < 0.1, (q, got, want)
    # Merging halves gives the same quantiles as the whole.
    a, b = LatencyHistogram(), LatencyHistogram()
    for i, v in enumerate(values):
        (a if i % 2 else b).add(v)
    a.merge(b.counts)
    assert a.counts == h.counts and a.quantile(0.99) == h.quantile(0.99)
    assert LatencyHistogram().quantile(0.5) is None
    # Round trip through the JSON form; out-of-range indexes are clamped.
    assert LatencyHistogram.from_items(h.to_dict().items()).counts == h.counts
    assert LatencyHistogram({-3: 1, 10_000: 1}).counts == {0: 1, 79: 1}


# -- buckets ----------------------------------------------------------------------------


async def test_buckets_rotate_and_late_records_are_dropped(store: StateStore) -> None:
    clock = Clock(T0 + 35)
    w = HealthWindows(store, replica_id="r1", clock=clock)
    w.on_requests([req("n1", T0 + 1), req("n1", T0 + 12, status=503), req("n2", T0 + 25),
                   req("n2", T0 + 34, ms=100)])
    assert sorted(start for _, start, _ in w.local_cells(0)) == [T0, T0 + 10, T0 + 20, T0 + 30]
    assert await w.flush() == 4
    assert await w.flush() == 0  # nothing changed
    report = await w.report("hdr", window=60)
    (entry,) = report
    assert entry.revision == 1 and entry.version == "v-one" and not entry.canary
    assert [p["requests"] for p in entry.series][-4:] == [1, 1, 1, 1]
    assert [p["errors_5xx"] for p in entry.series][-4:] == [0, 1, 0, 0]
    assert entry.series[-1]["t"] == T0 + 30 and len(entry.series) == 6
    assert entry.totals.requests == 4 and entry.totals.errors_5xx == 1 and entry.totals.error_rate == 0.25

    # Two minutes later: closed buckets leave memory (they are in the store) ...
    clock.now = T0 + 160
    await w.flush()
    assert list(w.local_cells(0)) == []
    assert (await w.totals("hdr", since=T0, until=T0 + 40)).requests == 4
    # ... and a record for them is dropped, counted.
    w.on_requests([req("n1", T0 + 5)])
    assert w.dropped["late"] == 1
    # Only the window asked for is summed; the window's series is zero-filled.
    assert (await w.totals("hdr", since=T0 + 10, until=T0 + 30)).requests == 2
    (entry,) = await w.report("hdr", window=3600)
    assert len(entry.series) == 360 and sum(p["requests"] for p in entry.series) == 4
    # Pruning removes old buckets from the store.
    await store.prune_health(T0 + 20)
    assert (await w.totals("hdr", since=T0, until=T0 + 40)).requests == 2


async def test_counters_become_deltas_with_resets(store: StateStore) -> None:
    clock = Clock(T0 + 1)
    w = HealthWindows(store, replica_id="r1", clock=clock)
    # First batch of a node: the baseline (what it counted before we knew it).
    w.on_stats([stat("n1", T0, "wasmcustom.hits", 5), stat("n1", T0, "wasm.hdr.vm_reload_success", 0)])
    w.on_stats([stat("n1", T0 + 1, "wasmcustom.hits", 8),  # +3
                stat("n1", T0 + 1, "wasmcustom.new_one", 4),  # new from a known node: +4
                stat("n1", T0 + 1, "wasmcustom.level", 7, kind="gauge")])
    clock.now = T0 + 12
    w.on_stats([stat("n1", T0 + 12, "wasmcustom.hits", 2),  # reset (Envoy restarted): +2
                stat("n1", T0 + 12, "wasm.hdr.vm_reload_success", 1),
                stat("n1", T0 + 12, "wasm.other.vm_reload_failure", 9),  # another filter's
                stat("n1", T0 + 12, "cluster.x.upstream_rq_total", 1000)])  # not ours
    w.on_stats([stat("n1", T0 + 12, "wasmcustom.sent", 6, kind="delta")])  # a sink reporting deltas
    t = await w.totals("hdr", since=T0)
    assert t.custom_metrics == {"hits": 5.0, "level": 7.0, "new_one": 4.0, "sent": 6.0}
    assert t.vm_reloads == 1 and t.vm_failures == 0 and t.failing
    assert t.proxies == 1 and t.requests == 0
    assert not (await w.totals("hdr", since=T0, until=T0 + 10)).failing


async def test_failing_rule_and_canary_sides(store: StateStore) -> None:
    clock = Clock(T0 + 5)
    w = HealthWindows(store, replica_id="r1", clock=clock)
    w.on_requests([req("base", T0 + 1) for _ in range(10)])
    w.on_requests([req("can", T0 + 1, status=503, details=WASM_FAIL_DETAILS, runs=(V2,)),
                   req("can", T0 + 2, runs=(V2,))])
    assert not await w.failing("hdr", 1)
    assert await w.failing("hdr", 2)
    canary = await w.totals("hdr", canary=True, since=T0)
    rest = await w.totals("hdr", canary=False, since=T0)
    assert (canary.requests, canary.errors_5xx, canary.vm_failures, canary.error_rate) == (2, 1, 1, 0.5)
    assert (rest.requests, rest.errors_5xx, rest.vm_failures) == (10, 0, 0)
    both = await w.totals("hdr", since=T0)
    assert both.requests == 12 and both.proxies == 2
    entries = [e.to_dict() for e in await w.report("hdr")]
    assert [(e["revision"], e["canary"], e["failing"]) for e in entries] == [(2, True, True), (1, False, False)]
    assert set(entries[0]) >= {"revision", "version", "proxies", "requests", "errors_5xx", "error_rate",
                               "latency_ms", "vm_failures", "canary", "custom_metrics", "failing", "series"}


async def test_cardinality_is_capped(store: StateStore) -> None:
    limits = HealthLimits(max_filters=2, max_revisions=2, max_custom_metrics=2, max_nodes_per_cell=3)
    w = HealthWindows(store, replica_id="r1", limits=limits, clock=Clock(T0 + 1))
    for rev in (1, 2, 3):
        w.on_requests([req("n", T0, runs=(FilterRun("hdr", rev, f"v{rev}"),))])
    w.on_requests([req("n", T0, runs=(FilterRun("hdr", 1, "v1"),))])  # older than every kept one
    assert {k[1] for k, _, _ in w.local_cells(0) if k[0] == "hdr"} >= {2, 3}
    assert w.dropped["revisions"] == 2  # revision 1 evicted for 3, then refused
    for name in ("f2", "f3"):
        w.on_requests([req("n", T0, runs=(FilterRun(name, 1, "v"),))])
    assert w.dropped["filters"] == 1
    v3 = (FilterRun("hdr", 3, "v3"),)
    w.on_stats([stat("n", T0, "wasmcustom.a", 1, runs=v3)])
    w.on_stats([stat("n", T0, f"wasmcustom.m{i}", 1, runs=v3) for i in range(5)])
    assert w.dropped["custom_metrics"] == 3
    w.on_requests([req(f"n{i}", T0, runs=v3) for i in range(10)])
    assert (await w.totals("hdr", revision=3, since=T0)).proxies == 3
    assert w.dropped["nodes"] == 8


async def test_idle_nodes_and_filters_are_forgotten(store: StateStore) -> None:
    clock = Clock(T0)
    w = HealthWindows(store, replica_id="r1", limits=HealthLimits(max_tracked_nodes=2, max_filters=1), clock=clock)
    for node in ("a", "b", "c"):  # a third node evicts the least recently reporting one
        w.on_stats([stat(node, T0, "wasmcustom.hits", 1)])
    assert w.dropped["nodes"] == 1
    w.on_stats([stat("a", T0, "wasmcustom.hits", 5)])  # "a" was forgotten: a baseline again
    assert (await w.totals("hdr", since=T0)).custom_metrics == {}
    w.on_requests([req("n", T0, runs=(FilterRun("other", 1, "v"),))])
    assert w.dropped["filters"] == 1  # "hdr" holds the only filter slot
    clock.now = T0 + 1000  # everything idle for longer than idle_seconds
    await w.flush()
    w.on_requests([req("n", T0 + 1000, runs=(FilterRun("other", 1, "v"),))])
    assert w.dropped["filters"] == 1
    assert (await w.totals("other", since=T0 + 990)).requests == 1


# -- replicas ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("fresh_database"))


async def test_replicas_merge_through_the_store(tmp_path: Path, database: str) -> None:
    stores = [open_state_store(database, data_dir=tmp_path) for _ in range(2)]
    for s in stores:
        await s.open()
    try:
        clock = Clock(T0 + 15)
        r1 = HealthWindows(stores[0], replica_id="r1", clock=clock)
        r2 = HealthWindows(stores[1], replica_id="r2", clock=clock)
        r1.on_requests([req("a", T0 + 1, ms=1) for _ in range(98)] + [req("a", T0 + 11, status=500, ms=1)])
        r2.on_requests([req("b", T0 + 2, ms=1000), req("b", T0 + 3, ms=1000)])
        r1.on_stats([stat("a", T0, "wasmcustom.hits", 1)])
        r1.on_stats([stat("a", T0 + 1, "wasmcustom.hits", 3)])
        r2.on_stats([stat("b", T0, "wasmcustom.hits", 10)])
        r2.on_stats([stat("b", T0 + 1, "wasmcustom.hits", 15)])
        await r2.flush()
        # r1 has not flushed: it reads its own cells from memory, r2's from the store.
        t = await r1.totals("hdr", since=T0)
        assert (t.requests, t.errors_5xx, t.proxies) == (101, 1, 2)
        assert t.custom_metrics == {"hits": 7.0}
        assert t.p50 is not None and t.p50 < 2 and t.p99 is not None and 900 < t.p99 < 1100
        # r2 sees r1 only after r1 flushed.
        assert (await r2.totals("hdr", since=T0)).requests == 2
        await r1.flush()
        t2 = await r2.totals("hdr", since=T0)
        assert (t2.requests, t2.errors_5xx, t2.proxies, t2.p99) == (101, 1, 2, t.p99)
        # Flushing again replaces this replica's rows, never adds to them.
        r1.on_requests([req("a", T0 + 12)])
        await r1.flush()
        assert (await r2.totals("hdr", since=T0)).requests == 102
    finally:
        for s in stores:
            await s.close()


async def test_run_flushes_and_prunes_until_cancelled(store: StateStore) -> None:
    clock = Clock(T0 + 5)
    w = HealthWindows(store, replica_id="r1", clock=clock)
    await store.upsert_health([HealthRow(replica_id="old", filter="hdr", revision=1, canary=False,
                                         bucket_start=int(T0) - 7200, requests=5)], now=T0)
    task = asyncio.create_task(w.run(flush_interval=0.02, prune_every=0.0))
    try:
        w.on_requests([req("n1", T0 + 1)])

        async def flushed() -> bool:
            rows = await store.health_rows("hdr", since=0, until=T0 + 3600)
            return [r.replica_id for r in rows] == ["r1"]  # ours written, the stale one pruned

        await wait_for(flushed, 10, what="the flush loop writes and prunes")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _cells(w: HealthWindows) -> dict[tuple[tuple[str, int, bool], int], tuple[object, ...]]:
    return {(key, start): (cell.version, sorted(cell.nodes), cell.requests, cell.errors_5xx,
                           cell.vm_failures, cell.vm_reloads, dict(cell.latency.counts))
            for key, start, cell in w.local_cells(0)}


@pytest.mark.parametrize("shape", ["one_group", "buckets", "runs", "late_and_odd_times", "many_durations"])
async def test_a_batch_counts_as_its_records_one_at_a_time(store: StateStore, shape: str) -> None:
    """Batches are summed per (bucket, runs) group, by columns when the whole batch is
    one group: the cells, totals and drops are those of the records one by one."""
    rnd = random.Random(shape)
    both = (V1, FilterRun("other", 3, "v-three"))
    records = []
    for i in range(200):
        at = T0 + 30 + rnd.random() * 9  # one bucket
        runs: tuple[FilterRun, ...] = both
        if shape == "buckets":
            at = T0 + rnd.random() * 39
        elif shape == "runs":
            runs = (V1,) if i % 3 else (V2,)
        elif shape == "late_and_odd_times":
            at = rnd.choice([at, T0 - 100, float("nan"), float("inf"), T0 + 1000])
        ms = float(rnd.choice([1, 2, 2, 3, 40])) if shape != "many_durations" else rnd.random() * 500
        records.append(req(f"n{i % 7}", at, status=rnd.choice([200, 200, 503, 404, 599]), ms=ms,
                           details=rnd.choice(["via_upstream", WASM_FAIL_DETAILS]), runs=runs))
    batched = HealthWindows(store, replica_id="a", clock=Clock(T0 + 39.5))
    single = HealthWindows(store, replica_id="b", clock=Clock(T0 + 39.5))
    batched.on_requests(records)
    for r in records:
        single.on_requests([r])
    assert _cells(batched) == _cells(single) and _cells(batched)
    assert batched.dropped == single.dropped
    assert batched.local_totals.keys() == single.local_totals.keys()
    for key, totals in batched.local_totals.items():
        assert totals[:3] == single.local_totals[key][:3]
