"""The health surfaces of a real server: HTTP, gRPC admin API, `xds-server health`, and
Prometheus, over records handed to its health windows as the receivers hand them."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc
from xds_server.telemetry import WASM_FAIL_DETAILS, FilterRun, RequestRecord, StatRecord

CONTRACT = {"revision", "version", "proxies", "requests", "errors_5xx", "error_rate", "latency_ms",
            "vm_failures", "canary", "custom_metrics", "failing", "series"}


def traffic(now: float, version: str) -> tuple[list[RequestRecord], list[StatRecord]]:
    base, canary = FilterRun("hdr", 1, version), FilterRun("hdr", 2, "v-canary", canary=True)
    reqs = [RequestRecord(node_id="base-1", cluster="c", time=now - 1, duration_ms=2.0, status=200,
                          details="via_upstream", runs=(base,)) for _ in range(9)]
    reqs += [RequestRecord(node_id="canary-1", cluster="c", time=now - 1, duration_ms=1.0, status=503,
                           details=WASM_FAIL_DETAILS, runs=(canary,)) for _ in range(3)]
    stats = [StatRecord(node_id="base-1", cluster="c", time=now - 1, name="wasmcustom.hits", value=v,
                        kind="counter", runs=(base,)) for v in (10, 14)]
    return reqs, stats


async def cli(*args: str) -> str:
    """Run `xds-server ARGS` (this tree's) and return its stdout; it must exit 0."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "xds_server", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


async def test_health_over_http_grpc_cli_and_metrics(tmp_path: Path) -> None:
    module = tmp_path / "hdr.wasm"
    module.write_bytes(header_filter())
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(module)}}])
    async with running_server(cfg) as app:
        api = f"http://127.0.0.1:{app.admin_port}/api/v1/filters"
        status, empty = await get(f"{api}/hdr/health")
        assert status == 200 and empty["revisions"] == [] and empty["current_revision"] == 1
        server = f"http://127.0.0.1:{app.admin_port}"
        assert "no telemetry in the last 300s" in await cli("health", "hdr", "--server", server)
        version = app.controller.filters["hdr"].deployed[0].resource.version
        reqs, stats = traffic(time.time(), version)
        app.health.on_requests(reqs)
        app.health.on_stats(stats[:1])
        app.health.on_stats(stats[1:])

        status, doc = await get(f"{api}/hdr/health?window=60")
        assert status == 200 and doc["window"] == 60 and doc["bucket_seconds"] == 10
        canary, base = doc["revisions"]
        assert set(base) >= CONTRACT
        assert (base["revision"], base["version"], base["canary"], base["failing"]) == (1, version, False, False)
        assert (base["requests"], base["errors_5xx"], base["proxies"], base["vm_failures"]) == (9, 0, 1, 0)
        assert base["custom_metrics"] == {"hits": 4.0}
        assert 1.5 < base["latency_ms"]["p50"] < 2.5
        assert (canary["revision"], canary["canary"], canary["failing"]) == (2, True, True)
        assert (canary["errors_5xx"], canary["vm_failures"], canary["error_rate"]) == (3, 3, 1.0)
        assert len(canary["series"]) == 6 and canary["series"][-1]["requests"] + canary["series"][-2]["requests"] == 3

        assert (await get(f"{api}/nope/health"))[0] == 404
        status, err = await get(f"{api}/hdr/health?window=99999")
        assert status == 400 and "window" in err["error"]["message"]

        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
            stub: Any = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
            msg = await stub.GetFilterHealth(admin_pb2.GetFilterHealthRequest(name="hdr", window_seconds=60))
            assert [(r.revision, r.canary, r.failing) for r in msg.revisions] == [(2, True, True), (1, False, False)]
            assert msg.revisions[0].vm_failures == 3 and msg.revisions[1].custom_metrics["hits"] == 4.0
            assert msg.revisions[1].HasField("latency_p99_ms") and msg.current_revision == 1
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetFilterHealth(admin_pb2.GetFilterHealthRequest(name="nope"))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetFilterHealth(admin_pb2.GetFilterHealthRequest(name="hdr", window_seconds=5))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        table = await cli("health", "hdr", "--server", server)
        lines = table.splitlines()
        assert lines[0].split()[:3] == ["REVISION", "SIDE", "VERSION"]
        assert lines[1].startswith("! ") and "FAILING" in lines[1] and "canary" in lines[1]
        assert "base" in lines[2] and lines[2].rstrip().endswith("ok")
        assert "custom metrics: hits=4" in table
        doc = json.loads(await cli("health", "hdr", "--server", server, "-o", "json"))
        assert doc["revisions"][0]["vm_failures"] == 3

        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{app.admin_port}/metrics") as r:
            text = await r.text()
        assert 'xds_server_filter_requests_total{filter="hdr",revision="1"} 9.0' in text
        assert 'xds_server_filter_errors_5xx_total{filter="hdr",revision="2"} 3.0' in text
        assert 'xds_server_filter_vm_failures_total{filter="hdr",revision="2"} 3.0' in text
        assert 'xds_server_filter_latency_ms{filter="hdr",quantile="0.99",revision="1"}' in text

    # The last buckets were flushed on stop: a new server on the same data reads them.
    async with running_server(cfg) as again:
        totals = await again.health.totals("hdr", since=time.time() - 60)
        assert (totals.requests, totals.errors_5xx) == (12, 3)
