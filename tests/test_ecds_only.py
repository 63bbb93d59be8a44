"""Behind another control plane: Envoy's listeners come from somewhere else (here a file,
`lds_config.path_config_source`, standing in for the other control plane) and only the
wasm filter comes from this server over ECDS.

The test runs the committed example, deploy/envoy/ecds-only-files.yaml with
deploy/envoy/lds/listeners.yaml, with only addresses and paths rewritten to loopback.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.bootstrap import XDS_CLUSTER
from xds_server.config import FilterSpec, parse_filter_spec

ENVOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "envoy"
FILTER = "add-header"  # the filter name the example listener asks for


def _spec(path: Path) -> FilterSpec:
    return parse_filter_spec({"name": FILTER, "source": {"file": str(path)}}, where="test")


def _bootstrap(xds_port: int, lds_path: Path) -> str:
    boot: dict[str, Any] = yaml.safe_load((ENVOY_DIR / "ecds-only-files.yaml").read_text())
    boot["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
    source = boot["dynamic_resources"]["lds_config"]["path_config_source"]
    source["path"] = str(lds_path)
    source["watched_directory"]["path"] = str(lds_path.parent)
    (cluster,) = [c for c in boot["static_resources"]["clusters"] if c["name"] == XDS_CLUSTER]
    cluster["type"] = "STATIC"
    (group,) = cluster["load_assignment"]["endpoints"]
    (lb,) = group["lb_endpoints"]
    lb["endpoint"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": xds_port}
    return yaml.safe_dump(boot)


def _listeners(port: int, version: str) -> dict[str, Any]:
    """The example LDS file on 127.0.0.1:`port`; each version adds a response header
    `x-listener-version`, the way another control plane would change its listener."""
    lds: dict[str, Any] = yaml.safe_load((ENVOY_DIR / "lds" / "listeners.yaml").read_text())
    lds = copy.deepcopy(lds)
    lds["version_info"] = version
    (listener,) = lds["resources"]
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": port}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["route_config"]["response_headers_to_add"] = [
        {"header": {"key": "x-listener-version", "value": version}}
    ]
    return lds


def _publish(lds_path: Path, lds: dict[str, Any]) -> None:
    """Replace the LDS file atomically (write, then rename: what Envoy watches for)."""
    tmp = lds_path.with_name(f".{lds_path.name}.tmp")
    tmp.write_text(yaml.safe_dump(lds))
    os.replace(tmp, lds_path)


async def test_filter_swaps_on_an_envoy_whose_listeners_come_from_files(tmp_path: Path) -> None:
    modules = {}
    for tag in ("A", "B", "C"):
        modules[tag] = tmp_path / f"{tag}.wasm"
        modules[tag].write_bytes(header_filter("x-wasm-filter", tag))
    cfg = write_config(tmp_path / "config.yaml", [{"name": FILTER, "source": {"file": str(modules["A"])}}])
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    lds_dir = tmp_path / "lds"
    lds_dir.mkdir()
    lds_path = lds_dir / "listeners.yaml"
    _publish(lds_path, _listeners(port, "1"))

    async with running_server(cfg) as app, EnvoyProcess(_bootstrap(app.xds_port, lds_path), tmp_path) as envoy:
        _, headers, _ = await wait_for_header(url, "x-wasm-filter", "A")
        assert headers["x-listener-version"] == "1"
        pid = envoy.pid

        # Our side: swap the filter; Envoy keeps running, the file listener is untouched.
        await app.controller.deploy(FILTER, [_spec(modules["B"])], author="test")
        _, headers, _ = await wait_for_header(url, "x-wasm-filter", "B")
        assert headers["x-listener-version"] == "1"
        assert envoy.pid == pid

        # The other control plane's side: a new listener version; our filter still applies.
        _publish(lds_path, _listeners(port, "2"))
        _, headers, _ = await wait_for_header(url, "x-listener-version", "2")
        assert headers["x-wasm-filter"] == "B"
        assert envoy.pid == pid

        # And the new listener still follows this server.
        await app.controller.deploy(FILTER, [_spec(modules["C"])], author="test")
        _, headers, _ = await wait_for_header(url, "x-wasm-filter", "C")
        assert headers["x-listener-version"] == "2"
        assert envoy.pid == pid

        info = await envoy.server_info()
        assert info["state"] == "LIVE"
        assert info["uptime_all_epochs"] == info["uptime_current_epoch"]  # no hot restart
        stats = await envoy.stats("listener_manager")
        assert stats.get("listener_manager.lds.update_success", 0) >= 2
        assert stats.get("listener_manager.listener_modified", 0) >= 1

        version_c = app.controller.filters[FILTER].deployed[0].resource.version

        async def acked_c() -> bool | None:
            proxy = app.status.proxies.get("edge-files-1")
            return True if proxy and proxy.resources[FILTER].acked == version_c else None

        await wait_for(acked_c, 10, what="ACK of C from the ECDS-only Envoy")
