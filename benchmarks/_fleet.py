"""The simulated Envoy fleet: a load generator process holding many xDS clients.

Each client has its own `grpc.aio` channel (its own TCP connection: local subchannel
pool), opens one stream (ECDS SotW, ECDS delta, ADS SotW or ADS delta, round robin),
subscribes to a few filters, ACKs every response (or NACKs it with a message, for the
clients `cmd_nack` names) and counts arrivals: `reached[k]` is how many clients have
received their k-th response, `last[k]` when the latest did. Node ids are
`<node_prefix><index>`; with `clusters` > 1 client i is in cluster `c<i % clusters>`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from benchmarks._proc import now
from xds_server.cache import TYPED_EXTENSION_CONFIG

MODES = (
    ("/envoy.service.extension.v3.ExtensionConfigDiscoveryService/StreamExtensionConfigs", False),
    ("/envoy.service.extension.v3.ExtensionConfigDiscoveryService/DeltaExtensionConfigs", True),
    ("/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources", False),
    ("/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources", True),
)
MODE_NAMES = ("ecds-sotw", "ecds-delta", "ads-sotw", "ads-delta")

CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one connection per client
    ("grpc.max_receive_message_length", 64 * 2**20),
    ("grpc.enable_retries", 0),
]


def subscriptions(sub: dict[str, Any], idx: int) -> list[str]:
    """The filters client `idx` subscribes to: `fixed` names, or `spread` over many filters."""
    if sub["kind"] == "fixed":
        return list(sub["names"])
    filters, per = sub["filters"], sub["per"]
    stride = filters // per
    return [f"f{(idx + k * stride) % filters}" for k in range(per)]


class FleetWorker:
    def __init__(self) -> None:
        self.reached: Counter[int] = Counter()
        self.last: dict[int, float] = {}
        self.counts: dict[int, int] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.stall_every = 0
        self.errors: Counter[str] = Counter()
        self.nack_ids: frozenset[int] = frozenset()
        self.nack_message = ""
        self._forever: asyncio.Future[None] | None = None

    async def cmd_connect(self, target: str, n: int, offset: int, sub: dict[str, Any],
                          modes: list[int], batch: int = 200, node_prefix: str = "proxy-",
                          clusters: int = 1) -> float:
        """Start `n` clients (indices offset..offset+n-1); returns the start time."""
        t0 = now()
        cycle = itertools.cycle(modes)
        for i in range(n):
            idx = offset + i
            self.counts[idx] = 0
            node = base_pb2.Node(id=f"{node_prefix}{idx}", user_agent_name="envoy",
                                 cluster="bench" if clusters <= 1 else f"c{idx % clusters}")
            self.tasks.append(asyncio.create_task(
                self._client(target, idx, subscriptions(sub, idx), next(cycle), node)))
            if i % batch == batch - 1:
                await asyncio.sleep(0)
        return t0

    async def cmd_stats(self, k: int) -> dict[str, Any]:
        return {"n": self.reached[k], "last": self.last.get(k, 0.0),
                "errors": dict(self.errors.most_common(3)), "err_n": sum(self.errors.values())}

    async def cmd_counts(self) -> dict[int, int]:
        return dict(self.counts)

    async def cmd_stall(self, every: int) -> None:
        """Clients whose index is a multiple of `every` stop reading after their next response."""
        self.stall_every = every

    async def cmd_nack(self, ids: list[int], message: str) -> None:
        """Clients `ids` NACK every later response with `message` (code 13, as Envoy)."""
        self.nack_ids, self.nack_message = frozenset(ids), message

    async def _client(self, target: str, idx: int, names: list[str], mode: int,
                      node: Any) -> None:
        path, delta = MODES[mode]
        channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.channels.append(channel)
        call = channel.stream_stream(
            path, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=lambda b: b)()
        accepted = ""
        try:
            if delta:
                await call.write(discovery_pb2.DeltaDiscoveryRequest(
                    node=node, type_url=TYPED_EXTENSION_CONFIG, resource_names_subscribe=names))
            else:
                await call.write(discovery_pb2.DiscoveryRequest(
                    node=node, type_url=TYPED_EXTENSION_CONFIG, resource_names=names))
            count = 0
            while True:
                data = await call.read()
                if data is grpc.aio.EOF:
                    return
                t = now()
                count += 1
                self.counts[idx] = count
                self.reached[count] += 1
                self.last[count] = t
                if self.stall_every and idx % self.stall_every == 0:
                    if self._forever is None:
                        self._forever = asyncio.get_running_loop().create_future()
                    await asyncio.shield(self._forever)  # stop reading, keep the stream
                error = (status_pb2.Status(code=13, message=self.nack_message)
                         if idx in self.nack_ids else None)
                if delta:
                    dresp = discovery_pb2.DeltaDiscoveryResponse.FromString(data)
                    await call.write(discovery_pb2.DeltaDiscoveryRequest(
                        type_url=TYPED_EXTENSION_CONFIG, response_nonce=dresp.nonce, error_detail=error))
                else:
                    resp = discovery_pb2.DiscoveryResponse.FromString(data)
                    accepted = accepted if error is not None else resp.version_info
                    await call.write(discovery_pb2.DiscoveryRequest(
                        type_url=TYPED_EXTENSION_CONFIG, version_info=accepted,
                        response_nonce=resp.nonce, resource_names=names, error_detail=error))
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as exc:
            self.errors[f"{exc.code().name}: {exc.details()}"[:120]] += 1
        except Exception as exc:
            self.errors[repr(exc)[:120]] += 1

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)
        self.tasks.clear()
        self.channels.clear()

    async def cmd_close(self) -> None:
        await self.close()
