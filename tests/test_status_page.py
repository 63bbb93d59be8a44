"""The status page and its event stream: unit behaviour of `/api/v1/events`, and the page
in a real headless Chromium updating live while a real Envoy takes new versions."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, async_playwright, expect

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import failing_filter, header_filter
from tests.test_standalone_resources import document, route
from tests.xds_client import XdsClient, lds
from xds_server.admin._events import EventStreams
from xds_server.admin._page import STATIC_FILES
from xds_server.controller import FilterEvent
from xds_server.status import StatusEvent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
STATIC_DIR = Path(__file__).resolve().parents[1] / "xds_server" / "admin" / "static"

Listener = Callable[[StatusEvent | FilterEvent], None]


class FakeSource:
    """An event source with the tracker's subscribe contract, driven by the test."""

    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)

    def emit(self, event: StatusEvent | FilterEvent) -> None:
        for listener in tuple(self.listeners):
            listener(event)


class SseReader:
    """Reads SSE frames (and comments) from an aiohttp response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def frame(self, timeout: float = 5.0) -> list[str]:  # noqa: ASYNC109
        lines: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.decode().rstrip("\n")
                if line == "":
                    if lines:
                        return lines
                    continue
                lines.append(line)

    async def event(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The next event's data (skipping comments and `retry:`)."""
        async with asyncio.timeout(timeout):
            while True:
                data = [ln[6:] for ln in await self.frame() if ln.startswith("data: ")]
                if data:
                    parsed: dict[str, Any] = json.loads("\n".join(data))
                    return parsed


@pytest.fixture
async def fake_stream() -> AsyncIterator[tuple[FakeSource, EventStreams, str, web.AppRunner]]:
    source = FakeSource()
    streams = EventStreams([source.subscribe], heartbeat=0.3, queue_size=4)
    app = web.Application()
    app.router.add_get("/events", streams.handle)
    app.on_shutdown.append(streams.close_all)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield source, streams, f"http://127.0.0.1:{port}/events", runner
    finally:
        await runner.cleanup()


async def test_event_stream_sends_changes_heartbeats_and_unsubscribes(
    fake_stream: tuple[FakeSource, EventStreams, str, web.AppRunner],
) -> None:
    source, streams, url, _ = fake_stream
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        sse = SseReader(response)
        assert (await sse.event())["kind"] == "hello"
        assert len(source.listeners) == 1 and streams.open_streams == 1

        source.emit(StatusEvent("nack", "e1", {"hdr": "v2"}, "Unable to create Wasm plugin hdr"))
        source.emit(FilterEvent("deployed", "hdr", 3, "deploy", "api 127.0.0.1", "b.wasm"))
        nack = await sse.event()
        assert abs(nack.pop("at") - time.time()) < 60
        assert nack == {"source": "status", "kind": "nack", "node_id": "e1", "resources": {"hdr": "v2"},
                        "message": "Unable to create Wasm plugin hdr"}
        filt = await sse.event()
        assert (filt["source"], filt["kind"], filt["name"], filt["revision"]) == ("filter", "deployed", "hdr", 3)

        # From another thread: handed over to the loop, not lost.
        thread = threading.Thread(target=source.emit, args=(StatusEvent("connect", "e2"),))
        thread.start()
        thread.join()
        assert (await sse.event())["node_id"] == "e2"

        assert await sse.frame(timeout=2) == [": heartbeat"]

    async def unsubscribed() -> bool | None:
        return True if not source.listeners and streams.open_streams == 0 else None

    await wait_for(unsubscribed, 5, what="listener removed after the client left")


async def test_event_stream_full_queue_resyncs_without_blocking(
    fake_stream: tuple[FakeSource, EventStreams, str, web.AppRunner],
) -> None:
    source, _, url, _ = fake_stream
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        sse = SseReader(response)
        assert (await sse.event())["kind"] == "hello"
        for i in range(10):  # synchronous burst: the handler cannot run in between
            source.emit(StatusEvent("ack", f"n{i}", {"hdr": str(i)}))
        # Queue of 4: whenever it is full, what is pending becomes one resync marker.
        first = await sse.event()
        assert (first["kind"], first["dropped"]) == ("resync", 7)
        assert [(await sse.event())["node_id"] for _ in range(3)] == ["n7", "n8", "n9"]


async def test_shutdown_ends_open_streams(
    fake_stream: tuple[FakeSource, EventStreams, str, web.AppRunner],
) -> None:
    source, streams, url, runner = fake_stream
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        sse = SseReader(response)
        assert (await sse.event())["kind"] == "hello"
        async with asyncio.timeout(5):
            await runner.cleanup()
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await sse.frame(timeout=2)
    assert not source.listeners and streams.open_streams == 0


async def test_page_and_static_files(tmp_path: Path) -> None:
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-wasm-filter", "A"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod)}}])
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}"
        async with http.get(base + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            assert '<script src="/static/status.js"' in await r.text()
        for name in ("status.js", "status.css"):
            async with http.get(f"{base}/static/{name}") as r:
                assert r.status == 200 and r.headers["Content-Type"] == STATIC_FILES[name]
        for bad in ("nope.js", "..%2F_app.py", "index.html"):
            async with http.get(f"{base}/static/{bad}") as r:
                assert r.status == 404
        async with http.get(base + "/api/v1/events") as r:
            assert (await SseReader(r).event())["kind"] == "hello"


def test_static_files_use_no_external_urls_and_no_html_injection() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
        assert "innerHTML" not in text and "outerHTML" not in text and "insertAdjacentHTML" not in text, path
    assert {p.name for p in STATIC_DIR.iterdir()} == set(STATIC_FILES)


# --- the page in a real browser, against a real Envoy -----------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            yield b
        finally:
            await b.close()


async def _put_filter(http: aiohttp.ClientSession, base: str, name: str, path: Path) -> dict[str, Any]:
    async with http.put(f"{base}/api/v1/filters/{name}", json={"source": {"file": str(path)}},
                        headers={"X-Actor": "status-page-test"}) as r:
        body: dict[str, Any] = await r.json()
        assert r.status in (200, 201), body
        return body


@pytest.mark.envoy
async def test_status_page_updates_live_in_chromium(tmp_path: Path, browser: Browser) -> None:
    mod_a, mod_b, bad = tmp_path / "a.wasm", tmp_path / "b.wasm", tmp_path / "bad.wasm"
    mod_a.write_bytes(header_filter("x-wasm-filter", "A"))
    mod_b.write_bytes(header_filter("x-wasm-filter", "B"))
    bad.write_bytes(failing_filter())
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod_a)}}])
    port = free_port()
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}"
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port)
        async with EnvoyProcess(boot, tmp_path) as envoy:
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-wasm-filter", "A")
            version_a = app.controller.filters["hdr"].versions[0]
            digest_a = app.controller.filters["hdr"].deployed[0].module.sha256

            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    problems.append(f"{msg.text} ({msg.location.get('url', '')})")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(base + "/")
            await expect(page.locator("#live")).to_have_attribute("data-state", "live-on")
            card = page.locator('article[data-filter="hdr"]')
            proxy = page.locator('tr.proxy[data-node="e1"]')
            await expect(card.locator("tr.current")).to_contain_text(digest_a)
            await expect(proxy.locator('[data-resource="hdr"] .runs')).to_contain_text(version_a)
            await expect(proxy).to_have_attribute("data-connected", "true")
            await page.evaluate("window.__sameDocument = 'yes'")

            # Deploy B through the HTTP API: the page follows without a reload.
            body = await _put_filter(http, base, "hdr", mod_b)
            version_b, digest_b = body["specs"][0]["version"], body["specs"][0]["module"]["sha256"]
            assert version_b != version_a
            await expect(card.locator("tr.current")).to_contain_text(digest_b)
            await expect(card.locator("tr.current")).to_contain_text(version_b)
            await expect(card.locator("tr.previous")).to_contain_text(version_a)
            await expect(card.locator("tr.previous")).to_contain_text(digest_a)
            await expect(proxy.locator('[data-resource="hdr"] .runs')).to_contain_text(version_b)
            await expect(proxy.locator('[data-resource="hdr"]')).to_have_attribute("data-state", "ACKED")
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-wasm-filter", "B")

            # A module Envoy refuses: the NACK shows in red with Envoy's message.
            body = await _put_filter(http, base, "hdr", bad)
            version_bad = body["specs"][0]["version"]
            resource = proxy.locator('[data-resource="hdr"]')
            await expect(resource).to_have_attribute("data-state", "NACKED")
            nack = resource.locator(".nack-message")
            await expect(nack).to_contain_text("Unable to create Wasm plugin hdr")
            await expect(nack).to_contain_text(version_bad)
            await expect(nack).to_have_css("color", "rgb(198, 40, 40)")
            await expect(resource.locator(".runs")).to_contain_text(version_b)  # B keeps serving
            await expect(card).to_contain_text("1 NACKed")
            await expect(page.locator("#events li.nack").first).to_contain_text("NACK e1")

            assert await page.evaluate("window.__sameDocument") == "yes"  # never reloaded
            assert await page.evaluate("document.body.dataset.refreshes") not in (None, "1")

            shot = tmp_path / "status-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(shot, ARTIFACTS / "status-page.png")
            assert not problems, problems

            # A canary of B for e1: the card says so, e1 takes B, and the NACK becomes history.
            async with http.put(f"{base}/api/v1/filters/hdr", json={
                    "source": {"file": str(mod_b)}, "canary": {"node_id": "e1"}}) as r:
                assert r.status == 200, await r.text()
            await expect(card.locator(".canary")).to_contain_text("staged, waiting for promote")
            await expect(card.locator("tr.current")).to_contain_text("node_id=e1")
            await expect(resource).to_have_attribute("data-state", "ACKED")
            await expect(resource.locator(".nack-message")).to_have_count(0)
            await expect(resource.locator(".old-nack")).to_contain_text("earlier NACK of " + version_bad)

            # Envoy goes away: the page shows the proxy disconnected, still live itself.
            await envoy.stop()
            await expect(proxy).to_have_attribute("data-connected", "false")
            await expect(page.locator("#live")).to_have_attribute("data-state", "live-on")
            await page.close()


async def test_status_page_shows_resources_with_ack_and_nack_in_chromium(tmp_path: Path, browser: Browser) -> None:
    """Standalone resources get a compact table from the summary: revision, version,
    proxies by state and the NACK message; "list them" narrows the proxies to one."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document(tmp_path)))
    async with running_server(path) as app, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}"
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        try:
            streams = [await lds(client, "edge-1")]
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            await page.goto(base + "/")
            await expect(page.locator("#resources-section")).to_be_visible()
            web = page.locator('tr.resource-row[data-resource="listeners/web"]')
            await expect(web).to_have_attribute("data-acked", "1")
            await expect(web).to_contain_text(app.resources.view("listeners", "web")["versions"][0])
            # No resource appears as an unserved filter in the fleet summary.
            await expect(page.locator('article.summary[data-summary="listeners/web"]')).to_have_count(0)
            # A NACK arrives live: the row says so with Envoy's message.
            streams.append(await lds(client, "edge-2", nack="port 10000 in use"))
            await expect(web).to_have_attribute("data-nacked", "1")
            await expect(web.locator(".nack-message")).to_contain_text("port 10000 in use")
            await expect(web).to_have_class("resource-row attention")
            # A route change shows its new revision (the summary is polled).
            async with http.put(f"{base}/api/v1/resources/routes/main", json={
                    **route(), "virtual_hosts": [{**route()["virtual_hosts"][0], "domains": ["a"]}]}) as r:
                assert r.status == 200, await r.text()
            await expect(page.locator('tr.resource-row[data-resource="routes/main"]')).to_have_attribute(
                "data-revision", "2", timeout=15_000)
            await web.locator("button.show-nacked").click()
            await expect(page.locator("#proxy-filter")).to_have_value("listeners/web")
            await expect(page.locator("tr.proxy")).to_have_count(1)
            await expect(page.locator('tr.proxy[data-node="edge-2"]')).to_have_count(1)
            assert not problems, problems
            assert all(not s.done.is_set() for s in streams)
            await page.close()
        finally:
            await client.close()
