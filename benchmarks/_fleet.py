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
import time
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


LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def access_log_export(node_id: str, batch: int) -> bytes:
    """An OTLP logs export as Envoy's access logger with the `--telemetry` bootstrap
    sends it: resource attributes of the node, `batch` records with the compact body."""
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.logs.v1 import logs_pb2

    def kv(key: str, value: str) -> common_pb2.KeyValue:
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))

    body = common_pb2.AnyValue(string_value="\x1f".join([
        "xds1", "200", "2", "GET", "/api/items/42", "shop.example.com", "via_upstream", "-",
        "10.0.0.7:8080", "fs:wasm.debug=rule=allow;cache=miss"]))
    t = int(time.time() * 1e9)
    records = [logs_pb2.LogRecord(time_unix_nano=t + i, body=body) for i in range(batch)]
    res = logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
    res.resource.attributes.extend([kv("log_name", "xds-server"), kv("node_name", node_id),
                                    kv("cluster_name", "bench"), kv("zone_name", "")])
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[res]).SerializeToString()


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
        self.channel_of: dict[int, grpc.aio.Channel] = {}
        self.senders: list[asyncio.Task[None]] = []
        self.exported = 0

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
        self.channel_of[idx] = channel
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

    async def cmd_telemetry_start(self, batch: int = 20, interval: float = 0.0) -> None:
        """Every client sends OTLP access-log exports of `batch` entries on its own
        connection: back to back (closed loop, `interval` 0: as fast as the server
        absorbs), or one every `interval` seconds (Envoy flushes its buffer every
        `buffer_flush_interval`, 1 s in the generated bootstrap)."""
        self.exported = 0
        for idx, channel in self.channel_of.items():
            self.senders.append(asyncio.create_task(self._send_logs(channel, idx, batch, interval)))

    async def cmd_telemetry_stop(self) -> int:
        for t in self.senders:
            t.cancel()
        await asyncio.gather(*self.senders, return_exceptions=True)
        self.senders.clear()
        return self.exported

    async def _send_logs(self, channel: grpc.aio.Channel, idx: int, batch: int, interval: float) -> None:
        node_id = f"proxy-{idx}"
        data = access_log_export(node_id, batch)  # serialized once, like a fixed workload
        export = channel.unary_unary(LOGS_EXPORT, request_serializer=None, response_deserializer=None)
        metadata = (("x-xds-node-id", node_id),)
        try:
            if interval:
                await asyncio.sleep(interval * (idx % 97) / 97)  # spread, as real Envoys are
            while True:
                await export(data, metadata=metadata)
                self.exported += batch
                if interval:
                    await asyncio.sleep(interval)
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as exc:
            self.errors[f"telemetry {exc.code().name}: {exc.details()}"[:120]] += 1

    async def close(self) -> None:
        await self.cmd_telemetry_stop()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self.channels), return_exceptions=True)
        self.tasks.clear()
        self.channels.clear()

    async def cmd_close(self) -> None:
        await self.close()
