"""Scenario `status_page` (issue 18): the status page in headless Chromium with N simulated
proxies, against the real xds-server in its own process.

In one run, against the same server and fleet:
* **before**: the page as it was (`legacy_status_page/`, served in place of the current
  files through Playwright routing): it refetches `/api/v1/filters` and the whole
  `/api/v1/proxies` on change events and rebuilds the table;
* **after**: the current page (summary first, a page of proxies, coalesced event feed).

For each: the first paint (navigation to the summary, resp. the filter card showing all
N on the version), and a rollout of a new version: when the fleet's last ACK happened
(the server's own `acked_at`), when the page first showed all N ACKed (the page's clock
reading, polled every animation frame), and the bytes the page received in between
(Chrome DevTools `Network.dataReceived` `dataLength`: response bodies and the event
stream, decoded).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._proc import Worker

LEGACY = Path(__file__).parent / "legacy_status_page"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PER_GENERATOR = 5000


class StatusPageServerWorker:
    """The real server (`XdsServerApp`) in a child process, with a file-sourced filter."""

    def __init__(self) -> None:
        from xds_server.log import configure_logging

        configure_logging("warning", "json")
        self.app: Any = None
        self.dir = Path(tempfile.mkdtemp(prefix="xds-bench-page-"))

    async def cmd_start(self) -> dict[str, int]:
        from tests.fixtures.wasm_filters import header_filter
        from xds_server.config import load_config
        from xds_server.runtime import XdsServerApp

        for name in ("A", "B", "C", "D"):
            (self.dir / f"{name}.wasm").write_bytes(header_filter("x-wasm-filter", name))
        cfg = self.dir / "config.yaml"
        cfg.write_text(yaml.safe_dump({
            "server": {"xds_address": "127.0.0.1:0", "admin_address": "127.0.0.1:0",
                       "data_dir": str(self.dir / "data"), "watch_config": False},
            "filters": [{"name": "hdr", "source": {"file": str(self.dir / "A.wasm")}}]}))
        self.app = XdsServerApp(load_config(cfg))
        await self.app.setup()
        await self.app.start()
        return {"xds": self.app.xds_port, "admin": self.app.admin_port}

    async def cmd_version(self) -> str:
        return str(self.app.controller.filters["hdr"].versions[0])

    async def cmd_deploy(self, module: str) -> str:
        from xds_server.config import parse_filter_spec

        spec = parse_filter_spec({"name": "hdr", "source": {"file": str(self.dir / f"{module}.wasm")}},
                                 where="benchmark")
        state = await self.app.controller.deploy("hdr", [spec], author="bench", action="deploy")
        return str(state.versions[0])

    async def cmd_acked(self, version: str) -> dict[str, float]:
        """How many connected proxies ACKed `version`, and the last such ACK (time.time())."""
        n, last = 0, 0.0
        for p in self.app.status.local.values():
            r = p.resources.get("hdr")
            if p.connected and r is not None and r.acked == version:
                n += 1
                last = max(last, r.acked_at or 0.0)
        return {"n": n, "last": last}

    async def close(self) -> None:
        if self.app is not None:
            await self.app.stop(0)
            await self.app.cleanup()


async def _call(worker: Worker, cmd: str, **args: Any) -> Any:
    return await asyncio.to_thread(worker.call, cmd, **args)


async def _wait_acked(server: Worker, version: str, n: int, within: float = 600) -> dict[str, float]:
    deadline = time.monotonic() + within
    while True:
        got: dict[str, float] = await _call(server, "acked", version=version)
        if got["n"] >= n or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


# In-page checks, polled every animation frame: the first time the page shows all N on
# the version is recorded with the page's own clock.
_NEW_SHOWS = """([version, n]) => {
  const key = `hdr@${version}`;
  return (window.__xdsAllAcked && window.__xdsAllAcked[key]) || false;
}"""
_OLD_SHOWS = """([version, n]) => {
  const el = document.querySelector('article[data-filter="hdr"] .rollout');
  if (!el || !el.textContent.includes(version) || !el.textContent.includes(`\u00d7 ${n}`)) return false;
  const shown = window.__oldShown || (window.__oldShown = {});
  shown[version] = shown[version] || Date.now() / 1000;
  return shown[version];
}"""


def _serve(body: bytes, kind: str) -> Any:
    """A Playwright route handler answering `body` (the legacy page's file)."""

    async def handler(route: Any, _request: Any) -> None:
        await route.fulfill(body=body, content_type=kind)

    return handler


async def _page_run(browser: Any, base: str, server: Worker, n: int, module: str,
                    *, legacy: bool) -> dict[str, Any]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    if legacy:
        for name, kind in (("status.js", "text/javascript"), ("index.html", "text/html")):
            url = base + ("/" if name == "index.html" else f"/static/{name}")
            await page.route(url, _serve((LEGACY / name).read_bytes(), kind))
    received = [0]
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    cdp.on("Network.dataReceived", lambda e: received.__setitem__(0, received[0] + int(e.get("dataLength", 0))))
    shows = _OLD_SHOWS if legacy else _NEW_SHOWS
    current = await _call(server, "version")
    t0 = time.monotonic()
    await page.goto(base + "/")
    await page.wait_for_function(shows, arg=[current, n], timeout=600_000, polling="raf")
    first_paint = time.monotonic() - t0
    await asyncio.sleep(2)  # settle: the initial load is not part of the rollout
    bytes0 = received[0]
    t_deploy = time.time()
    version = await _call(server, "deploy", module=module)
    fleet = await _wait_acked(server, version, n)
    handle = await page.wait_for_function(shows, arg=[version, n], timeout=600_000, polling="raf")
    shown = float(await handle.json_value())
    used = received[0] - bytes0
    await context.close()
    return {
        "first_paint_s": first_paint, "fleet_acked_s": fleet["last"] - t_deploy,
        "page_all_acked_s": shown - t_deploy, "lag_after_last_ack_s": shown - fleet["last"],
        "rollout_bytes": used, "complete": fleet["n"] >= n,
    }


async def _run(n: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    server = Worker("benchmarks._status_page.StatusPageServerWorker")
    gens = [Worker("benchmarks._fleet.FleetWorker") for _ in range(max(1, math.ceil(n / PER_GENERATOR)))]
    try:
        ports = await _call(server, "start")
        per = [n // len(gens) + (1 if i < n % len(gens) else 0) for i in range(len(gens))]
        offset = 0
        for g, count in zip(gens, per, strict=True):
            g.send("connect", target=f"127.0.0.1:{ports['xds']}", n=count, offset=offset,
                   sub={"kind": "fixed", "names": ["hdr"]}, modes=[0, 1, 2, 3], node_prefix="fleet-",
                   clusters=4)
            offset += count
        for g in gens:
            await asyncio.to_thread(g.recv, 300)
        t0 = time.monotonic()
        await _wait_acked(server, await _call(server, "version"), n)
        connected_s = time.monotonic() - t0
        base = f"http://127.0.0.1:{ports['admin']}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                before = await _page_run(browser, base, server, n, "B", legacy=True)
                after = await _page_run(browser, base, server, n, "C", legacy=False)
            finally:
                await browser.close()
        return {"n": n, "connected_s": connected_s, "before": before, "after": after}
    finally:
        for g in gens:
            g.close()
        server.close()


def status_page(n: int) -> dict[str, Any]:
    """The scenario (see the module docstring)."""
    return asyncio.run(_run(n))


def status_page_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["page", "N", "first paint s", "fleet all-ACK s", "page all-ACK s", "lag after last ACK s",
            "rollout bytes"]
    rows = [[label, res["n"], r["first_paint_s"], r["fleet_acked_s"], r["page_all_acked_s"],
             r["lag_after_last_ack_s"], r["rollout_bytes"]]
            for label, r in (("before (full refetch)", res["before"]), ("after (events)", res["after"]))]
    return head, rows
