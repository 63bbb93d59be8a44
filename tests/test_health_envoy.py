"""Health per filter revision end to end: a real Envoy with the generated `--telemetry`
bootstrap, real traffic, a module with a custom metric, then one that traps on every
second request; `health` (HTTP, CLI) and the status page in Chromium show it; with
FAIL_RELOAD, Envoy's VM reload stats show too."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.fixtures import wasm_filters as wf
from tests.fixtures.envoy import EnvoyProcess, wait_for
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.test_status_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS


def counting_filter(metric: str, *, trap_every: int = 0) -> bytes:
    """An HTTP filter that counts responses in `wasmcustom.<metric>` and, with
    `trap_every=N`, executes `unreachable` on every N-th response."""
    name = metric.encode()
    metric_id = 0x100
    trap = (f"(global.set $n (i32.add (global.get $n) (i32.const 1)))\n"
            f"    (if (i32.eqz (i32.rem_u (global.get $n) (i32.const {trap_every}))) (then unreachable))"
            if trap_every else "")
    return wf.compile_wat(wf._module(
        heap=wf._align8(wf._DATA + len(name)),
        imports=[
            '(import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))',
            '(import "env" "proxy_increment_metric" (func $incr (param i32 i64) (result i32)))',
        ],
        data=[(wf._DATA, name)],
        body=f"""
  (global $n (mut i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param $context_id i32) (param $parent_id i32))
  (func (export "proxy_on_vm_start") (param $root_id i32) (param $vm_config_size i32) (result i32)
    (drop (call $define (i32.const 0) (i32.const {wf._DATA}) (i32.const {len(name)}) (i32.const {metric_id})))
    (i32.const 1))
  (func (export "proxy_on_configure") (param $root_id i32) (param $config_size i32) (result i32)
    (i32.const 1))
  (func (export "proxy_on_response_headers")
    (param $context_id i32) (param $num_headers i32) (param $end_of_stream i32) (result i32)
    (drop (call $incr (i32.load (i32.const {metric_id})) (i64.const 1)))
    {trap}
    (i32.const 0))
""",
    ))


@contextlib.asynccontextmanager
async def traffic(url: str) -> AsyncIterator[list[int]]:
    """GET `url` in a loop (about 20 per second) until the block ends; yields the statuses."""
    statuses: list[int] = []

    async def loop() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
            while True:
                try:
                    async with s.get(url) as r:
                        statuses.append(r.status)
                except (aiohttp.ClientError, TimeoutError):
                    statuses.append(0)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(loop())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def health(base: str, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/api/v1/filters/{name}/health?window=120") as r:
        assert r.status == 200
        doc: dict[str, Any] = await r.json()
        return doc


def entry(doc: dict[str, Any], revision: int) -> dict[str, Any] | None:
    return next((e for e in doc["revisions"] if e["revision"] == revision), None)


async def test_health_shows_custom_metrics_and_a_revision_failing_at_runtime(tmp_path: Path) -> None:
    good, trapping = tmp_path / "good.wasm", tmp_path / "trap.wasm"
    good.write_bytes(counting_filter("hits"))
    trapping.write_bytes(counting_filter("hits", trap_every=2))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(good)}}])
    port = free_port()
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}"
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port,
                                telemetry=True, telemetry_interval="1s")
        async with EnvoyProcess(boot, tmp_path) as envoy, traffic(f"http://127.0.0.1:{port}/") as statuses:
            await envoy.wait_live()

            # Revision 1 is healthy; its custom metric arrives through the stats sink.
            async def healthy() -> dict[str, Any] | None:
                e = entry(await health(base, "hdr"), 1)
                return e if e and e["requests"] >= 10 and e["custom_metrics"].get("hits", 0) > 0 else None

            one = await wait_for(healthy, 30, interval=0.5, what="revision 1 requests and custom metric")
            assert one["errors_5xx"] == 0 and one["vm_failures"] == 0 and not one["failing"]
            assert one["proxies"] == 1 and one["version"] == app.controller.filters["hdr"].versions[0]
            assert one["latency_ms"]["p50"] is not None

            # Revision 2 traps on every second response: Envoy ACKs it, then answers 503.
            async with http.put(f"{base}/api/v1/filters/hdr", json={"source": {"file": str(trapping)}}) as r:
                assert r.status == 200, await r.text()
            version_2 = app.controller.filters["hdr"].versions[0]
            await wait_for(lambda: app.status.proxies["e1"].resources["hdr"].acked == version_2, 20,
                           what="e1 ACKs revision 2")

            async def failing() -> dict[str, Any] | None:
                e = entry(await health(base, "hdr"), 2)
                return e if e and e["failing"] and e["errors_5xx"] >= 5 else None

            two = await wait_for(failing, 30, interval=0.5, what="revision 2 failing with 5xx")
            assert two["vm_failures"] >= 5 and two["error_rate"] > 0.4
            assert 503 in statuses
            assert not await app.health.failing("hdr", 1)
            assert await app.health.failing("hdr", 2)
            assert app.status.proxies["e1"].resources["hdr"].acked == version_2  # still ACKed

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "xds_server", "health", "hdr", "--server", base,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            rows = {line.split()[1] if line.startswith("!") else line.split()[0]: line
                    for line in out.decode().splitlines()[1:] if line.strip() and "custom" not in line}
            assert rows["2"].startswith("!") and "FAILING" in rows["2"]
            assert rows["1"].rstrip().endswith("ok")

            await _page_shows_failing_revision(base)

            # With FAIL_RELOAD Envoy reloads the VM after a failure and counts it in its
            # stats (`wasm.hdr.vm_reload_success`), which reach the health windows too.
            async with http.put(f"{base}/api/v1/filters/hdr", json={
                    "source": {"file": str(trapping)}, "failure_policy": "FAIL_RELOAD"}) as r:
                assert r.status == 200, await r.text()

            async def reloaded() -> dict[str, Any] | None:
                e = entry(await health(base, "hdr"), 3)
                return e if e and e["vm_reloads"] > 0 else None

            three = await wait_for(reloaded, 30, interval=0.5, what="revision 3 VM reloads from Envoy's stats")
            assert three["failing"] and three["vm_failures"] > 0


async def _page_shows_failing_revision(base: str) -> None:
    """The status page: the failing revision's row is red though the proxy ACKed it."""
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.goto(base + "/")
            card = page.locator('article[data-filter="hdr"]')
            row = card.locator('tr.health[data-revision="2"]')
            await expect(row).to_have_attribute("data-failing", "true", timeout=15_000)
            await expect(row).to_contain_text("failing at runtime")
            await expect(row.locator("td").first).to_have_css("color", "rgb(198, 40, 40)")
            await expect(card).to_have_class("card filter failing")
            await expect(row.locator("svg.spark-req polyline")).to_have_count(1)
            await expect(card.locator('tr.health[data-revision="1"]')).to_have_attribute("data-failing", "false")
            await expect(page.locator('tr.proxy[data-node="e1"] [data-resource="hdr"]')).to_have_attribute(
                "data-state", "ACKED")
            await page.screenshot(path=str(ARTIFACTS / "status-page-health.png"), full_page=True)
        finally:
            await browser.close()


@pytest.fixture(autouse=True)
def _artifacts() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
