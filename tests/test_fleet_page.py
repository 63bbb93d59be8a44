"""The status page in a real headless Chromium with 10,000 simulated proxies, each its own
gRPC connection and xDS stream (ECDS and ADS, SotW and delta), against the real server.

Checks issue 18's "done means": the summary's first paint, a rollout shown as all ACKed
soon after the last ACK (the server's own `acked_at` against the page's own clock
reading when it first showed it; same machine, same clock), a NACK from 100 proxies with
one message shown as one group of 100, and search finding one node among 10,000. The
page must follow the rollout from events: no refetch of the proxy page.

Bounds are generous because the machine is shared; the measured figures are printed and
written to test-artifacts/fleet-page.json (the benchmark `status_page` reports them too).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.fixtures.fleet import simulated_fleet, wait_until
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.test_status_page import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from xds_server.runtime import XdsServerApp

N = 10_000
NACKERS = list(range(3, N, N // 100))  # 100 proxies spread over the fleet
MESSAGE = "Unable to create Wasm plugin hdr"
DASH = "\u2013"  # the page writes ranges with an en dash
FIRST_PAINT_BOUND_MS = 5_000  # the target is 1 s: see the printed figure and the benchmark
ALL_ACKED_BOUND_S = 5.0  # the target is 1 s after the last ACK


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield b
        finally:
            await b.close()


def _on(app: XdsServerApp, version: str, *, state: str = "ACKED") -> int:
    return sum(1 for p in app.status.local.values()
               if p.connected and (r := p.resources.get("hdr")) is not None and r.sent == version
               and r.state == state)


def _last_ack(app: XdsServerApp, version: str) -> float:
    """The server's own record of the rollout's last ACK."""
    return max(r.acked_at or 0.0 for p in app.status.local.values()
               if (r := p.resources.get("hdr")) is not None and r.acked == version)


async def _deploy(http: aiohttp.ClientSession, base: str, path: Path) -> str:
    async with http.put(f"{base}/api/v1/filters/hdr", json={"source": {"file": str(path)}}) as r:
        body = await r.json()
        assert r.status in (200, 201), body
        version: str = body["specs"][0]["version"]
        return version


async def test_status_page_with_10000_proxies(tmp_path: Path, browser: Browser) -> None:
    for name in "ABC":
        (tmp_path / f"{name}.wasm").write_bytes(header_filter("x-wasm-filter", name))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(tmp_path / "A.wasm")}}])
    figures: dict[str, Any] = {"proxies": N}
    async with running_server(cfg) as app, aiohttp.ClientSession() as http, \
            simulated_fleet(f"127.0.0.1:{app.xds_port}", N, ["hdr"], clusters=4, procs=2) as fleet:
        base = f"http://127.0.0.1:{app.admin_port}"
        version_a = app.controller.filters["hdr"].versions[0]
        await wait_until(lambda: _on(app, version_a) == N, 600, "10,000 proxies ACK A")

        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(base + "/")
        card = page.locator('article.summary[data-summary="hdr"]')
        current = card.locator("tr.version.current")
        await expect(current).to_have_attribute("data-acked", str(N), timeout=30_000)
        first_paint = await page.evaluate("window.__xdsFirstSummary")
        figures["first_summary_paint_ms"] = first_paint
        assert first_paint < FIRST_PAINT_BOUND_MS, figures

        # One page of proxies, in natural order; search finds one node among 10,000.
        rows = page.locator("#proxy-rows tr.proxy")
        await expect(rows).to_have_count(50)
        shown = await rows.evaluate_all("(rs) => rs.map((r) => r.dataset.node)")
        assert shown == [f"fleet-{i}" for i in range(50)]
        await expect(page.locator("#proxy-range")).to_have_text(f"1{DASH}50 of {N}")
        t0 = time.monotonic()
        await page.fill("#proxy-search", "fleet-7777")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-node", "fleet-7777")
        await expect(page.locator("#proxy-range")).to_have_text(f"1{DASH}1 of 1")
        figures["search_s"] = time.monotonic() - t0
        await page.fill("#proxy-search", "")
        await expect(rows).to_have_count(50)
        await page.click("#proxy-next")
        await expect(rows.first).to_have_attribute("data-node", "fleet-50")
        await page.click("#proxy-prev")
        await expect(rows.first).to_have_attribute("data-node", "fleet-0")

        # A rollout: the page shows everyone on B soon after the last ACK, from events.
        loads = await page.evaluate("document.body.dataset.pageLoads")
        t_deploy = time.time()
        version_b = await _deploy(http, base, tmp_path / "B.wasm")
        await wait_until(lambda: _on(app, version_b) == N, 600, "10,000 proxies ACK B")
        last_ack = _last_ack(app, version_b)
        key = f"hdr@{version_b}"
        await page.wait_for_function("(k) => window.__xdsAllAcked && window.__xdsAllAcked[k]", arg=key,
                                     timeout=60_000)
        shown_at = await page.evaluate("(k) => window.__xdsAllAcked[k]", key)
        figures |= {"rollout_fleet_acked_s": last_ack - t_deploy, "rollout_page_lag_s": shown_at - last_ack}
        assert shown_at - last_ack < ALL_ACKED_BOUND_S, figures
        await expect(page.locator('tr.proxy[data-node="fleet-0"] [data-resource="hdr"] .runs')).to_contain_text(
            version_b)
        assert await page.evaluate("document.body.dataset.pageLoads") == loads  # patched, not refetched

        # 100 proxies refuse C with one message: one group of 100, listed first.
        await fleet.nack(NACKERS, MESSAGE)
        version_c = await _deploy(http, base, tmp_path / "C.wasm")
        await wait_until(lambda: _on(app, version_c, state="NACKED") == 100
                         and _on(app, version_c) == N - 100, 600, "C: 9,900 ACKs and 100 NACKs")
        group = card.locator("li.nack-group")
        await expect(group).to_have_count(1, timeout=10_000)
        await expect(group).to_have_attribute("data-count", "100")
        await expect(group.locator(".nack-message")).to_have_text(MESSAGE)
        await expect(group.locator(".nodes")).to_have_text("fleet-3, fleet-103, fleet-203, fleet-303, "
                                                           "fleet-403 and 95 more")
        await expect(card).to_have_class("card summary attention")
        await group.locator("button.show-nacked").click()  # the group's proxies, listed
        await expect(page.locator("#proxy-state")).to_have_value("NACKED")
        await expect(page.locator("#proxy-filter")).to_have_value("hdr")
        await expect(page.locator("#proxy-range")).to_have_text(f"1{DASH}50 of 100")
        await expect(rows.first).to_have_attribute("data-node", "fleet-3")
        await expect(rows.first.locator('[data-resource="hdr"]')).to_have_attribute("data-state", "NACKED")
        assert await fleet.errors() == 0
        await page.screenshot(path=str(tmp_path / "fleet-page.png"))
        assert not problems, problems
        await page.close()
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fleet-page.json").write_text(json.dumps(figures, indent=1))
    print("fleet page figures:", figures)
