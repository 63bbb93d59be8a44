"""A standalone fleet: a real Envoy started from `bootstrap --full` gets everything from
the server (listener, route configuration, cluster, endpoints, wasm filter) and follows
route, endpoint and filter changes without restart; a broken listener is NACKed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from aiohttp import web
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from tests.fixtures.envoy import EnvoyProcess, free_port, http_get, validate_bootstrap, wait_for, wait_for_header
from tests.fixtures.server import running_server
from tests.fixtures.wasm_filters import config_echo_filter, header_filter
from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml
from xds_server.cache import TYPED_EXTENSION_CONFIG
from xds_server.config import parse_filter_spec
from xds_server.resources import route_instance
from xds_server.runtime import XdsServerApp

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


@asynccontextmanager
async def upstream(tag: str) -> AsyncIterator[int]:
    """A real HTTP server answering `<tag> <path>` on a free loopback port."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=f"{tag} {request.path}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


def listener(port: int, *, stat_prefix: str = "ingress", name: str = "web") -> dict[str, Any]:
    """Envoy's v3 shape; the wasm filter `hdr` named only (the server fills in ECDS)."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM, "stat_prefix": stat_prefix,
                "rds": {"route_config_name": "main"},
                "http_filters": [{"name": "hdr"},
                                 {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
            },
        }]}],
    }


def route_config(extra_header: str = "") -> dict[str, Any]:
    vh: dict[str, Any] = {
        "name": "all", "domains": ["*"],
        "routes": [
            {"name": "api", "match": {"prefix": "/api/"}, "route": {"cluster": "backend"}},
            {"name": "root", "match": {"prefix": "/"}, "route": {"cluster": "backend"}},
        ],
    }
    if extra_header:
        vh["response_headers_to_add"] = [{"header": {"key": "x-route", "value": extra_header}}]
    return {"name": "main", "virtual_hosts": [vh]}


def endpoints(port: int) -> dict[str, Any]:
    return {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}


def write_config(path: Path, module: Path, listen: int, up: int) -> Path:
    doc = {
        "server": {"xds_address": "127.0.0.1:0", "admin_address": "127.0.0.1:0",
                   "data_dir": str(path.parent / "data"), "watch_config": False},
        "filters": [{"name": "hdr", "source": {"file": str(module)},
                     "routes": [{"virtual_host": "*", "route": "root", "disabled": True}]}],
        "resources": {
            "listeners": [listener(listen)],
            "routes": [route_config()],
            "clusters": [{"name": "backend", "type": "EDS", "connect_timeout": "1s"}],
            "endpoints": [endpoints(up)],
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


async def api(app: XdsServerApp, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{app.admin_port}{path}",
            data=None if body is None else json.dumps(body)) as resp:
        return resp.status, await resp.json()


def acked(app: XdsServerApp, node: str, key: str) -> Callable[[], str | None]:
    def check() -> str | None:
        proxy = app.status.proxies.get(node)
        r = proxy.resources.get(key) if proxy else None
        return r.acked if r is not None and r.acked and r.acked == r.sent else None
    return check


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_full_bootstrap_standalone_fleet(tmp_path: Path, delta: bool) -> None:
    mod_a, mod_b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    mod_a.write_bytes(header_filter("x-wasm-filter", "A"))
    mod_b.write_bytes(header_filter("x-wasm-filter", "B"))
    listen = free_port()
    async with upstream("one") as up1, upstream("two") as up2, \
            running_server(write_config(tmp_path / "config.yaml", mod_a, listen, up1)) as app:
        boot = bootstrap_yaml(BootstrapOptions(
            node_id="edge-1", filters=(), full=True, delta=delta, admin="127.0.0.1:0",
            xds_addresses=[f"127.0.0.1:{app.xds_port}"], module_server=None))
        assert "listeners" not in yaml.safe_load(boot)["static_resources"]
        await validate_bootstrap(boot, tmp_path)
        async with EnvoyProcess(boot, tmp_path) as envoy:
            base = f"http://127.0.0.1:{listen}"
            status, headers, body = await wait_for_header(f"{base}/api/x", "x-wasm-filter", "A", timeout=20)
            assert body == b"one /api/x"
            status, headers, body = await http_get(f"{base}/")
            assert (status, body) == (200, b"one /") and "x-wasm-filter" not in headers
            pid = envoy.pid
            stats = await envoy.stats("listener_manager")
            modified = stats["listener_manager.listener_modified"]

            # A route change (RDS): applied without touching the listener.
            code, view = await api(app, "PUT", "/api/v1/resources/routes/main", route_config("v2"))
            assert code == 200, view
            await wait_for_header(f"{base}/api/x", "x-route", "v2")
            # An endpoint change (EDS): the other upstream answers.
            code, view = await api(app, "PUT", "/api/v1/resources/endpoints/backend", endpoints(up2))
            assert code == 200, view

            async def on_two() -> bool:
                return (await http_get(f"{base}/api/y"))[2] == b"two /api/y"

            await wait_for(on_two, 10, what="the second upstream")
            # A filter swap (ECDS).
            await app.controller.deploy("hdr", [parse_filter_spec(
                {"name": "hdr", "source": {"file": str(mod_b)},
                 "routes": [{"virtual_host": "*", "route": "root", "disabled": True}]},
                where="test")], author="test")
            await wait_for_header(f"{base}/api/x", "x-wasm-filter", "B")
            assert "x-wasm-filter" not in (await http_get(f"{base}/"))[1]
            stats = await envoy.stats("listener_manager")
            assert stats["listener_manager.listener_modified"] == modified
            assert stats["listener_manager.total_listeners_draining"] == 0
            assert envoy.pid == pid

            # A broken listener (Envoy requires a stat_prefix): NACKed, the previous serves.
            good = await wait_for(acked(app, "edge-1", "listeners/web"), 10, what="listener ACK")
            code, view = await api(app, "PUT", "/api/v1/resources/listeners/web", listener(listen, stat_prefix=""))
            assert code == 200, view

            def nacked() -> str | None:
                r = app.status.proxies["edge-1"].resources["listeners/web"]
                return r.last_nack.message if r.last_nack and r.last_nack.version != good else None

            message = await wait_for(nacked, 10, what="listener NACK")
            assert "StatPrefix: value length must be at least 1" in message
            assert app.status.proxies["edge-1"].resources["listeners/web"].acked == good
            status, headers, body = await http_get(f"{base}/api/z")
            assert (status, headers.get("x-wasm-filter"), body) == (200, "B", b"two /api/z")
            assert envoy.pid == pid
            # The refused version is never sent to this proxy again: it keeps the good one,
            # also in full-state LDS responses, so another listener is ACKed, not NACKed.
            assert app.resources.pins[("listeners", "web")]["edge-1"].version == good
            second = free_port()
            code, view = await api(app, "PUT", "/api/v1/resources/listeners/web2",
                                   listener(second, name="web2"))
            assert code == 201, view
            await wait_for(acked(app, "edge-1", "listeners/web2"), 10, what="ACK of the second listener")
            web = app.status.proxies["edge-1"].resources["listeners/web"]
            assert (web.sent, web.acked, web.last_nack and web.last_nack.message) == (good, good, message)
            await wait_for_header(f"http://127.0.0.1:{second}/api/q", "x-wasm-filter", "B")
            # CSDS shows every type under Envoy's own names, the listener NACKed.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
                csds: Any = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
                answer = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest())
            configs = {(g.type_url.rsplit(".", 1)[-1], g.name): g for g in answer.config[0].generic_xds_configs}
            assert {("Listener", "web"), ("RouteConfiguration", "main"), ("Cluster", "backend"),
                    ("ClusterLoadAssignment", "backend"), ("TypedExtensionConfig", "hdr")} <= set(configs)
            assert configs[("Listener", "web")].version_info == good
            assert configs[("Listener", "web2")].client_status == config_dump_shared_pb2.ACKED
            assert configs[("Cluster", "backend")].xds_config.value  # the content as sent

            # History and rollback, like filters.
            code, hist = await api(app, "GET", "/api/v1/resources/listeners/web/history")
            assert code == 200 and [h["action"] for h in hist["history"]] == ["deploy", "config"]
            code, view = await api(app, "POST", "/api/v1/resources/listeners/web/rollback", {})
            assert code == 200, view
            await wait_for(lambda: acked(app, "edge-1", "listeners/web")() == good, 10,
                           what="ACK of the rolled-back listener")


async def test_per_route_configuration_is_its_own_ecds_instance(tmp_path: Path) -> None:
    """`routes: [{route: GLOB, configuration: X}]`: matching routes run the filter with X
    (a second ECDS instance, enabled there only), the others with the filter's own."""
    module = tmp_path / "echo.wasm"
    module.write_bytes(config_echo_filter("x-wasm-config"))
    listen = free_port()
    path = write_config(tmp_path / "config.yaml", module, listen, 1)
    doc = yaml.safe_load(path.read_text())
    doc["filters"][0]["configuration"] = "base"
    doc["filters"][0]["routes"] = [{"virtual_host": "a*", "route": "api", "configuration": "special"}]
    doc["resources"]["routes"][0]["virtual_hosts"][0]["routes"][1] = {
        "name": "root", "match": {"prefix": "/"}, "direct_response": {"status": 200}}
    async with upstream("one") as up:
        doc["resources"]["endpoints"] = [endpoints(up)]
        path.write_text(yaml.safe_dump(doc))
        async with running_server(path) as app:
            boot = bootstrap_yaml(BootstrapOptions(
                node_id="edge-2", filters=(), full=True, admin="127.0.0.1:0",
                xds_addresses=[f"127.0.0.1:{app.xds_port}"], module_server=None))
            async with EnvoyProcess(boot, tmp_path) as envoy:
                base = f"http://127.0.0.1:{listen}"
                _, headers, body = await wait_for_header(f"{base}/api/x", "x-wasm-config", "special", timeout=20)
                assert body == b"one /api/x"
                _, headers, _ = await http_get(f"{base}/")
                assert headers.get("x-wasm-config") == "base"
                dump = json.dumps(await envoy.config_dump())
                instance = route_instance("hdr", "special")
                assert instance in dump and '"disabled": true' in dump
                # A rule change through the filter API: the route configuration follows.
                spec = {"name": "hdr", "source": {"file": str(module)}, "configuration": "base",
                        "routes": [{"route": "api", "disabled": True}]}
                await app.controller.deploy("hdr", [parse_filter_spec(spec, where="test")], author="test")
                await wait_for_header(f"{base}/api/x", "x-wasm-config", None)
                assert (await http_get(f"{base}/"))[1].get("x-wasm-config") == "base"
                assert instance not in app.cache.names(TYPED_EXTENSION_CONFIG)
