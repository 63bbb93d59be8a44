"""Issue 16: the dry run. A change is loaded into the server's sandbox Envoy with its exact
plugin configuration and must answer the preflight requests as expected before any proxy
of the fleet sees it. A real fleet Envoy watches: it never loads a refused module."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.fixtures.envoy import EnvoyProcess, free_port, http_get, wait_for_header
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import compile_wat, failing_filter, header_filter, header_filter_wat
from xds_server.wasm import RegistryClient, push


def trapping_filter() -> bytes:
    """Loads fine (Envoy ACKs it) but executes `unreachable` on every response."""
    call_add = "(drop (call $add_header"
    wat = header_filter_wat("x-pf", "trap").replace(call_add, "(unreachable) " + call_add, 1)
    assert "(unreachable)" in wat
    return compile_wat(wat)


async def call(session: aiohttp.ClientSession, port: int, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    async with session.request(method, f"http://127.0.0.1:{port}{path}", json=body,
                               headers={"X-Actor": "tester"}) as r:
        return r.status, await r.json()


async def test_preflight_refuses_before_the_fleet_sees_it(tmp_path: Path, registry: RegistryProcess) -> None:
    repo = f"{registry.host}/preflight/pf"
    async with RegistryClient() as client:
        for tag, wasm in (("ok", header_filter("x-pf", "ok")), ("trap", trapping_filter()),
                          ("other", header_filter("x-pf", "other")), ("broken", failing_filter())):
            await push(client, f"{repo}:{tag}", wasm)
    cfg = write_config(tmp_path / "config.yaml", [])
    doc = yaml.safe_load(cfg.read_text())
    doc["preflight"] = {"requests": [{"method": "GET", "path": "/health", "expect": {"status": 200}}]}
    cfg.write_text(yaml.safe_dump(doc))
    expect_ok = {"requests": [{"path": "/", "headers": {"x-test": "1"},
                               "expect": {"status": 200, "headers": {"x-pf": "ok"}}}]}
    port = free_port()
    async with running_server(cfg) as app, aiohttp.ClientSession() as session:
        status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                  {"source": {"image": f"{repo}:ok"}, "preflight": expect_ok})
        assert status == 201, body
        good_version = body["specs"][0]["version"]
        boot = server_bootstrap(app, node_id="fleet-1", filters=["pf"], listen_port=port)
        async with EnvoyProcess(boot, tmp_path) as fleet:
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-pf", "ok")

            # Traps on a test request (the server-wide preflight): refused with Envoy's message.
            status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                      {"source": {"image": f"{repo}:trap"}})
            assert status == 422, body
            message = body["error"]["message"]
            assert "preflight refused module sha256:" in message and f"{repo}:trap" in message, message
            assert "GET /health: the module failed in Envoy" in message, message
            assert "unreachable" in message, message

            # Answers differently from the spec's expectation.
            status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                      {"source": {"image": f"{repo}:other"}, "preflight": expect_ok})
            assert status == 422, body
            assert "GET / -H 'x-test: 1': expected header x-pf: 'ok', got 'other'" in body["error"]["message"]

            # Fails to load: Envoy's NACK message.
            status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                      {"source": {"image": f"{repo}:broken"}})
            assert status == 422, body
            assert "Envoy refused to load it: Unable to create Wasm plugin" in body["error"]["message"]

            # Nothing reached the fleet: revision 1 serves, the fleet Envoy loaded one config
            # and still answers with it; its log never saw the trap.
            status, view = await call(session, app.admin_port, "GET", "/api/v1/filters/pf")
            assert view["revision"] == 1 and view["specs"][0]["version"] == good_version
            stats = await fleet.stats("extension_config_discovery.http_filter.pf")
            assert stats["extension_config_discovery.http_filter.pf.config_reload"] == 1, stats
            assert stats.get("extension_config_discovery.http_filter.pf.config_fail", 0) == 0, stats
            got = await http_get(f"http://127.0.0.1:{port}/")
            assert got[0] == 200 and got[1].get("x-pf") == "ok"
            await asyncio.sleep(0.2)
            assert "unreachable" not in fleet.log_text()
            # The sandbox started once, and once more after the trap killed its VM.
            assert app.sandbox.starts == 2
            async with session.get(f"http://127.0.0.1:{app.admin_port}/metrics") as r:
                metrics = await r.text()
            assert 'xds_server_preflight_checks_total{result="refused"}' in metrics


async def test_no_sandbox_no_change(tmp_path: Path) -> None:
    """Without a usable sandbox Envoy a change with a preflight is refused (503), not waved
    through; `server.preflight_envoy` names the binary."""
    module = tmp_path / "m.wasm"
    module.write_bytes(header_filter("x-pf", "ok"))
    cfg = write_config(tmp_path / "config.yaml", [], preflight_envoy=str(tmp_path / "no-envoy"))
    async with running_server(cfg) as app, aiohttp.ClientSession() as session:
        status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                  {"source": {"file": str(module)}, "preflight": {"requests": [{"path": "/"}]}})
        assert status == 503, body
        assert "could not run" in body["error"]["message"] and "no-envoy" in body["error"]["message"]
        status, body = await call(session, app.admin_port, "PUT", "/api/v1/filters/pf",
                                  {"source": {"file": str(module)}})
        assert status == 201, body  # no preflight asked for: no sandbox needed
