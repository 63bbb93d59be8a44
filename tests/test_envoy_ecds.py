"""A real Envoy takes its wasm filter from the server: serve A, swap to B, refuse a bad one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fixtures.envoy import (
    EnvoyProcess,
    http_get,
    validate_bootstrap,
    wait_for,
    wait_for_header,
)
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import failing_filter, header_filter
from xds_server.config import FilterSpec, parse_filter_spec

MODES = [
    pytest.param({"ads": False, "delta": False}, id="ecds-sotw"),
    pytest.param({"ads": False, "delta": True}, id="ecds-delta"),
    pytest.param({"ads": True, "delta": False}, id="ads-sotw"),
    pytest.param({"ads": True, "delta": True}, id="ads-delta"),
]


def spec(name: str, path: Path) -> FilterSpec:
    return parse_filter_spec({"name": name, "source": {"file": str(path)}}, where="test")


@pytest.mark.parametrize("mode", MODES)
async def test_swap_and_nack_on_real_envoy(tmp_path: Path, mode: dict[str, bool]) -> None:
    mod_a, mod_b, bad = tmp_path / "a.wasm", tmp_path / "b.wasm", tmp_path / "bad.wasm"
    mod_a.write_bytes(header_filter("x-wasm-filter", "A"))
    mod_b.write_bytes(header_filter("x-wasm-filter", "B"))
    bad.write_bytes(failing_filter())
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod_a)}}])
    port = free_port()
    async with running_server(cfg) as app:
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port, **mode)
        await validate_bootstrap(boot, tmp_path)
        async with EnvoyProcess(boot, tmp_path) as envoy:
            url = f"http://127.0.0.1:{port}/"
            await wait_for_header(url, "x-wasm-filter", "A")
            pid = envoy.pid
            version_a = app.controller.filters["hdr"].deployed[0].resource.version

            await app.controller.deploy("hdr", [spec("hdr", mod_b)], author="test")
            await wait_for_header(url, "x-wasm-filter", "B")
            assert envoy.pid == pid
            info = await envoy.server_info()
            assert info["state"] == "LIVE"
            assert info["uptime_all_epochs"] == info["uptime_current_epoch"]
            version_b = app.controller.filters["hdr"].deployed[0].resource.version
            assert version_b != version_a

            async def acked_b() -> bool | None:
                p = app.status.proxies.get("e1")
                return True if p and p.resources["hdr"].acked == version_b else None

            await wait_for(acked_b, 10, what="ACK of B")

            await app.controller.deploy("hdr", [spec("hdr", bad)], author="test")
            version_bad = app.controller.filters["hdr"].deployed[0].resource.version

            async def nacked() -> bool | None:
                r = app.status.proxies["e1"].resources["hdr"]
                return True if r.last_nack and r.last_nack.version == version_bad else None

            await wait_for(nacked, 10, what="NACK of the failing module")
            r = app.status.proxies["e1"].resources["hdr"]
            assert "Unable to create Wasm plugin hdr" in r.last_nack.message  # type: ignore[union-attr]
            assert r.acked == version_b
            assert r.state == "NACKED"
            # B keeps serving, on the same Envoy, and nothing is resent in a loop.
            for _ in range(5):
                await wait_for_header(url, "x-wasm-filter", "B", timeout=2)
            sent_at = r.sent_at
            await asyncio.sleep(0.5)
            assert r.sent_at == sent_at
            assert envoy.pid == pid
            stats = await envoy.stats("extension_config_discovery")
            assert stats.get("extension_config_discovery.http_filter.hdr.config_fail", 0) >= 1
            # The server's own metrics saw the stream, the ACKs and the NACK.
            _, _, body = await http_get(f"http://127.0.0.1:{app.admin_port}/metrics")
            metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                       for line in body.decode().splitlines() if line.startswith("xds_server_")}
            assert metrics['xds_server_nacks_total{resource="hdr"}'] >= 1
            assert metrics["xds_server_acks_total"] >= 2 and metrics["xds_server_responses_total"] >= 3
            assert metrics["xds_server_proxies_connected"] >= 1
