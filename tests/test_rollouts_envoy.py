"""Health-gated rollouts end to end (issue 13, "Done means"): real Envoys with the
generated `--telemetry` bootstrap and real traffic.

* A canary that traps on every second request, deployed with `analysis`, is rolled back
  by the server itself; the baseline Envoy never runs it; history shows `auto-rollback`
  with the numbers; `logs --follow` shows entries with the revision; `health` shows the
  failing revision's 5xx. A healthy canary is then promoted by itself (`auto-promote`).
* A filter deployed without a canary, with `on_runtime_failure: rollback`, that fails
  at run time is rolled back.
* `debug`: an override of the configuration served to the selected node only, which
  reverts by itself when its time is up, across a server restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright, expect
from prometheus_client import REGISTRY

from tests.fixtures import wasm_filters as wf
from tests.fixtures.envoy import EnvoyProcess, free_port, http_get, wait_for, wait_for_header
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.test_health_envoy import traffic
from tests.test_status_page import CHROMIUM, CHROMIUM_ARGS
from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml
from xds_server.runtime import XdsServerApp

ANALYSIS = {"interval": "2s", "min_requests": 5, "max_error_rate": 0.05, "intervals": 3}


def _sample(name: str, **labels: str) -> float:
    """A process-wide counter's value now (0 before its first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _json(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with http.request(method, url, json=body) as r:
        text = await r.text()
        assert r.status < 300, f"{method} {url}: {r.status} {text}"
        return json.loads(text)


def _envoy(app: XdsServerApp, tmp_path: Path, node_id: str, port: int) -> EnvoyProcess:
    boot = server_bootstrap(app, node_id=node_id, filters=["hdr"], listen_port=port,
                            telemetry=True, telemetry_interval="1s")
    return EnvoyProcess(boot, tmp_path / node_id)


@contextlib.asynccontextmanager
async def follow_logs(base: str) -> AsyncIterator[list[dict[str, Any]]]:
    """`xds-server logs hdr --follow --output json` in a subprocess; yields its entries."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", "logs", "hdr", "--follow", "--output", "json",
        "--server", base, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    entries: list[dict[str, Any]] = []

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            if line.strip():
                entries.append(json.loads(line))

    task = asyncio.create_task(read())
    try:
        yield entries
    finally:
        proc.terminate()
        await proc.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_canary_rolled_back_by_analysis_then_healthy_canary_promoted(tmp_path: Path) -> None:
    good = tmp_path / "good.wasm"
    good.write_bytes(wf.debug_state_filter("A"))
    trapping = tmp_path / "trap.wasm"
    trapping.write_bytes(wf.debug_state_filter("B", trap_every=2))
    healthy = tmp_path / "healthy.wasm"
    healthy.write_bytes(wf.debug_state_filter("C"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(good)}}],
                       health_bucket_seconds=1)
    base_port, canary_port = free_port(), free_port()
    async with (running_server(cfg) as app, aiohttp.ClientSession() as http,
                _envoy(app, tmp_path, "base-1", base_port) as base_envoy,
                _envoy(app, tmp_path, "canary-1", canary_port) as canary_envoy):
        api = f"http://127.0.0.1:{app.admin_port}"
        rollbacks_before = _sample("xds_server_filter_auto_rollbacks_total", filter="hdr", reason="analysis")
        promotions_before = _sample("xds_server_filter_auto_promotions_total", filter="hdr")
        await base_envoy.wait_live()
        await canary_envoy.wait_live()
        async with (traffic(f"http://127.0.0.1:{base_port}/") as base_statuses,
                    traffic(f"http://127.0.0.1:{canary_port}/") as canary_statuses,
                    follow_logs(api) as followed):
            # Revision 2 traps on every second response; served to canary-1 only.
            view = await _json(http, "PUT", f"{api}/api/v1/filters/hdr", {
                "source": {"file": str(trapping)}, "canary": {"node_id": "canary-1"}, "analysis": ANALYSIS})
            assert view["revision"] == 2 and view["canary"]

            async def rolled_back() -> dict[str, Any] | None:
                h = (await _json(http, "GET", f"{api}/api/v1/filters/hdr/history"))["history"]
                return h[0] if h[0]["action"] == "auto-rollback" else None

            decision = await wait_for(rolled_back, 90, interval=0.5, what="the server rolls the canary back")
            numbers = decision["details"]["analysis"]
            assert decision["revision"] == 3 and decision["author"] == "system:analysis"
            assert decision["details"]["from_revision"] == 2
            assert numbers["verdict"] == "fail" and numbers["canary"]["requests"] >= 5
            assert numbers["canary"]["error_rate"] > 0.05
            # (the baseline's few errors: canary-1's first trapped requests, which started
            # before its ACK arrived, count for the revision it ran before: README, Telemetry)
            assert numbers["baseline"]["requests"] > 0
            assert numbers["baseline"]["error_rate"] < numbers["canary"]["error_rate"]
            assert "error rate" in decision["summary"] and "baseline" in decision["summary"]
            view = await _json(http, "GET", f"{api}/api/v1/filters/hdr")
            assert view["analysis"]["phase"] == "rolled-back" and view["analysis"]["revision"] == 2
            assert view["analysis"]["last"]["canary"]["error_rate"] > 0.05
            await _page_shows_analysis(api, "rolled-back")

            # The baseline never ran revision 2: every entry it logged is revision 1 or 3,
            # and all its requests succeeded.
            logs = await _json(http, "GET", f"{api}/api/v1/logs?filter=hdr&node=base-1&limit=2000")
            assert logs["entries"] and {e["revision"] for e in logs["entries"]} <= {1, 3}
            assert 200 in base_statuses and not [s for s in base_statuses if s >= 500]
            assert 503 in canary_statuses

            # `logs --follow` showed the canary's entries with their revision.
            await wait_for(lambda: any(e.get("revision") == 2 and e.get("canary") for e in followed), 20,
                           what="logs --follow shows revision 2 entries")
            trapped = [e for e in followed if e.get("revision") == 2 and e["status"] == 503]
            assert trapped and trapped[0]["node_id"] == "canary-1"

            # `health` shows the failing revision's 5xx.
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "xds_server", "health", "hdr", "--server", api, "--output", "json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            two = [e for e in json.loads(out)["revisions"] if e["revision"] == 2]
            assert two and two[0]["canary"] and two[0]["errors_5xx"] > 0
            assert [e["proxies"] for e in json.loads(out)["revisions"] if e["revision"] == 2] == [1]

            # The counters are process-wide (other tests in this process may have moved them):
            # this decision adds exactly one.
            after = _sample("xds_server_filter_auto_rollbacks_total", filter="hdr", reason="analysis")
            assert after == rollbacks_before + 1
            async with http.get(f"{api}/metrics") as r:
                assert 'xds_server_filter_auto_rollbacks_total{filter="hdr",reason="analysis"}' in await r.text()

            # A healthy canary passes three intervals in a row and is promoted by itself.
            await _json(http, "PUT", f"{api}/api/v1/filters/hdr", {
                "source": {"file": str(healthy)}, "canary": {"node_id": "canary-1"}, "analysis": ANALYSIS})

            async def promoted() -> dict[str, Any] | None:
                h = (await _json(http, "GET", f"{api}/api/v1/filters/hdr/history"))["history"]
                return h[0] if h[0]["action"] == "auto-promote" else None

            promotion = await wait_for(promoted, 90, interval=0.5, what="the server promotes the canary")
            assert promotion["revision"] == 5 and promotion["details"]["analysis"]["passed"] == 3
            assert promotion["details"]["analysis"]["canary"]["error_rate"] <= 0.05
            version_5 = app.controller.filters["hdr"].versions[0]
            await wait_for(lambda: app.status.proxies["base-1"].resources["hdr"].acked == version_5, 20,
                           what="the baseline runs the promoted revision")
            assert _sample("xds_server_filter_auto_promotions_total", filter="hdr") == promotions_before + 1
            async with http.get(f"{api}/metrics") as r:
                assert 'xds_server_filter_auto_promotions_total{filter="hdr"}' in await r.text()


async def test_runtime_failure_without_canary_rolls_back(tmp_path: Path) -> None:
    good = tmp_path / "good.wasm"
    good.write_bytes(wf.debug_state_filter("A"))
    trapping = tmp_path / "trap.wasm"
    trapping.write_bytes(wf.debug_state_filter("B", trap_every=2))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(good)}}],
                       health_bucket_seconds=1)
    port = free_port()
    async with (running_server(cfg) as app, aiohttp.ClientSession() as http,
                _envoy(app, tmp_path, "e1", port) as envoy):
        api = f"http://127.0.0.1:{app.admin_port}"
        await envoy.wait_live()
        async with traffic(f"http://127.0.0.1:{port}/") as statuses:
            await _json(http, "PUT", f"{api}/api/v1/filters/hdr", {
                "source": {"file": str(trapping)}, "on_runtime_failure": "rollback"})

            async def rolled_back() -> dict[str, Any] | None:
                h = (await _json(http, "GET", f"{api}/api/v1/filters/hdr/history"))["history"]
                return h[0] if h[0]["action"] == "auto-rollback" else None

            decision = await wait_for(rolled_back, 60, interval=0.5, what="the server rolls back revision 2")
            failure = decision["details"]["runtime_failure"]
            assert decision["revision"] == 3 and failure["revision"] == 2 and failure["vm_failures"] > 0
            assert decision["details"]["cause"] == "runtime_failure"
            assert "wasm VM failures" in decision["summary"]
            version_3 = app.controller.filters["hdr"].versions[0]
            assert app.controller.filters["hdr"].deployed[0].module.sha256 == decision["digests"][0]
            await wait_for(lambda: app.status.proxies["e1"].resources["hdr"].acked == version_3, 20,
                           what="e1 runs revision 3")
            assert 503 in statuses
            count = len(statuses)
            await wait_for(lambda: len(statuses) >= count + 10, 20, what="more traffic")
            assert 200 in statuses[-5:] and not [s for s in statuses[-5:] if s >= 500]


async def test_debug_override_for_one_node_reverts_by_itself_across_a_restart(tmp_path: Path) -> None:
    echo = tmp_path / "echo.wasm"
    echo.write_bytes(wf.config_echo_filter())
    xds_port, admin_port, p1, p2 = free_port(), free_port(), free_port(), free_port()
    cfg = write_config(tmp_path / "config.yaml",
                       [{"name": "hdr", "source": {"file": str(echo)}, "configuration": "normal"}],
                       xds_address=f"127.0.0.1:{xds_port}", admin_address=f"127.0.0.1:{admin_port}")
    api = f"http://127.0.0.1:{admin_port}"

    def boot(node_id: str, port: int) -> str:
        return bootstrap_yaml(BootstrapOptions(
            node_id=node_id, filters=["hdr"], xds_addresses=[f"127.0.0.1:{xds_port}"],
            listen=f"127.0.0.1:{port}", admin="127.0.0.1:0"))

    async with running_server(cfg) as app, EnvoyProcess(boot("e1", p1), tmp_path / "e1") as e1, \
                EnvoyProcess(boot("e2", p2), tmp_path / "e2") as e2:
        await e1.wait_live()
        await e2.wait_live()
        for port in (p1, p2):
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-wasm-config", "normal", 20)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "debug", "hdr", "--node", "e2", "--config", "verbose",
            "--for", "15s", "--server", api, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "debug override for nodes 'e2'" in out.decode()
        await wait_for_header(f"http://127.0.0.1:{p2}/", "x-wasm-config", "verbose", 20)
        assert (await http_get(f"http://127.0.0.1:{p1}/"))[1]["x-wasm-config"] == "normal"
        debug_revision = app.controller.filters["hdr"].revision
        assert debug_revision is not None and debug_revision.action == "debug"

        await app.stop(0)  # the server goes away while the override runs ...
        await app.cleanup()
        async with running_server(cfg) as again:  # ... and a new one takes over
            restarted_at = time.time()
            assert again.controller.filters["hdr"].revision == debug_revision
            view = await _json_get(f"{api}/api/v1/filters/hdr")
            assert view["debug"]["node"] == "e2" and view["debug"]["configuration"] == "verbose"
            assert (await http_get(f"http://127.0.0.1:{p2}/"))[1]["x-wasm-config"] == "verbose"

            await wait_for_header(f"http://127.0.0.1:{p2}/", "x-wasm-config", "normal", 40)
            history = (await _json_get(f"{api}/api/v1/filters/hdr/history"))["history"]
            assert [h["action"] for h in history[:2]] == ["debug-end", "debug"]
            assert history[0]["author"] == "system:debug" and history[0]["created_at"] > restarted_at
            assert history[0]["details"]["debug_end"] == {"revision": debug_revision.revision,
                                                          "reason": "expired"}
            assert (await http_get(f"http://127.0.0.1:{p1}/"))[1]["x-wasm-config"] == "normal"

            # Over HTTP, and ended early with DELETE.
            async with aiohttp.ClientSession() as http:
                view = await _json(http, "POST", f"{api}/api/v1/filters/hdr/debug",
                                   {"node": "e1", "configuration": {"level": "debug"}, "for": "10m"})
                assert view["debug"]["configuration"] == '{"level":"debug"}'
                await wait_for_header(f"http://127.0.0.1:{p1}/", "x-wasm-config", '{"level":"debug"}', 20)
                async with http.post(f"{api}/api/v1/filters/hdr/promote") as r:
                    assert r.status == 409  # an override is not a canary
                await _json(http, "DELETE", f"{api}/api/v1/filters/hdr/debug")
                await wait_for_header(f"http://127.0.0.1:{p1}/", "x-wasm-config", "normal", 20)
                async with http.delete(f"{api}/api/v1/filters/hdr/debug") as r:
                    assert r.status == 409
                history = (await _json(http, "GET", f"{api}/api/v1/filters/hdr/history"))["history"]
                assert history[0]["action"] == "debug-end"
                assert history[0]["details"]["debug_end"]["reason"] == "ended early"


async def _page_shows_analysis(base: str, phase: str) -> None:
    """The status page shows the filter's analysis live: its phase and last rates."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=20_000)
        try:
            page = await browser.new_page()
            await page.goto(base + "/")
            facts = page.locator('article[data-filter="hdr"] span.analysis')
            await expect(facts).to_have_attribute("data-phase", phase, timeout=15_000)
            await expect(facts).to_contain_text("analysis of rev 2")
            await expect(facts).to_contain_text("last: fail, errors ")
        finally:
            await browser.close()


async def _json_get(url: str) -> Any:
    async with aiohttp.ClientSession() as http:
        return await _json(http, "GET", url)
