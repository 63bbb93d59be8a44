"""Clients that stop reading: pushes to the others go on, and what the server holds for
the stalled ones is bounded by a count of responses, not by how long they stall.

Behaviour only (no timing assertions): the timeouts below only keep a broken server
from hanging the test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, wrappers_pb2

from xds_server.cache import ECDS, TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant
from xds_server.nodes import NodeSelector
from xds_server.xds import NullCallbacks, StreamInfo, StreamLimits, XdsService

METHOD = "/envoy.service.extension.v3.ExtensionConfigDiscoveryService/StreamExtensionConfigs"
PAYLOAD = 256 * 1024  # larger than HTTP/2 flow-control windows, so a stalled client blocks writes


def big(version: int) -> Resource:
    typed = any_pb2.Any()
    typed.Pack(wrappers_pb2.BytesValue(value=version.to_bytes(4, "big") * (PAYLOAD // 4)))
    return Resource.from_message("f", extension_pb2.TypedExtensionConfig(name="f", typed_config=typed))


class CountingCallbacks(NullCallbacks):
    def __init__(self) -> None:
        self.responses: Counter[str] = Counter()

    def on_response(self, stream: StreamInfo, type_url: str, nonce: str,
                    resources: Mapping[str, str], removed: Sequence[str]) -> None:
        assert stream.node is not None
        self.responses[stream.node.id] += 1


class StallingProxy:
    """A TCP relay in front of the server for one client; `stall()` stops reading what
    the server sends, as a frozen Envoy would: its socket buffers and HTTP/2 windows fill."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.stalled = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, stall: bool) -> None:
            try:
                while data := await src.read(65536):
                    if stall and self.stalled.is_set():
                        await asyncio.Event().wait()  # never read from the server again
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        for t in (pipe(reader, up_writer, False), pipe(up_reader, writer, True)):
            task = asyncio.create_task(t)
            self._tasks.add(task)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._server is not None:
            self._server.close()


class Client:
    """One Envoy-like client on its own connection (flow control is per connection)."""

    def __init__(self, target: str, node_id: str) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        self.node_id = node_id
        self.call: Any = self.channel.stream_stream(
            METHOD, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString)()

    async def subscribe(self) -> str:
        await self.call.write(discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=self.node_id), type_url=TYPED_EXTENSION_CONFIG, resource_names=["f"]))
        return await self.next_version()

    async def next_version(self) -> str:
        resp = await self.call.read()
        await self.call.write(discovery_pb2.DiscoveryRequest(
            type_url=TYPED_EXTENSION_CONFIG, resource_names=["f"],
            version_info=resp.version_info, response_nonce=resp.nonce))
        return str(resp.version_info)

    async def read_until(self, version: str) -> None:
        while await self.next_version() != version:
            pass

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


@pytest.fixture
async def served() -> AsyncIterator[tuple[ResourceCache, CountingCallbacks, str]]:
    cache = ResourceCache()
    callbacks = CountingCallbacks()
    service = XdsService(cache, types=[ECDS], callbacks=callbacks,
                         limits=StreamLimits(write_slots=2, slot_timeout=0.2))
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield cache, callbacks, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


def put(cache: ResourceCache, version: int) -> Resource:
    r = big(version)
    cache.set(TYPED_EXTENSION_CONFIG, "f", [Variant(NodeSelector(), r)])
    return r


async def test_stalled_clients_do_not_block_pushes_to_others(
    served: tuple[ResourceCache, CountingCallbacks, str],
) -> None:
    cache, callbacks, target = served
    put(cache, 0)
    fast = [Client(target, f"fast-{i}") for i in range(4)]
    proxies = [StallingProxy(int(target.rsplit(":", 1)[1])) for _ in range(4)]
    for p in proxies:
        await p.start()
    slow = [Client(f"127.0.0.1:{p.port}", f"slow-{i}") for i, p in enumerate(proxies)]
    try:
        for c in fast + slow:
            await asyncio.wait_for(c.subscribe(), 10)
        for p in proxies:  # more stalled connections than the 2 write slots
            p.stalled.set()
        pushes = 40  # 10 MiB per stalled stream if every push were queued for it
        for v in range(1, pushes + 1):
            r = put(cache, v)
            # Every reading client gets each new version although the slow ones hold
            # (or have held) every write slot.
            await asyncio.wait_for(
                asyncio.gather(*(c.read_until(r.version) for c in fast)), 10)
        for c in fast:
            assert callbacks.responses[c.node_id] == pushes + 1
        # A stalled client is behind: it was sent a bounded number of responses (one
        # stuck in flight, the rest coalesced), not one per push.
        for c in slow:
            assert callbacks.responses[c.node_id] < pushes // 2, callbacks.responses
    finally:
        for c in fast + slow:
            await c.close()
        for p in proxies:
            await p.close()


async def test_a_stalled_client_is_sent_a_bounded_number_of_responses(
    served: tuple[ResourceCache, CountingCallbacks, str],
) -> None:
    cache, callbacks, target = served
    put(cache, 0)
    proxy = StallingProxy(int(target.rsplit(":", 1)[1]))
    await proxy.start()
    client = Client(f"127.0.0.1:{proxy.port}", "sleepy")
    try:
        await asyncio.wait_for(client.subscribe(), 10)
        proxy.stalled.set()
        for v in range(1, 41):
            put(cache, v)
            await asyncio.sleep(0.01)
        assert callbacks.responses["sleepy"] < 20  # versions coalesced while it stalled
    finally:
        await client.close()
        await proxy.close()
