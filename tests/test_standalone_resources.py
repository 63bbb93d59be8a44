"""Envoy resources from declarative config and the admin API: parsing with errors that
name the field, consistency, revisions with history and rollback, restart, `apply -f`,
`bootstrap --full`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.devkit import xs
from tests.fixtures.envoy import validate_bootstrap
from tests.fixtures.server import running_server
from tests.fixtures.wasm_filters import header_filter
from xds_server.bootstrap import BootstrapOptions, build_bootstrap
from xds_server.cache import CLUSTER, LISTENER, ROUTE
from xds_server.config import ConfigError, parse_config
from xds_server.nodes import NodeInfo
from xds_server.runtime import XdsServerApp

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def listener(route: str = "main", *, filters: tuple[str, ...] = ("hdr",)) -> dict[str, Any]:
    return {
        "name": "web",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": HCM, "stat_prefix": "in", "rds": {"route_config_name": route},
            "http_filters": [*({"name": f} for f in filters),
                             {"name": "router", "typed_config": {"@type": ROUTER}}]}}]}],
    }


def route(cluster: str = "backend") -> dict[str, Any]:
    return {"name": "main", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"name": "api", "match": {"prefix": "/api/"}, "route": {"cluster": cluster}}]}]}


def cluster(name: str = "backend") -> dict[str, Any]:
    return {"name": name, "type": "EDS", "connect_timeout": "1s"}


def endpoints(name: str = "backend", port: int = 8080) -> dict[str, Any]:
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}


def document(tmp_path: Path, **resources: Any) -> dict[str, Any]:
    module = tmp_path / "hdr.wasm"
    module.write_bytes(header_filter("x-wasm-filter", "A"))
    return {
        "server": {"xds_address": "127.0.0.1:0", "admin_address": "127.0.0.1:0",
                   "data_dir": str(tmp_path / "data"), "watch_config": False},
        "filters": [{"name": "hdr", "source": {"file": str(module)}}],
        "resources": resources or {"listeners": [listener()], "routes": [route()],
                                   "clusters": [cluster()], "endpoints": [endpoints()]},
    }


def error_of(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, where="cfg.yaml")
    return str(info.value)


def test_resources_parse_into_envoy_messages(tmp_path: Path) -> None:
    cfg = parse_config(document(tmp_path), where="cfg.yaml")
    kinds = sorted((s.kind, s.name, type(s.message).__name__) for s in cfg.resources)
    assert kinds == [("clusters", "backend", "Cluster"), ("endpoints", "backend", "ClusterLoadAssignment"),
                     ("listeners", "web", "Listener"), ("routes", "main", "RouteConfiguration")]


def test_errors_name_the_field_as_envoy_would(tmp_path: Path) -> None:
    doc = document(tmp_path)
    bad = copy.deepcopy(doc)
    bad["resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["stat_prefx"] = "x"
    message = error_of(bad)
    assert message.startswith("cfg.yaml: resources.listeners[0]: ")
    assert 'no field named "stat_prefx" at "Listener.filter_chains[0].filters[0].typed_config"' in message
    bad = copy.deepcopy(doc)
    bad["resources"]["clusters"][0]["connect_timeout"] = "soon"
    assert "resources.clusters[0]" in error_of(bad) and "connect_timeout" in error_of(bad)
    bad = copy.deepcopy(doc)
    bad["resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["@type"] = \
        "type.googleapis.com/envoy.nothing.v3.Nothing"
    assert "envoy.nothing.v3.Nothing" in error_of(bad)
    bad = copy.deepcopy(doc)
    del bad["resources"]["endpoints"][0]["cluster_name"]
    assert "resources.endpoints[0].cluster_name: is required" in error_of(bad)
    bad = copy.deepcopy(doc)
    bad["resources"]["gateways"] = []
    assert "resources.gateways: unknown field" in error_of(bad)


def test_inconsistent_sets_are_refused(tmp_path: Path) -> None:
    """go-control-plane's Consistent(): every reference exists in the same set."""
    doc = document(tmp_path, listeners=[listener("missing")], routes=[route()],
                   clusters=[cluster()], endpoints=[endpoints()])
    assert "listener 'web' refers to route configuration 'missing', which does not exist" in error_of(doc)
    doc = document(tmp_path, listeners=[listener()], routes=[route("nowhere")],
                   clusters=[cluster()], endpoints=[endpoints()])
    assert "route configuration 'main' routes to cluster 'nowhere'" in error_of(doc)
    doc = document(tmp_path, clusters=[cluster()])
    assert "cluster 'backend' takes its endpoints from 'backend' (EDS), which does not exist" in error_of(doc)
    doc = document(tmp_path, listeners=[listener(filters=("nope",))], routes=[route()],
                   clusters=[cluster()], endpoints=[endpoints()])
    assert "http filter 'nope' has neither typed_config nor config_discovery" in error_of(doc)


async def api(app: XdsServerApp, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{app.admin_port}/api/v1/resources/{path}",
            data=None if body is None else json.dumps(body)) as resp:
        return resp.status, await resp.json()


def served_listener(app: XdsServerApp) -> Any:
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

    r = app.cache.resolve(LISTENER.type_url, "web", NodeInfo(id="n"))
    assert r is not None
    msg = listener_pb2.Listener.FromString(r.body)
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    msg.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


async def test_api_lifecycle_history_rollback_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document(tmp_path)))
    async with running_server(path) as app:
        hcm = served_listener(app)
        # The wasm filter named in the listener gets its ECDS config_discovery; RDS gets ADS.
        assert hcm.http_filters[0].config_discovery.config_source.HasField("ads")
        assert list(hcm.http_filters[0].config_discovery.type_urls) == [
            "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]
        assert hcm.rds.config_source.HasField("ads")
        code, view = await api(app, "GET", "routes/main")
        assert code == 200 and view["specs"] == [route()] and view["revision"] == 1
        # A route to a cluster that does not exist: refused, nothing changes.
        from prometheus_client import REGISTRY

        labels = {"kind": "routes", "action": "deploy", "result": "inconsistent"}
        before = REGISTRY.get_sample_value("xds_server_resource_changes_total", labels) or 0.0
        code, err = await api(app, "PUT", "routes/main", route("other"))
        assert code == 409 and "routes to cluster 'other', which does not exist" in err["error"]["message"]
        assert REGISTRY.get_sample_value("xds_server_resource_changes_total", labels) == before + 1
        # In dependency order it works: endpoints, cluster, then the route.
        assert (await api(app, "PUT", "endpoints/other", endpoints("other", 9090)))[0] == 201
        assert (await api(app, "PUT", "clusters/other", cluster("other")))[0] == 201
        code, view = await api(app, "PUT", "routes/main", route("other"))
        assert code == 200 and view["revision"] == 2
        # A cluster in use cannot go; one no longer used can.
        code, err = await api(app, "DELETE", "clusters/other")
        assert code == 409 and "routes to cluster 'other'" in err["error"]["message"]
        code, view = await api(app, "POST", "routes/main/rollback", {})
        assert code == 200 and view["revision"] == 3 and view["specs"] == [route()]
        code, deleted = await api(app, "DELETE", "clusters/other")
        assert code == 200 and deleted["revision"] == 2
        assert app.cache.resolve(CLUSTER.type_url, "other", NodeInfo(id="n")) is None
        code, hist = await api(app, "GET", "routes/main/history")
        assert [h["action"] for h in hist["history"]] == ["rollback", "deploy", "config"]
        assert (await api(app, "GET", "gateways/x"))[0] == 404
        assert (await api(app, "GET", "routes/none"))[0] == 404
        code, err = await api(app, "PUT", "routes/main", {"name": "main", "virtual_hostz": []})
        assert code == 400 and 'no field named "virtual_hostz"' in err["error"]["message"]
        code, _ = await api(app, "PUT", "routes/main", route("other"))
        assert code == 409  # the cluster was deleted
        version = app.cache.resolve(ROUTE.type_url, "main", NodeInfo(id="n"))
        assert version is not None
        # A wasm filter a listener names is not deleted before the listener stops naming it.
        async with aiohttp.ClientSession() as http, \
                http.delete(f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr") as resp:
            assert resp.status == 409
            assert "in use: listener 'web' names it" in (await resp.json())["error"]["message"]
        # What GET answers can be PUT back; its revision is a precondition.
        code, view = await api(app, "GET", "clusters/backend")
        view["specs"][0]["connect_timeout"] = "2s"
        assert (await api(app, "PUT", "clusters/backend", view))[0] == 200
        view["specs"][0]["connect_timeout"] = "3s"
        code, err = await api(app, "PUT", "clusters/backend", view)  # stale revision
        assert code == 409 and "is at revision 2, not 1" in err["error"]["message"]
        # A change through the API survives a restart with the same config file.
        code, view = await api(app, "PUT", "endpoints/backend", endpoints("backend", 8181))
        assert code == 200
    async with running_server(path) as app2:
        code, view = await api(app2, "GET", "endpoints/backend")
        assert view["specs"] == [endpoints("backend", 8181)] and view["revision"] == 2
        r = app2.cache.resolve(ROUTE.type_url, "main", NodeInfo(id="n"))
        assert r is not None and r.version == version.version


async def test_selectors_serve_variants_per_node(tmp_path: Path) -> None:
    doc = document(tmp_path)
    edge = endpoints("backend", 7070)
    edge["selector"] = {"node_id": "edge-*"}
    doc["resources"]["endpoints"] = [edge, {**endpoints("backend", 8080), "selector": {"node_id": "core-*"}}]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    async with running_server(path) as app:
        from envoy.config.endpoint.v3 import endpoint_pb2

        def port(node: str) -> int | None:
            r = app.cache.resolve("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
                                  "backend", NodeInfo(id=node))
            if r is None:
                return None
            cla = endpoint_pb2.ClusterLoadAssignment.FromString(r.body)
            return int(cla.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value)

        assert (port("edge-1"), port("core-1"), port("other")) == (7070, 8080, None)
    doc["resources"]["endpoints"][1]["selector"] = {"node_id": "*"}
    assert "overlaps resources.endpoints[0].selector" in error_of(doc)


async def test_cli_apply_takes_filters_and_resources(tmp_path: Path) -> None:
    doc = document(tmp_path, endpoints=[endpoints()], clusters=[cluster()])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**doc, "resources": {}}))
    async with running_server(path) as app:
        apply = tmp_path / "apply.yaml"
        apply.write_text(yaml.safe_dump({
            "filters": doc["filters"],
            "resources": {"listeners": [listener()], "routes": [route()],
                          "clusters": [cluster()], "endpoints": [endpoints()]},
        }))
        result = await xs("apply", "-f", str(apply), "--server", f"http://127.0.0.1:{app.admin_port}")
        lines = result.out.splitlines()
        assert [line.split(":")[0] for line in lines[1:]] == [
            "endpoints/backend", "clusters/backend", "routes/main", "listeners/web"]
        assert app.resources.view("listeners", "web")["revision"] == 1


async def test_bootstrap_full_holds_only_node_and_xds_cluster(tmp_path: Path) -> None:
    boot = build_bootstrap(BootstrapOptions(node_id="n1", filters=(), full=True, delta=True,
                                            module_server=None, metadata={"role": "edge"}))
    assert [c["name"] for c in boot["static_resources"]["clusters"]] == ["xds_server"]
    assert "listeners" not in boot["static_resources"]
    assert boot["node"] == {"id": "n1", "cluster": "xds-server-fleet", "metadata": {"role": "edge"}}
    dyn = boot["dynamic_resources"]
    assert dyn["ads_config"]["api_type"] == "DELTA_GRPC"
    assert dyn["lds_config"]["ads"] == {} and dyn["cds_config"]["ads"] == {}
    await validate_bootstrap(yaml.safe_dump(boot), tmp_path)
    with pytest.raises(ValueError, match="--filter has no effect"):
        build_bootstrap(BootstrapOptions(node_id="n1", filters=("hdr",), full=True))
    result = await xs("bootstrap", "--full", "--node-id", "n2")
    assert yaml.safe_load(result.out)["node"]["id"] == "n2"


async def test_removal_follows_the_update_of_its_users(tmp_path: Path) -> None:
    """A config change that moves the route to another cluster and removes the old one:
    the route (and the new cluster) are served first, the old cluster after."""
    from tests.fixtures.envoy import wait_for

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document(tmp_path)))
    async with running_server(path) as app:
        app.resources.removal_delay = 0.5
        doc = document(tmp_path, listeners=[listener()], routes=[route("other")],
                       clusters=[cluster("other")], endpoints=[endpoints("other")])
        path.write_text(yaml.safe_dump(doc))
        assert await app.reload()
        node = NodeInfo(id="n")
        assert app.cache.resolve(CLUSTER.type_url, "other", node) is not None
        assert app.cache.resolve(CLUSTER.type_url, "backend", node) is not None  # not yet
        assert app.resources.view("routes", "main")["specs"] == [route("other")]
        await wait_for(lambda: app.cache.resolve(CLUSTER.type_url, "backend", node) is None, 5,
                       what="the old cluster removed")
        code, _ = await api(app, "GET", "clusters/backend")
        assert code == 404


async def test_replicas_record_resources_once_and_follow_each_other(
        tmp_path: Path, fresh_database: str) -> None:
    """Replicas on one PostgreSQL database started together record the config's
    resources once; a change through one replica is served by the other."""
    import asyncio
    from contextlib import AsyncExitStack

    from tests.fixtures.envoy import wait_for
    from tests.test_replicas import Replica, call

    doc = document(tmp_path)
    async with AsyncExitStack() as stack:
        replicas = [Replica(f"r{i}", tmp_path, fresh_database, doc["filters"]) for i in range(2)]
        for r in replicas:
            config = yaml.safe_load(r.config.read_text())
            config["resources"] = doc["resources"]
            r.config.write_text(yaml.safe_dump(config))
            stack.push_async_callback(r.stop)
        await asyncio.gather(*(r.start() for r in replicas))
        for r in replicas:
            history = (await call("GET", f"{r.api}/resources/listeners/web/history"))["history"]
            assert [h["action"] for h in history] == ["config"], (r.name, history)
        await call("PUT", f"{replicas[0].api}/resources/endpoints/backend", endpoints("backend", 9999))

        async def followed() -> bool:
            view = await call("GET", f"{replicas[1].api}/resources/endpoints/backend")
            return bool(view["specs"] == [endpoints("backend", 9999)] and view["revision"] == 2)

        await wait_for(followed, 15, what="the other replica serving the change")


def test_route_rules_become_filter_configs_and_instances(tmp_path: Path) -> None:
    """The served form: `disabled` rules and per-route configurations, on RDS route
    configurations and on a listener's inline `route_config` alike."""
    from envoy.config.route.v3 import route_components_pb2

    from xds_server.resources import RouteRule, WasmFilterRef, route_instance, serve_all

    inline = listener()
    hcm = inline["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["rds"]
    hcm["route_config"] = {"name": "inline", "virtual_hosts": [{"name": "api-vh", "domains": ["*"], "routes": [
        {"name": "v2-users", "match": {"prefix": "/"}, "route": {"cluster": "backend"}}]}]}
    doc = document(tmp_path, listeners=[inline], clusters=[cluster()], endpoints=[endpoints()])
    rules = (RouteRule(route="health*", disabled=True),
             RouteRule(virtual_host="api*", route="v2-*", configuration="v2"))
    served = serve_all(parse_config(doc, where="t").resources, {"hdr": WasmFilterRef("http", rules)})
    (_, message, refs), = served[("listeners", "web")]
    assert refs.filters == {"hdr"} and not refs.problems
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2

    out = http_connection_manager_pb2.HttpConnectionManager()
    message.filter_chains[0].filters[0].typed_config.Unpack(out)
    instance = route_instance("hdr", "v2")
    assert [f.name for f in out.http_filters] == ["hdr", instance, "router"]
    assert out.http_filters[1].HasField("config_discovery") and not out.http_filters[1].disabled

    def disabled(route: Any) -> dict[str, bool]:
        result = {}
        for name, any_msg in route.typed_per_filter_config.items():
            fc = route_components_pb2.FilterConfig()
            assert any_msg.Unpack(fc)
            result[name] = fc.disabled
        return result

    # The matching route runs the instance (the filter is off); no other route runs it.
    assert disabled(out.route_config.virtual_hosts[0].routes[0]) == {"hdr": True}
    rds = route()
    rds["virtual_hosts"][0]["routes"].append(
        {"name": "health-z", "match": {"prefix": "/h"}, "route": {"cluster": "backend"}})
    doc = document(tmp_path, listeners=[listener()], routes=[rds], clusters=[cluster()], endpoints=[endpoints()])
    served = serve_all(parse_config(doc, where="t").resources, {"hdr": WasmFilterRef("http", rules)})
    (_, rc, _), = served[("routes", "main")]
    api_route, health = rc.virtual_hosts[0].routes
    assert disabled(api_route) == {instance: True}
    assert disabled(health) == {"hdr": True, instance: True}


async def test_check_config_names_the_resource_field(tmp_path: Path) -> None:
    doc = document(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert "(1 filters, 4 resources)" in (await xs("check-config", str(path))).out
    doc["resources"]["routes"][0]["virtual_hosts"][0]["routes"][0]["route"]["clustr"] = "x"
    path.write_text(yaml.safe_dump(doc))
    result = await xs("check-config", str(path), ok=False)
    assert result.code == 1
    assert f"{path}: resources.routes[0]: " in result.err and '"clustr"' in result.err


def test_network_wasm_filter_by_name_gets_ecds() -> None:
    from xds_server.resources import KINDS, WasmFilterRef, parse_resource, serve_all

    tcp = parse_resource(KINDS["listeners"], {
        "name": "tcp", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10001}},
        "filter_chains": [{"filters": [
            {"name": "counter"},
            {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "tcp", "cluster": "backend"}}]}]}, where="t", path="l")
    (_, message, refs), = serve_all([tcp], {"counter": WasmFilterRef("network")})[("listeners", "tcp")]
    first = message.filter_chains[0].filters[0]
    assert list(first.config_discovery.type_urls) == [
        "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"]
    assert refs.filters == {"counter"} and not refs.problems and refs.clusters == {"backend"}
    (_, _, refs), = serve_all([tcp], {"counter": WasmFilterRef("http")})[("listeners", "tcp")]
    assert refs.problems == ["network filter 'counter' names a http wasm filter"]


def test_specs_of_one_filter_share_their_route_rules(tmp_path: Path) -> None:
    doc = document(tmp_path)
    first = {**doc["filters"][0], "selector": {"node_id": "a-*"},
             "routes": [{"route": "x", "disabled": True}]}
    second = {**doc["filters"][0], "selector": {"node_id": "b-*"}}
    doc["filters"] = [first, second]
    assert "filters[1].routes: differs from filters[0].routes for filter 'hdr'" in error_of(doc)
    second["routes"] = [{"route": "x", "disabled": True}]
    assert len(parse_config(doc, where="t").filters) == 2
    second["routes"] = [{"route": "x", "disabled": True, "configuration": "c"}]
    assert "filters[1].routes[0]: needs exactly one of disabled: true or configuration" in error_of(doc)
