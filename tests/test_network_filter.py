"""A network (TCP) wasm filter over ECDS on a real Envoy: served, swapped, no restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.fixtures.envoy import EnvoyProcess, validate_bootstrap, wait_for
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import network_counter_filter
from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml
from xds_server.config import parse_filter_spec


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    writer.close()
    return data


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_network_filter_swap(tmp_path: Path, delta: bool) -> None:
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(network_counter_filter("conn_a"))
    b.write_bytes(network_counter_filter("conn_b"))
    cfg = write_config(tmp_path / "config.yaml",
                       [{"name": "tcp-count", "type": "network", "source": {"file": str(a)}}])
    tcp_port = free_port()
    async with echo_server() as echo_port, running_server(cfg) as app:
        boot = bootstrap_yaml(BootstrapOptions(
            node_id="t1", filters=[], network_filters=["tcp-count"], tcp_listen=f"127.0.0.1:{tcp_port}",
            tcp_upstream=f"127.0.0.1:{echo_port}", xds_addresses=[f"127.0.0.1:{app.xds_port}"],
            admin="127.0.0.1:0", module_server=None, delta=delta))
        await validate_bootstrap(boot, tmp_path)
        async with EnvoyProcess(boot, tmp_path) as envoy:
            async def counted(name: str, at_least: int) -> int | None:
                try:
                    assert await roundtrip(tcp_port, b"hello") == b"hello"
                except OSError:
                    return None
                n = (await envoy.stats(name)).get(f"wasmcustom.{name}", 0)
                return n if n >= at_least else None

            await wait_for(lambda: counted("conn_a", 1), 20, what="filter A counts connections")
            pid = envoy.pid
            await app.controller.deploy("tcp-count", [parse_filter_spec(
                {"name": "tcp-count", "type": "network", "source": {"file": str(b)}}, where="test")],
                author="test")
            await wait_for(lambda: counted("conn_b", 1), 20, what="filter B counts connections")
            assert envoy.pid == pid
            info = await envoy.server_info()
            assert info["uptime_all_epochs"] == info["uptime_current_epoch"]
