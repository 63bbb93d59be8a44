"""Protocol metrics belong to their tracker: each StatusTracker counts its own streams,
ACKs and NACKs; a Prometheus registry exports the sum of the live trackers registered
on it, and nothing is registered by importing `xds_server.status`.

Two xDS servers on real gRPC streams, each with its own tracker, on a fresh registry.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from envoy.config.core.v3 import extension_pb2
from google.protobuf import any_pb2, wrappers_pb2
from prometheus_client import CollectorRegistry

from tests.fixtures.envoy import wait_for
from tests.xds_client import XdsClient, ack, node, sotw_request
from xds_server.cache import ECDS, TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant
from xds_server.nodes import NodeSelector
from xds_server.status import StatusTracker
from xds_server.xds import XdsService


@asynccontextmanager
async def xds_server(status: StatusTracker) -> AsyncIterator[XdsClient]:
    cache = ResourceCache()
    typed = any_pb2.Any()
    typed.Pack(wrappers_pb2.StringValue(value="x"))
    resource = Resource.from_message("f1", extension_pb2.TypedExtensionConfig(name="f1", typed_config=typed))
    cache.set(TYPED_EXTENSION_CONFIG, "f1", [Variant(NodeSelector(), resource)])
    server = grpc.aio.server()
    XdsService(cache, types=[ECDS], callbacks=status).register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = XdsClient(f"127.0.0.1:{port}")
    try:
        yield client
    finally:
        await client.close()
        await server.stop(0)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_each_tracker_counts_its_own_and_the_registry_sums_them() -> None:
    registry = CollectorRegistry()
    trackers = {"a": StatusTracker(registry=registry), "b": StatusTracker(registry=registry)}
    a, b = trackers["a"], trackers["b"]
    unexported = StatusTracker(registry=None)
    async with xds_server(a) as client_a, xds_server(b) as client_b, xds_server(unexported) as client_c:
        s = client_a.sotw()
        await s.send(sotw_request(["f1"], node_msg=node("n1")))
        await s.send(ack(await s.recv(), ["f1"]))
        t = client_b.sotw()
        await t.send(sotw_request(["f1"], node_msg=node("n2")))
        resp = await t.recv()
        await t.send(sotw_request(["f1"], nonce=resp.nonce, error="refused"))
        u = client_c.sotw()
        await u.send(sotw_request(["f1"], node_msg=node("n3")))
        await u.send(ack(await u.recv(), ["f1"]))
        await wait_for(lambda: trackers["a"].stats.acks == 1 and trackers["b"].stats.nacks["f1"] == 1
                       and unexported.stats.acks == 1, 10, what="one ACK on a and c, one NACK on b")

        assert (a.stats.acks, a.stats.responses, dict(a.stats.nacks)) == (1, 1, {})
        assert (b.stats.acks, b.stats.responses, dict(b.stats.nacks)) == (0, 1, {"f1": 1})
        assert sample(registry, "xds_server_acks_total") == 1  # a's; not the unexported one's
        assert sample(registry, "xds_server_responses_total") == 2
        assert sample(registry, "xds_server_nacks_total", resource="f1") == 1
        assert sample(registry, "xds_server_streams", service="ecds", mode="sotw") == 2
        assert sample(registry, "xds_server_proxies_connected") == 2
        for stream in (s, t, u):
            stream.cancel()
        await wait_for(lambda: trackers["a"].stats.proxies == 0 and trackers["b"].stats.proxies == 0,
                       10, what="streams closed")
        assert sample(registry, "xds_server_streams", service="ecds", mode="sotw") == 0

    del a, b
    trackers.pop("a")
    gc.collect()
    assert sample(registry, "xds_server_acks_total") == 0  # a gone: only b's counters remain
    assert sample(registry, "xds_server_responses_total") == 1
