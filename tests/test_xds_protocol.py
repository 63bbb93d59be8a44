"""xDS protocol behaviour over real gRPC streams (SotW and delta, ECDS and ADS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, wrappers_pb2

from tests.xds_client import (
    XdsClient,
    ack,
    delta_request,
    names_versions,
    node,
    sotw_request,
)
from xds_server.cache import TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant
from xds_server.nodes import NodeSelector
from xds_server.status import StatusTracker
from xds_server.xds import XdsService

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def tec(name: str, payload: str) -> Resource:
    typed = any_pb2.Any()
    typed.Pack(wrappers_pb2.StringValue(value=payload))
    return Resource.from_message(name, extension_pb2.TypedExtensionConfig(name=name, typed_config=typed))


def payload_of(any_msg: Any) -> tuple[str, str]:
    t = extension_pb2.TypedExtensionConfig()
    any_msg.Unpack(t)
    s = wrappers_pb2.StringValue()
    t.typed_config.Unpack(s)
    return t.name, s.value


@dataclass
class Harness:
    cache: ResourceCache
    service: XdsService
    status: StatusTracker
    client: XdsClient

    def put(self, name: str, payload: str, selector: NodeSelector | None = None) -> Resource:
        r = tec(name, payload)
        self.cache.set(TYPED_EXTENSION_CONFIG, name, [Variant(selector or NodeSelector(), r)])
        return r


@pytest.fixture
async def xds() -> AsyncIterator[Harness]:
    cache = ResourceCache()
    status = StatusTracker()
    service = XdsService(cache, types=[__import__("xds_server.cache").cache.ECDS], callbacks=status)
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = XdsClient(f"127.0.0.1:{port}")
    try:
        yield Harness(cache, service, status, client)
    finally:
        await client.close()
        await server.stop(0)


# -- SotW -----------------------------------------------------------------------------


@pytest.mark.parametrize("ads", [False, True], ids=["ecds", "ads"])
async def test_sotw_ack_is_silent_and_change_is_pushed(xds: Harness, ads: bool) -> None:
    r1 = xds.put("f1", "one")
    s = xds.client.sotw(ads=ads)
    await s.send(sotw_request(["f1"], node_msg=node()))
    resp = await s.recv()
    assert resp.version_info == r1.version
    assert resp.type_url == TYPED_EXTENSION_CONFIG
    assert [payload_of(a) for a in resp.resources] == [("f1", "one")]
    assert resp.nonce
    await s.send(ack(resp, ["f1"]))
    await s.must_block()
    r2 = xds.put("f1", "two")
    resp2 = await s.recv()
    assert resp2.version_info == r2.version != r1.version
    assert resp2.nonce != resp.nonce
    assert [payload_of(a) for a in resp2.resources] == [("f1", "two")]
    await s.send(ack(resp2, ["f1"]))
    await s.must_block()
    proxy = xds.status.proxies["envoy-1"]
    assert proxy.resources["f1"].acked == r2.version
    assert proxy.resources["f1"].state == "ACKED"
    s.cancel()


async def test_sotw_nack_does_not_resend(xds: Harness) -> None:
    xds.put("f1", "good")
    s = xds.client.sotw()
    await s.send(sotw_request(["f1"], node_msg=node()))
    good = await s.recv()
    await s.send(ack(good, ["f1"]))
    await s.must_block(0.1)
    bad = xds.put("f1", "bad")
    resp = await s.recv()
    assert resp.version_info == bad.version
    # Envoy NACKs: version_info stays the last accepted one.
    await s.send(sotw_request(["f1"], version=good.version_info, nonce=resp.nonce, error="boom"))
    await s.must_block(0.5)
    st = xds.status.proxies["envoy-1"].resources["f1"]
    assert st.state == "NACKED"
    assert st.last_nack is not None and st.last_nack.message == "boom"
    assert st.acked == good.version_info
    # A new version after the NACK is pushed.
    fixed = xds.put("f1", "fixed")
    resp3 = await s.recv()
    assert resp3.version_info == fixed.version
    s.cancel()


async def test_sotw_stale_nonce_is_ignored(xds: Harness) -> None:
    xds.put("f1", "one")
    s = xds.client.sotw()
    await s.send(sotw_request(["f1"], node_msg=node()))
    first = await s.recv()
    xds.put("f1", "two")
    second = await s.recv()
    # A late ACK of the first response, even with a subscription change, is stale.
    await s.send(sotw_request(["f1", "f2"], version=first.version_info, nonce=first.nonce))
    await s.must_block()
    assert xds.status.proxies["envoy-1"].resources["f1"].acked == ""
    await s.send(ack(second, ["f1"]))
    await s.must_block()
    assert xds.status.proxies["envoy-1"].resources["f1"].acked == second.version_info
    s.cancel()


async def test_sotw_subscription_change_is_answered(xds: Harness) -> None:
    r1 = xds.put("f1", "one")
    r2 = xds.put("f2", "two")
    s = xds.client.sotw()
    await s.send(sotw_request(["f1"], node_msg=node()))
    resp = await s.recv()
    await s.send(ack(resp, ["f1"]))
    await s.send(ack(resp, ["f1", "f2"]))
    resp2 = await s.recv()
    assert sorted(payload_of(a) for a in resp2.resources) == [("f1", "one"), ("f2", "two")]
    assert resp2.version_info not in ("", r1.version, r2.version)
    await s.send(ack(resp2, ["f1", "f2"]))
    await s.must_block()
    # A name that does not exist yet is answered once it appears.
    await s.send(ack(resp2, ["f1", "f2", "f3"]))
    await s.must_block()
    xds.put("f3", "three")
    resp3 = await s.recv()
    assert sorted(payload_of(a)[0] for a in resp3.resources) == ["f1", "f2", "f3"]
    s.cancel()


async def test_sotw_reconnect_with_current_version_resends_nothing(xds: Harness) -> None:
    r1 = xds.put("f1", "one")
    s = xds.client.sotw()
    await s.send(sotw_request(["f1"], version=r1.version, node_msg=node()))
    await s.must_block()
    # ... but a later change still arrives.
    r2 = xds.put("f1", "two")
    resp = await s.recv()
    assert resp.version_info == r2.version
    # A client with an older version gets the current one at once.
    s2 = xds.client.sotw()
    await s2.send(sotw_request(["f1"], version="old", node_msg=node("envoy-2")))
    assert (await s2.recv()).version_info == r2.version
    s.cancel()
    s2.cancel()


async def test_per_node_targeting(xds: Harness) -> None:
    staging = tec("f1", "staging")
    prod = tec("f1", "prod")
    xds.cache.set(TYPED_EXTENSION_CONFIG, "f1", [
        Variant(NodeSelector(cluster="staging-*"), staging),
        Variant(NodeSelector(metadata={"env": "prod"}), prod),
    ])
    a, b, c = xds.client.sotw(), xds.client.sotw(), xds.client.delta()
    await a.send(sotw_request(["f1"], node_msg=node("a", "staging-eu")))
    await b.send(sotw_request(["f1"], node_msg=node("b", "edge", env="prod")))
    await c.send(delta_request(subscribe=["f1"], node_msg=node("c", "other")))
    assert [payload_of(x) for x in (await a.recv()).resources] == [("f1", "staging")]
    assert [payload_of(x) for x in (await b.recv()).resources] == [("f1", "prod")]
    await c.must_block()  # no variant matches node c: nothing to send
    for s in (a, b, c):
        s.cancel()


async def test_sotw_unknown_type_url(xds: Harness) -> None:
    s = xds.client.sotw()
    await s.send(sotw_request(["x"], node_msg=node(), type_url=LISTENER_TYPE))
    err = await s.closed_with()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not served" in (err.details() or "")
    # ADS keeps the stream: other types on it still work.
    xds.put("f1", "one")
    a = xds.client.sotw(ads=True)
    await a.send(sotw_request(["x"], node_msg=node(), type_url="type.googleapis.com/foo.Bar"))
    await a.must_block()
    await a.send(sotw_request(["f1"]))
    assert [payload_of(x) for x in (await a.recv()).resources] == [("f1", "one")]
    a.cancel()


async def test_malformed_request_gets_invalid_argument(xds: Harness) -> None:
    call = xds.client.channel.stream_stream(
        "/envoy.service.extension.v3.ExtensionConfigDiscoveryService/StreamExtensionConfigs",
        request_serializer=lambda b: b,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    await call.write(b"\xff\xff\xff\xff")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in (info.value.details() or "")


async def test_client_vanishing_mid_stream_cleans_up(xds: Harness) -> None:
    xds.put("f1", "one")
    s = xds.client.sotw()
    await s.send(sotw_request(["f1"], node_msg=node()))
    await s.recv()
    assert xds.service.stream_count == 1
    assert xds.cache.watcher_count(TYPED_EXTENSION_CONFIG) == 1
    s.cancel()
    for _ in range(100):
        if xds.service.stream_count == 0:
            break
        await __import__("asyncio").sleep(0.02)
    assert xds.service.stream_count == 0
    assert xds.cache.watcher_count(TYPED_EXTENSION_CONFIG) == 0
    assert not xds.status.proxies["envoy-1"].connected
    # The server still serves new streams.
    s2 = xds.client.sotw()
    await s2.send(sotw_request(["f1"], node_msg=node()))
    await s2.recv()
    s2.cancel()


async def test_fetch_unary(xds: Harness) -> None:
    r = xds.put("f1", "one")
    resp = await xds.client.ecds.FetchExtensionConfigs(sotw_request(["f1"], node_msg=node()))
    assert resp.version_info == r.version
    assert names_versions(resp) == {"f1": r.version}


async def test_too_many_names_refused(xds: Harness) -> None:
    s = xds.client.sotw()
    await s.send(sotw_request([f"n{i}" for i in range(10_001)], node_msg=node()))
    err = await s.closed_with()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit" in (err.details() or "")


# -- delta ----------------------------------------------------------------------------


@pytest.mark.parametrize("ads", [False, True], ids=["ecds", "ads"])
async def test_delta_push_ack_and_removal(xds: Harness, ads: bool) -> None:
    r1 = xds.put("f1", "one")
    s = xds.client.delta(ads=ads)
    await s.send(delta_request(subscribe=["f1", "f2"], node_msg=node()))
    resp = await s.recv()
    assert [(r.name, r.version) for r in resp.resources] == [("f1", r1.version)]
    await s.send(delta_request(nonce=resp.nonce))
    await s.must_block()
    r2 = xds.put("f2", "two")
    resp = await s.recv()
    assert [(r.name, r.version) for r in resp.resources] == [("f2", r2.version)]
    await s.send(delta_request(nonce=resp.nonce))
    xds.cache.delete(TYPED_EXTENSION_CONFIG, "f1")
    resp = await s.recv()
    assert list(resp.removed_resources) == ["f1"] and not resp.resources
    await s.send(delta_request(nonce=resp.nonce))
    # Unsubscribing stops updates for that name.
    await s.send(delta_request(unsubscribe=["f2"]))
    await s.must_block(0.1)  # let the server apply the unsubscription
    xds.put("f2", "two-b")
    await s.must_block()
    s.cancel()


async def test_delta_reconnect_with_initial_versions(xds: Harness) -> None:
    r1 = xds.put("f1", "one")
    r2 = xds.put("f2", "two")
    s = xds.client.delta()
    await s.send(delta_request(subscribe=["f1", "f2"], node_msg=node(),
                               initial={"f1": r1.version, "f2": r2.version}))
    await s.must_block()
    s.cancel()
    s2 = xds.client.delta()
    await s2.send(delta_request(subscribe=["f1", "f2"], node_msg=node(),
                                initial={"f1": r1.version, "f2": "stale"}))
    resp = await s2.recv()
    assert [(r.name, r.version) for r in resp.resources] == [("f2", r2.version)]
    s2.cancel()


async def test_delta_nack_does_not_resend(xds: Harness) -> None:
    xds.put("f1", "one")
    s = xds.client.delta()
    await s.send(delta_request(subscribe=["f1"], node_msg=node()))
    resp = await s.recv()
    await s.send(delta_request(nonce=resp.nonce, error="Unable to create Wasm plugin f1"))
    await s.must_block(0.5)
    st = xds.status.proxies["envoy-1"].resources["f1"]
    assert st.state == "NACKED"
    assert "Unable to create" in (st.last_nack.message if st.last_nack else "")
    s.cancel()


async def test_delta_stale_nonce_still_applies_subscription(xds: Harness) -> None:
    xds.put("f1", "one")
    xds.put("f2", "two")
    s = xds.client.delta()
    await s.send(delta_request(subscribe=["f1"], node_msg=node()))
    resp = await s.recv()
    await s.send(delta_request(subscribe=["f2"], nonce="not-a-nonce"))
    resp2 = await s.recv()
    assert [r.name for r in resp2.resources] == ["f2"]
    assert xds.status.proxies["envoy-1"].resources["f1"].acked == ""
    assert resp.nonce != resp2.nonce
    s.cancel()


async def test_delta_unknown_type_url(xds: Harness) -> None:
    s = xds.client.delta()
    await s.send(delta_request(subscribe=["x"], node_msg=node(), type_url=LISTENER_TYPE))
    err = await s.closed_with()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


class SerializationCounter:
    """Counts protobuf serializations whose output carries a given marker string."""

    def __init__(self) -> None:
        self.marker = b""
        self.count = 0


@pytest.fixture
def serializations(monkeypatch: pytest.MonkeyPatch) -> SerializationCounter:
    """Wraps `SerializeToString` of every message type that can carry a resource (the
    resource itself, `Any`, both response types, delta's `Resource`), before the server is
    built, so handlers that captured the method are counted too."""
    counter = SerializationCounter()
    for cls in (extension_pb2.TypedExtensionConfig, wrappers_pb2.StringValue, any_pb2.Any,
                discovery_pb2.DiscoveryResponse, discovery_pb2.DeltaDiscoveryResponse,
                discovery_pb2.Resource):
        original = cls.SerializeToString

        def counting(self: Any, *args: Any, __original: Any = original, **kw: Any) -> bytes:
            data: bytes = __original(self, *args, **kw)
            if counter.marker and counter.marker in data:
                counter.count += 1
            return data

        monkeypatch.setattr(cls, "SerializeToString", counting)
    return counter


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_resource_serialized_once_for_many_streams(
    serializations: SerializationCounter, xds: Harness, delta: bool
) -> None:
    """A new version pushed to 20 subscribed streams is encoded when it enters the cache
    (at most once more during the fan-out), never once per stream."""
    xds.put("f1", "first")
    streams = [xds.client.delta() if delta else xds.client.sotw() for _ in range(20)]
    for i, s in enumerate(streams):
        await s.send(delta_request(subscribe=["f1"], node_msg=node(f"n{i}")) if delta
                     else sotw_request(["f1"], node_msg=node(f"n{i}")))
    for s in streams:
        first = await s.recv()
        await s.send(ack(first, ["f1"]) if not delta else delta_request(nonce=first.nonce))
    serializations.marker = b"pushed-to-all-twenty"
    r = xds.put("f1", "pushed-to-all-twenty")  # the cache encodes the new version here
    at_put = serializations.count
    for s in streams:
        resp = await s.recv()
        sent = resp.resources[0].resource.value if delta else resp.resources[0].value
        assert sent == r.body
    fan_out = serializations.count - at_put
    assert at_put >= 1 and fan_out <= 1, (
        f"pushing to {len(streams)} streams serialized the resource {fan_out} more times")
    for s in streams:
        s.cancel()


def test_cache_snapshot_shared_until_change_and_per_node_when_targeted() -> None:
    from xds_server.nodes import NodeInfo

    cache = ResourceCache()
    a = Resource.from_message("a", wrappers_pb2.StringValue(value="a1"))
    b = Resource.from_message("b", wrappers_pb2.StringValue(value="b1"))
    cache.set(TYPED_EXTENSION_CONFIG, "a", [Variant(NodeSelector(), a)])
    cache.set(TYPED_EXTENSION_CONFIG, "b", [Variant(NodeSelector(), b)])
    names = frozenset({"a", "b"})
    n1, n2 = NodeInfo(id="n1"), NodeInfo(id="n2")
    first = cache.snapshot(TYPED_EXTENSION_CONFIG, names, False, n1)
    assert [r.name for r in first.resources] == ["a", "b"]
    assert first.versions == {"a": a.version, "b": b.version}
    assert first.version_info.startswith("set-")
    assert cache.snapshot(TYPED_EXTENSION_CONFIG, names, False, n2) is first  # shared

    a2 = Resource.from_message("a", wrappers_pb2.StringValue(value="a2"))
    cache.set(TYPED_EXTENSION_CONFIG, "a", [Variant(NodeSelector(node_id="n1"), a2),
                                             Variant(NodeSelector(), a)])
    for_n1 = cache.snapshot(TYPED_EXTENSION_CONFIG, names, False, n1)
    for_n2 = cache.snapshot(TYPED_EXTENSION_CONFIG, names, False, n2)
    assert for_n1.versions["a"] == a2.version and for_n2.versions["a"] == a.version
    assert for_n1 is not first and for_n2 is not first
    # wildcard sees every name; a single resource's version_info is its own version
    assert cache.snapshot(TYPED_EXTENSION_CONFIG, frozenset(), True, n2).versions == first.versions
    assert cache.snapshot(TYPED_EXTENSION_CONFIG, frozenset({"b"}), False, n1).version_info == b.version


# -- listeners, routes, clusters, endpoints (standalone fleets) ------------------------


def _listener(name: str, port: int) -> Resource:
    from envoy.config.listener.v3 import listener_pb2

    msg = listener_pb2.Listener(name=name)
    msg.address.socket_address.address, msg.address.socket_address.port_value = "127.0.0.1", port
    return Resource.from_message(name, msg)


def _cluster(name: str) -> Resource:
    from envoy.config.cluster.v3 import cluster_pb2

    return Resource.from_message(name, cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS))


def _endpoints(name: str, port: int) -> Resource:
    from envoy.config.endpoint.v3 import endpoint_pb2

    msg = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    sa = msg.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
    sa.address, sa.port_value = "127.0.0.1", port
    return Resource.from_message(name, msg)


def _route(name: str, cluster: str) -> Resource:
    from envoy.config.route.v3 import route_pb2

    msg = route_pb2.RouteConfiguration(name=name)
    vh = msg.virtual_hosts.add(name="all", domains=["*"])
    r = vh.routes.add(name="r")
    r.match.prefix = "/"
    r.route.cluster = cluster
    return Resource.from_message(name, msg)


@pytest.fixture
async def full() -> AsyncIterator[Harness]:
    """A server for every type this server serves (LDS, RDS, CDS, EDS, ECDS)."""
    from xds_server.cache import default_types

    cache = ResourceCache()
    status = StatusTracker()
    service = XdsService(cache, types=default_types(), callbacks=status)
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = XdsClient(f"127.0.0.1:{port}")
    try:
        yield Harness(cache, service, status, client)
    finally:
        await client.close()
        await server.stop(0)


def _set(h: Harness, r: Resource) -> None:
    h.cache.set(r.type_url, r.name, [Variant(NodeSelector(), r)])


TYPED = {
    LISTENER_TYPE: ("envoy.service.listener.v3.ListenerDiscoveryService", "Listeners"),
    CLUSTER_TYPE: ("envoy.service.cluster.v3.ClusterDiscoveryService", "Clusters"),
    ROUTE_TYPE: ("envoy.service.route.v3.RouteDiscoveryService", "Routes"),
    ENDPOINT_TYPE: ("envoy.service.endpoint.v3.EndpointDiscoveryService", "Endpoints"),
}


def _stream(h: Harness, type_url: str, *, ads: bool, delta: bool) -> Any:
    if ads:
        return h.client.delta(ads=True) if delta else h.client.sotw(ads=True)
    service, what = TYPED[type_url]
    return h.client.typed(service, ("Delta" if delta else "Stream") + what, delta=delta)


@pytest.mark.parametrize("ads", [False, True], ids=["typed", "ads"])
@pytest.mark.parametrize("type_url", [LISTENER_TYPE, CLUSTER_TYPE])
async def test_sotw_full_state_types_carry_all_and_announce_removals(
        full: Harness, ads: bool, type_url: str) -> None:
    """LDS and CDS: a wildcard subscription gets every resource in each response; a
    removal is itself a response (without the removed one)."""
    make = (lambda n: _listener(n, 10000 + len(n))) if type_url == LISTENER_TYPE else _cluster
    a, b = make("a"), make("bb")
    _set(full, a)
    _set(full, b)
    s = _stream(full, type_url, ads=ads, delta=False)
    await s.send(sotw_request([], node_msg=node(), type_url=type_url))
    resp = await s.recv()
    assert resp.type_url == type_url and len(resp.resources) == 2
    await s.send(ack(resp, [], type_url=type_url))
    await s.must_block()
    full.cache.delete(type_url, "a")
    resp2 = await s.recv()
    assert [x.value for x in resp2.resources] == [b.body]
    assert resp2.version_info != resp.version_info
    await s.send(ack(resp2, [], type_url=type_url))
    await s.must_block()
    assert full.status.proxies["envoy-1"].resources[("listeners/bb" if type_url == LISTENER_TYPE
                                                     else "clusters/bb")].state == "ACKED"
    s.cancel()


@pytest.mark.parametrize("ads", [False, True], ids=["typed", "ads"])
@pytest.mark.parametrize("type_url", [ROUTE_TYPE, ENDPOINT_TYPE])
async def test_sotw_named_types_carry_subscribed_and_nack_keeps_last_good(
        full: Harness, ads: bool, type_url: str) -> None:
    """RDS and EDS: only the subscribed names; a NACKed version is not resent and the
    proxy's last good version is what it runs."""
    make = (lambda n, v: _route(n, f"c{v}")) if type_url == ROUTE_TYPE else _endpoints
    _set(full, make("x", 1))
    _set(full, make("other", 1))
    s = _stream(full, type_url, ads=ads, delta=False)
    await s.send(sotw_request(["x"], node_msg=node(), type_url=type_url))
    good = await s.recv()
    assert len(good.resources) == 1 and good.resources[0].value == make("x", 1).body
    await s.send(ack(good, ["x"], type_url=type_url))
    await s.must_block()
    _set(full, make("x", 2))
    bad = await s.recv()
    await s.send(sotw_request(["x"], version=good.version_info, nonce=bad.nonce, error="refused",
                              type_url=type_url))
    await s.must_block(0.5)
    key = ("routes/x" if type_url == ROUTE_TYPE else "endpoints/x")
    st = full.status.proxies["envoy-1"].resources[key]
    assert st.state == "NACKED" and st.acked == good.version_info
    _set(full, make("other", 2))  # another name changing: nothing for this stream
    await s.must_block()
    s.cancel()


@pytest.mark.parametrize("ads", [False, True], ids=["typed", "ads"])
@pytest.mark.parametrize("type_url", [LISTENER_TYPE, CLUSTER_TYPE, ROUTE_TYPE, ENDPOINT_TYPE])
async def test_delta_new_types_push_and_remove(full: Harness, ads: bool, type_url: str) -> None:
    makers: dict[str, Callable[[str], Resource]] = {
        LISTENER_TYPE: lambda n: _listener(n, 10001), CLUSTER_TYPE: _cluster,
        ROUTE_TYPE: lambda n: _route(n, "c"), ENDPOINT_TYPE: lambda n: _endpoints(n, 8080)}
    make = makers[type_url]
    r1 = make("one")
    _set(full, r1)
    s = _stream(full, type_url, ads=ads, delta=True)
    wildcard = type_url in (LISTENER_TYPE, CLUSTER_TYPE)
    await s.send(delta_request(subscribe=[] if wildcard else ["one"], node_msg=node(), type_url=type_url))
    resp = await s.recv()
    assert [(r.name, r.version) for r in resp.resources] == [("one", r1.version)]
    await s.send(delta_request(nonce=resp.nonce, type_url=type_url))
    await s.must_block()
    full.cache.delete(type_url, "one")
    resp = await s.recv()
    assert list(resp.removed_resources) == ["one"] and not resp.resources
    s.cancel()


async def test_ads_sends_types_in_warming_order(full: Harness) -> None:
    """Everything due at once on one ADS stream goes out as Envoy warms it: clusters,
    endpoints, listeners, route configurations, then wasm filters (go-control-plane's
    order), whatever order the cache changed in."""
    s = full.client.sotw(ads=True)
    subscriptions = [(TYPED_EXTENSION_CONFIG, ["f"]), (ROUTE_TYPE, ["r"]), (LISTENER_TYPE, []),
                     (ENDPOINT_TYPE, ["c"]), (CLUSTER_TYPE, [])]
    for type_url, names in subscriptions:
        await s.send(sotw_request(names, node_msg=node(), type_url=type_url))
    await s.must_block()  # nothing exists yet: nothing is sent
    full.put("f", "filter")
    _set(full, _route("r", "c"))
    _set(full, _listener("l", 10002))
    _set(full, _endpoints("c", 8080))
    _set(full, _cluster("c"))
    order = [(await s.recv()).type_url for _ in range(5)]
    assert order == [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPED_EXTENSION_CONFIG]
    s.cancel()


async def test_fetch_new_types(full: Harness) -> None:
    """The unary Fetch of a type-specific service serves the new types too."""
    _set(full, _cluster("c"))
    resp = await full.client.channel.unary_unary(
        "/envoy.service.cluster.v3.ClusterDiscoveryService/FetchClusters",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )(sotw_request([], node_msg=node(), type_url=CLUSTER_TYPE))
    assert resp.type_url == CLUSTER_TYPE and [r.value for r in resp.resources] == [_cluster("c").body]
