"""A small xDS client for protocol tests: real gRPC streams on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.extension.v3 import config_discovery_pb2_grpc
from google.rpc import status_pb2

from xds_server.cache import LISTENER, TYPED_EXTENSION_CONFIG


def node(node_id: str = "envoy-1", cluster: str = "c1", **metadata: str) -> Any:
    """An Envoy-like node message."""
    n = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="envoy")
    for k, v in metadata.items():
        n.metadata.fields[k].string_value = v
    return n


class Stream:
    """One client stream; responses are collected by a reader task into a queue."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self.done = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                await self.responses.put(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        except asyncio.CancelledError:
            pass
        finally:
            self.done.set()

    async def send(self, request: Any) -> None:
        await self.call.write(request)

    async def recv(self, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """The next response; fails the test if none comes within `timeout`."""
        try:
            return await asyncio.wait_for(self.responses.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no response within {timeout}s (error={self.error})") from None

    async def must_block(self, timeout: float = 0.3) -> None:  # noqa: ASYNC109
        """Assert that no response arrives within `timeout`."""
        await asyncio.sleep(timeout)
        assert self.responses.empty(), f"unexpected response: {self.responses.get_nowait()}"

    async def closed_with(self, timeout: float = 5.0) -> grpc.aio.AioRpcError:  # noqa: ASYNC109
        """Wait for the stream to end with an error status and return it."""
        await asyncio.wait_for(self.done.wait(), timeout)
        assert self.error is not None, "stream ended without an error status"
        return self.error

    def cancel(self) -> None:
        self.call.cancel()


class XdsClient:
    """Opens ECDS/ADS streams (SotW and delta) against a server at `address`."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.ecds = config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub(self.channel)
        self.ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    def sotw(self, *, ads: bool = False) -> Stream:
        call = self.ads.StreamAggregatedResources() if ads else self.ecds.StreamExtensionConfigs()
        return Stream(call)

    def delta(self, *, ads: bool = False) -> Stream:
        call = self.ads.DeltaAggregatedResources() if ads else self.ecds.DeltaExtensionConfigs()
        return Stream(call)

    def typed(self, service: str, method: str, *, delta: bool = False) -> Stream:
        """A stream on a type-specific service, e.g. `envoy.service.listener.v3.
        ListenerDiscoveryService` / `StreamListeners` (or `DeltaListeners`)."""
        response = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        call = self.channel.stream_stream(
            f"/{service}/{method}", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString)()
        return Stream(call)


def sotw_request(
    names: Iterable[str],
    *,
    version: str = "",
    nonce: str = "",
    error: str | None = None,
    node_msg: Any = None,
    type_url: str = TYPED_EXTENSION_CONFIG,
) -> Any:
    req = discovery_pb2.DiscoveryRequest(
        version_info=version, resource_names=list(names), type_url=type_url, response_nonce=nonce
    )
    if node_msg is not None:
        req.node.CopyFrom(node_msg)
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return req


def ack(response: Any, names: Iterable[str], **kw: Any) -> Any:
    """The ACK of a SotW `response`."""
    return sotw_request(names, version=response.version_info, nonce=response.nonce, **kw)


def delta_request(
    *,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    initial: Mapping[str, str] | None = None,
    nonce: str = "",
    error: str | None = None,
    node_msg: Any = None,
    type_url: str = TYPED_EXTENSION_CONFIG,
) -> Any:
    req = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        initial_resource_versions=dict(initial or {}),
        response_nonce=nonce,
    )
    if node_msg is not None:
        req.node.CopyFrom(node_msg)
    if error is not None:
        req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return req


def names_versions(response: Any) -> dict[str, str]:
    """name -> version of a SotW response (decoding the TypedExtensionConfigs)."""
    from envoy.config.core.v3 import extension_pb2

    out = {}
    for any_msg in response.resources:
        tec = extension_pb2.TypedExtensionConfig()
        any_msg.Unpack(tec)
        out[tec.name] = response.version_info
    return out


async def lds(client: XdsClient, node_id: str, *, cluster: str = "edge", nack: str | None = None) -> Stream:
    """Open an ADS stream as `node_id`, ask for every listener and ACK the answer (or
    NACK it with message `nack`); returns the open stream."""
    stream = client.sotw(ads=True)
    await stream.send(sotw_request([], node_msg=node(node_id, cluster), type_url=LISTENER.type_url))
    response = await stream.recv()
    if nack is None:
        await stream.send(ack(response, [], type_url=LISTENER.type_url))
    else:
        await stream.send(sotw_request([], nonce=response.nonce, error=nack, type_url=LISTENER.type_url))
    return stream
