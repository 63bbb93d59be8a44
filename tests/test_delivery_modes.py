"""Each delivery mode (inline, file, remote) swaps a filter on a live real Envoy, and a
server restart makes that Envoy reload nothing."""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.config import parse_filter_spec

HEADER = "x-wasm-filter"


@pytest.mark.parametrize("delivery", ["inline", "file", "remote"])
@pytest.mark.parametrize("mode", [{}, {"ads": True, "delta": True}], ids=["ecds-sotw", "ads-delta"])
async def test_delivery_mode_on_live_envoy(tmp_path: Path, delivery: str, mode: dict[str, bool]) -> None:
    mods = {}
    for tag in ("one", "two", "three"):
        mods[tag] = tmp_path / f"{tag}.wasm"
        mods[tag].write_bytes(header_filter(HEADER, tag))
    cfg = write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"file": str(mods["one"])}, "delivery": delivery}],
        module_dir=str(tmp_path / "shared-modules"),
        xds_address=f"127.0.0.1:{free_port()}", admin_address=f"127.0.0.1:{free_port()}",
    )
    port = free_port()
    with capture_logs() as logs:
        await run_swaps(tmp_path, cfg, port, mods, delivery, mode)
    if delivery == "remote":
        # Each push to the live Envoy was NACKed (code-cache miss), the module fetched
        # from /modules/sha256/<hex>, and the other form re-pushed and ACKed.
        events = [e["event"] for e in logs]
        assert events.count("remote_repush") >= 3
        assert "auto_rollback" not in events


async def run_swaps(tmp_path: Path, cfg: Path, port: int, mods: dict[str, Path], delivery: str,
                    mode: dict[str, bool]) -> None:
    async with AsyncExitStack() as stack:
        server = AsyncExitStack()
        app = await server.enter_async_context(running_server(cfg))
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port, **mode)
        envoy = await stack.enter_async_context(EnvoyProcess(boot, tmp_path))
        url = f"http://127.0.0.1:{port}/"
        # The first config arrives while Envoy starts.
        await wait_for_header(url, HEADER, "one", timeout=20)
        pid = envoy.pid
        # Later ones reach a live Envoy.
        for tag in ("two", "three"):
            spec = parse_filter_spec({"name": "hdr", "source": {"file": str(mods[tag])},
                                      "delivery": delivery}, where="test")
            state = await app.controller.deploy("hdr", [spec], author="test")
            await wait_for_header(url, HEADER, tag, timeout=20)
            versions = state.all_versions

            async def acked(vs: list[str] = versions) -> bool | None:
                r = app.status.proxies["e1"].resources["hdr"]
                return True if r.acked in vs and r.acked == r.sent else None

            await wait_for(acked, 10, what=f"ACK of {tag}")
        assert envoy.pid == pid
        if delivery == "file":
            names = {p.name for p in (tmp_path / "shared-modules").glob("*.wasm")}
            assert names == {f"{hashlib.sha256(m.read_bytes()).hexdigest()}.wasm" for m in mods.values()}
        history = (await app.controller.state.history("hdr"))
        assert [h.action for h in history][:2] == ["deploy", "deploy"]

        # Restart the server: the Envoy reconnects and reloads nothing.
        reloads = await envoy.stats("config_reload")
        await server.aclose()
        app = await stack.enter_async_context(running_server(cfg))

        async def back() -> bool | None:
            p = app.status.proxies.get("e1")
            return True if p is not None and p.connected else None

        await wait_for(back, 30, what="Envoy reconnected to the restarted server")
        await asyncio.sleep(1.0)
        assert await envoy.stats("config_reload") == reloads
        await wait_for_header(url, HEADER, "three", timeout=2)
        assert envoy.pid == pid
