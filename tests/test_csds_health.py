"""CSDS, gRPC health and reflection on the xDS port, against a real Envoy.

CSDS must say what GET /api/v1/proxies says (after an ACK and after a NACK); health is
SERVING only while every filter has a module, and NOT_SERVING once shutdown begins;
reflection lists every service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import failing_filter, header_filter
from xds_server.admin._csds import MatcherError, node_matches
from xds_server.config import parse_filter_spec
from xds_server.nodes import NodeInfo

pytestmark = pytest.mark.envoy

STATE_MAP = {  # ours -> (config_status, client_status), as documented in _csds.py
    "ACKED": ("SYNCED", "ACKED"),
    "NACKED": ("ERROR", "NACKED"),
    "REQUESTED": ("NOT_SENT", "REQUESTED"),
    "STALE": ("STALE", "UNKNOWN"),
}


async def http_proxies(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/api/v1/proxies") as r:
        assert r.status == 200
        return {p["node_id"]: p for p in (await r.json())["proxies"]}


def assert_agree(csds: Any, http: dict[str, Any]) -> None:
    """Every proxy and resource of the HTTP view appears in CSDS with the same facts."""
    by_node = {c.node.id: c for c in csds.config}
    assert set(by_node) == set(http)
    for node_id, p in http.items():
        cfg = by_node[node_id]
        assert cfg.node.cluster == p["cluster"]
        gens = {g.name: g for g in cfg.generic_xds_configs}
        assert set(gens) == set(p["resources"])
        for name, r in p["resources"].items():
            g = gens[name]
            assert g.type_url == r["type_url"]
            assert g.version_info == r["version_sent"]
            config_status, client_status = STATE_MAP[r["state"]]
            assert csds_pb2.ConfigStatus.Name(g.config_status) == config_status
            assert config_dump_shared_pb2.ClientResourceStatus.Name(g.client_status) == client_status
            if r["state"] == "NACKED":
                nack = r["last_nack"]
                assert g.error_state.details == nack["message"]
                assert g.error_state.version_info == nack["version"]
                assert abs(g.error_state.last_update_attempt.ToNanoseconds() / 1e9 - nack["at"]) < 1e-3
            else:
                assert not g.HasField("error_state")
            if r["state"] == "ACKED":
                assert abs(g.last_updated.ToNanoseconds() / 1e9 - r["acked_at"]) < 1e-3


def typed_config(any_msg: Any) -> Any:
    tec = extension_pb2.TypedExtensionConfig()
    assert any_msg.Unpack(tec)
    return tec


def sm(**kw: Any) -> Any:
    return string_pb2.StringMatcher(**kw)


async def test_csds_agrees_with_http_after_ack_and_nack(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.wasm", tmp_path / "bad.wasm"
    good.write_bytes(header_filter("x-wasm-filter", "A"))
    bad.write_bytes(failing_filter())
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(good)}}])
    port = free_port()
    async with running_server(cfg) as app:
        boot = server_bootstrap(app, node_id="edge-e1", cluster="ca", filters=["hdr"],
                                listen_port=port, metadata={"role": "edge"})
        async with EnvoyProcess(boot, tmp_path) as _envoy, \
                grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
            csds: Any = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-wasm-filter", "A")
            version_a = app.controller.filters["hdr"].versions[0]

            async def acked() -> bool | None:
                p = app.status.proxies.get("edge-e1")
                return True if p and p.resources["hdr"].acked == version_a else None

            await wait_for(acked, 10, what="ACK of A")
            answer = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest())
            assert_agree(answer, await http_proxies(app.admin_port))
            (g,) = answer.config[0].generic_xds_configs
            assert g.version_info == version_a
            assert typed_config(g.xds_config).name == "hdr"
            assert answer.config[0].node.metadata.fields["role"].string_value == "edge"
            excluded = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest(exclude_resource_contents=True))
            assert not excluded.config[0].generic_xds_configs[0].HasField("xds_config")

            # Node matchers: OR across matchers, AND within one.
            matching = [
                node_pb2.NodeMatcher(node_id=sm(exact="edge-e1")),
                node_pb2.NodeMatcher(node_id=sm(prefix="EDGE-", ignore_case=True)),
                node_pb2.NodeMatcher(node_id=sm(suffix="-e1")),
                node_pb2.NodeMatcher(node_id=sm(contains="ge-e")),
                node_pb2.NodeMatcher(node_id=sm(safe_regex={"regex": r"edge-e\d"})),
            ]
            not_matching = [
                node_pb2.NodeMatcher(node_id=sm(exact="edge")),
                node_pb2.NodeMatcher(node_id=sm(safe_regex={"regex": "edge"})),  # full match only
                node_pb2.NodeMatcher(node_id=sm(prefix="edge"), node_metadatas=[
                    {"path": [{"key": "role"}], "value": {"string_match": {"exact": "core"}}}]),
            ]
            for m in matching:
                r = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest(node_matchers=[m]))
                assert [c.node.id for c in r.config] == ["edge-e1"], m
            for m in not_matching:
                r = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest(node_matchers=[m]))
                assert list(r.config) == [], m
            either = not_matching[:1] + matching[:1]
            r = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest(node_matchers=either))
            assert len(r.config) == 1
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await csds.FetchClientStatus(csds_pb2.ClientStatusRequest(
                    node_matchers=[node_pb2.NodeMatcher(node_id=sm(safe_regex={"regex": "("}))]))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            # A module Envoy refuses: NACKED with Envoy's message, in both views.
            await app.controller.deploy("hdr", [parse_filter_spec(
                {"name": "hdr", "source": {"file": str(bad)}}, where="test")], author="test")
            version_bad = app.controller.filters["hdr"].versions[0]

            async def nacked() -> bool | None:
                r = app.status.proxies["edge-e1"].resources["hdr"]
                return True if r.state == "NACKED" else None

            await wait_for(nacked, 10, what="NACK")
            answer = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest())
            assert_agree(answer, await http_proxies(app.admin_port))
            (g,) = answer.config[0].generic_xds_configs
            assert g.version_info == version_bad
            assert "Unable to create Wasm plugin hdr" in g.error_state.details
            assert typed_config(g.error_state.failed_configuration).name == "hdr"

            # The streaming form: one answer per request, on one stream.
            call = csds.StreamClientStatus()
            await call.write(csds_pb2.ClientStatusRequest())
            first = await call.read()
            await call.write(csds_pb2.ClientStatusRequest(node_matchers=not_matching[:1]))
            second = await call.read()
            await call.done_writing()
            assert [c.node.id for c in first.config] == ["edge-e1"] and list(second.config) == []
            assert_agree(first, await http_proxies(app.admin_port))


def test_metadata_matchers() -> None:
    node = NodeInfo(id="n1", metadata={"role": "edge", "zone": {"id": "a"}, "weight": 3, "on": True,
                                       "tags": ["x", "y"]})

    def meta(path: list[str], value: dict[str, Any]) -> Any:
        return node_pb2.NodeMatcher(node_metadatas=[{"path": [{"key": k} for k in path], "value": value}])

    assert node_matches(meta(["zone", "id"], {"string_match": {"exact": "a"}}), node)
    assert node_matches(meta(["weight"], {"double_match": {"range": {"start": 1, "end": 5}}}), node)
    assert node_matches(meta(["on"], {"bool_match": True}), node)
    assert node_matches(meta(["tags"], {"list_match": {"one_of": {"string_match": {"exact": "y"}}}}), node)
    assert node_matches(meta(["missing"], {"present_match": False}), node)
    assert not node_matches(meta(["missing"], {"string_match": {"exact": "a"}}), node)
    assert not node_matches(meta(["role"], {"string_match": {"exact": "core"}}), node)
    with pytest.raises(MatcherError):
        node_matches(node_pb2.NodeMatcher(node_id=sm(safe_regex={"regex": "["})), node)


async def _health(channel: Any, service: str = "") -> str:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    r = await stub.Check(health_pb2.HealthCheckRequest(service=service))
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))


async def test_health_follows_filter_readiness_and_shutdown(tmp_path: Path) -> None:
    good = tmp_path / "a.wasm"
    good.write_bytes(header_filter("x-wasm-filter", "A"))
    cfg = write_config(tmp_path / "config.yaml",
                       [{"name": "hdr", "source": {"file": str(tmp_path / "missing.wasm")}}])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        assert not app.controller.ready and app.controller.filters["hdr"].error
        services = ["", *app.xds.service_names, "envoy.service.status.v3.ClientStatusDiscoveryService",
                    "xds_server.admin.v1.AdminService"]
        for s in services:
            assert await _health(channel, s) == "NOT_SERVING", s
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _health(channel, "no.such.Service")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        stub: Any = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING

        await app.controller.deploy("hdr", [parse_filter_spec(
            {"name": "hdr", "source": {"file": str(good)}}, where="test")], author="test")
        assert (await asyncio.wait_for(watch.read(), 5)).status == health_pb2.HealthCheckResponse.SERVING
        for s in services:
            assert await _health(channel, s) == "SERVING", s

        stopping = asyncio.create_task(app.stop(grace=1.0))
        assert (await asyncio.wait_for(watch.read(), 5)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def reflection_request(channel: Any, request: Any) -> Any:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(request)
    answer = await call.read()
    await call.done_writing()
    return answer


async def test_reflection_lists_every_service(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", [])
    async with running_server(cfg) as app, \
            grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as channel:
        answer = await reflection_request(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in answer.list_services_response.service}
        assert names == {
            "envoy.service.extension.v3.ExtensionConfigDiscoveryService",
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            "envoy.service.listener.v3.ListenerDiscoveryService",   # standalone fleets
            "envoy.service.route.v3.RouteDiscoveryService",
            "envoy.service.cluster.v3.ClusterDiscoveryService",
            "envoy.service.endpoint.v3.EndpointDiscoveryService",
            "envoy.service.status.v3.ClientStatusDiscoveryService",
            "xds_server.admin.v1.AdminService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "opentelemetry.proto.collector.logs.v1.LogsService",      # telemetry from Envoy
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
        }
        # What grpcurl asks next: the file defining a service (for describe / invoke).
        for symbol in sorted(names):
            answer = await reflection_request(
                channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol))
            assert answer.WhichOneof("message_response") == "file_descriptor_response", symbol
            assert answer.file_descriptor_response.file_descriptor_proto, symbol
