"""Fleet queries over real xDS streams: `GET /api/v1/proxies` filters and pages in natural
node order, `GET /api/v1/summary` counts versions by state and cluster and groups NACKs by
message, the gRPC admin API says the same, and the event feed for the status page
coalesces proxy changes per proxy at a bounded rate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from tests.fixtures.fleet import simulated_fleet, wait_until
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.test_admin_grpc import admin_stub
from tests.test_status_page import SseReader
from xds_server.admin._fleet_feed import DEFAULT_INTERVAL
from xds_server.admin.v1 import admin_pb2
from xds_server.proxy_index import natural_key
from xds_server.runtime import XdsServerApp

N = 120
NACKERS = [7, 8, 9, 10, 11, 55, 70, 71, 100, 119]
MESSAGE = "Unable to create Wasm plugin hdr"


def test_natural_key_orders_digit_runs_by_value() -> None:
    ids = ["fleet-10", "fleet-2", "fleet-1", "edge-3a", "fleet-10a", "edge-3", "fleet-02", "fleet"]
    assert sorted(ids, key=natural_key) == [
        "edge-3", "edge-3a", "fleet", "fleet-1", "fleet-2", "fleet-02", "fleet-10", "fleet-10a"]


async def _get(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as r:
        body = await r.json()
        assert r.status == status, body
        return body


async def _deploy(http: aiohttp.ClientSession, base: str, path: Path) -> str:
    async with http.put(f"{base}/api/v1/filters/hdr", json={"source": {"file": str(path)}}) as r:
        body = await r.json()
        assert r.status in (200, 201), body
        version: str = body["specs"][0]["version"]
        return version


def _acked(app: XdsServerApp, version: str) -> int:
    return sum(1 for p in app.status.local.values()
               if (r := p.resources.get("hdr")) is not None and r.acked == version and p.connected)


async def _pages(http: aiohttp.ClientSession, base: str, query: str) -> list[dict[str, Any]]:
    pages, cursor = [], ""
    while True:
        page = await _get(http, f"{base}/api/v1/proxies?{query}&cursor={cursor}")
        pages.append(page)
        if not page["next_cursor"]:
            return pages
        cursor = page["next_cursor"]


async def test_proxy_queries_summary_and_grpc_agree(tmp_path: Path) -> None:
    (tmp_path / "a.wasm").write_bytes(header_filter("x-wasm-filter", "A"))
    (tmp_path / "b.wasm").write_bytes(header_filter("x-wasm-filter", "B"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(tmp_path / "a.wasm")}}])
    async with running_server(cfg) as app, aiohttp.ClientSession() as http, \
            simulated_fleet(f"127.0.0.1:{app.xds_port}", N, ["hdr"], clusters=3) as fleet:
        base = f"http://127.0.0.1:{app.admin_port}"
        version_a = app.controller.filters["hdr"].versions[0]
        await wait_until(lambda: _acked(app, version_a) == N, 120, "the fleet ACKs A")

        # Pages follow natural order, cover everyone once, and say how many match.
        pages = await _pages(http, base, "limit=50")
        assert [len(p["proxies"]) for p in pages] == [50, 50, 20]
        assert {p["total"] for p in pages} == {N}
        ids = [x["node_id"] for p in pages for x in p["proxies"]]
        assert ids == [f"fleet-{i}" for i in range(N)]
        assert pages[0]["next_cursor"] == "fleet-49"
        everyone = await _get(http, f"{base}/api/v1/proxies")  # the old form: every proxy
        assert [x["node_id"] for x in everyone["proxies"]] == ids and everyone["next_cursor"] is None

        async def nodes(query: str) -> tuple[list[str], int]:
            page = await _get(http, f"{base}/api/v1/proxies?{query}")
            return [x["node_id"] for x in page["proxies"]], page["total"]

        assert await nodes("node=fleet-1%3F") == ([f"fleet-{i}" for i in range(10, 20)], 10)
        assert (await nodes("node=fleet-7"))[1] == 1 + 10  # no wildcard: ids containing it
        assert (await nodes("cluster=c1"))[1] == N // 3
        assert await nodes("state=NACKED") == ([], 0)
        for bad in ("state=BROKEN", "limit=0", "limit=x", "limit=10001"):
            body = await _get(http, f"{base}/api/v1/proxies?{bad}", status=400)
            assert body["error"]["status"] == 400

        # A new version that ten proxies refuse with one message.
        await fleet.nack(NACKERS, MESSAGE)
        version_b = await _deploy(http, base, tmp_path / "b.wasm")
        await wait_until(lambda: _acked(app, version_b) == N - len(NACKERS)
                         and app.status.counts("hdr")["nacked"] == len(NACKERS), 120, "B rolled out")

        summary = await _get(http, f"{base}/api/v1/summary")
        [hdr] = summary["filters"]
        assert (hdr["name"], hdr["attention"], hdr["current_versions"]) == ("hdr", True, [version_b])
        assert hdr["totals"] | {"connected": N} == {"ACKED": N - 10, "NACKED": 10, "STALE": 0, "REQUESTED": 0,
                                                    "connected": N, "disconnected": 0}
        [row_b, row_a] = hdr["versions"]
        assert (row_b["version"], row_b["current"], row_b["ACKED"], row_b["NACKED"], row_b["running"]) == \
            (version_b, True, N - 10, 10, N - 10)
        assert (row_a["version"], row_a["running"]) == (version_a, 10)  # the NACKers keep A
        assert sum(c["NACKED"] for c in row_b["clusters"].values()) == 10
        assert row_b["clusters"]["c1"]["NACKED"] == sum(1 for i in NACKERS if i % 3 == 1)
        assert hdr["nacks"] == [{"message": MESSAGE, "count": 10, "versions": [version_b],
                                 "nodes": ["fleet-7", "fleet-8", "fleet-9", "fleet-10", "fleet-11"]}]
        assert hdr["health"] == []  # no telemetry configured
        assert summary["proxies"] == {"known": N, "connected": N}

        nacked, total = await nodes("filter=hdr&state=NACKED")
        assert (nacked, total) == ([f"fleet-{i}" for i in NACKERS], 10)
        assert (await nodes(f"state=ACKED&version={version_b}"))[1] == N - 10
        assert (await nodes(f"version={version_a}"))[1] == 10

        # The gRPC admin API answers from the same service: the same page, the same summary.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
            api = admin_stub(channel)
            answer = await api.GetProxyStatus(admin_pb2.GetProxyStatusRequest(
                filter="hdr", state=admin_pb2.RESOURCE_STATE_NACKED, limit=4))
            assert [p.node_id for p in answer.proxies] == ["fleet-7", "fleet-8", "fleet-9", "fleet-10"]
            assert (answer.total, answer.next_cursor) == (10, "fleet-10")
            http_page = await _get(http, f"{base}/api/v1/proxies?filter=hdr&state=NACKED&limit=4")
            assert [p.seq for p in answer.proxies] == [p["seq"] for p in http_page["proxies"]]
            rest = await api.GetProxyStatus(admin_pb2.GetProxyStatusRequest(
                filter="hdr", state=admin_pb2.RESOURCE_STATE_NACKED, cursor=answer.next_cursor))
            assert [p.node_id for p in rest.proxies] == [f"fleet-{i}" for i in NACKERS[4:]]
            assert rest.next_cursor == ""
            got = await api.GetSummary(admin_pb2.GetSummaryRequest())
            [g] = got.filters
            assert (g.name, g.attention, g.totals.acked, g.totals.nacked, g.connected) == ("hdr", True, N - 10, 10, N)
            assert [(n.message, n.count, list(n.nodes)) for n in g.nacks] == [
                (MESSAGE, 10, hdr["nacks"][0]["nodes"])]
            assert [(v.version, v.running, v.states.acked, v.states.nacked) for v in g.versions] == [
                (r["version"], r["running"], r["ACKED"], r["NACKED"]) for r in hdr["versions"]]
            assert g.versions[0].clusters["c1"].nacked == row_b["clusters"]["c1"]["NACKED"]
            try:
                await api.GetProxyStatus(admin_pb2.GetProxyStatusRequest(limit=20_000))
                raise AssertionError("limit out of range accepted")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert await fleet.errors() == 0


async def test_fleet_feed_coalesces_per_proxy_at_a_bounded_rate(tmp_path: Path) -> None:
    (tmp_path / "a.wasm").write_bytes(header_filter("x-wasm-filter", "A"))
    (tmp_path / "b.wasm").write_bytes(header_filter("x-wasm-filter", "B"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(tmp_path / "a.wasm")}}])
    async with running_server(cfg) as app, aiohttp.ClientSession() as http, \
            simulated_fleet(f"127.0.0.1:{app.xds_port}", N, ["hdr"]):
        base = f"http://127.0.0.1:{app.admin_port}"
        version_a = app.controller.filters["hdr"].versions[0]
        await wait_until(lambda: _acked(app, version_a) == N, 120, "the fleet ACKs A")
        async with http.get(f"{base}/api/v1/events?feed=fleet") as response:
            sse = SseReader(response)
            assert (await sse.event())["kind"] == "hello"
            t0 = time.monotonic()
            version_b = await _deploy(http, base, tmp_path / "b.wasm")
            ticks: list[dict[str, Any]] = []
            last_seq: dict[str, int] = {}
            while True:
                ev = await sse.event(timeout=60)
                if ev["source"] == "filter":
                    continue
                assert ev["source"] == "fleet" and ev["kind"] == "tick", ev
                ticks.append(ev)
                changed = [c[0] for c in ev["changes"]]
                assert len(changed) == len(set(changed)), "a proxy twice in one tick"
                for node, seq, *_ in ev["changes"]:
                    assert seq > last_seq.get(node, 0)
                    last_seq[node] = seq
                [hdr] = ev["summary"]["filters"]
                row = next(r for r in hdr["versions"] if r["version"] == version_b)
                if row["ACKED"] == N:
                    break
            elapsed = time.monotonic() - t0
        # Every proxy's change arrived, as it is now; far fewer messages than changes.
        assert set(last_seq) == {f"fleet-{i}" for i in range(N)}
        final = {c[0]: c for t in ticks for c in t["changes"]}
        assert all(c[2:] == [True, {"hdr": ["ACKED", version_b]}] for c in final.values()), json.dumps(
            list(final.values())[:3])
        assert len(ticks) <= elapsed / DEFAULT_INTERVAL + 2, (len(ticks), elapsed)
        assert len(ticks) < 2 * N  # each proxy sent, then ACKed: 240 status changes
        # Nobody listens any more: the feed stops.
        await wait_until(lambda: not app.admin.fleet_feed.listening, 10, "feed stopped")
