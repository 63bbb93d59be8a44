"""The two servers under test, each run in its own process (see `_proc.Worker`).

`XdsServerWorker`: the real protocol core (`XdsService` + `ResourceCache` +
`StatusTracker`, production gRPC options and JSON logging at info, written to
/dev/null; with `telemetry`, the OTLP receiver and its consumers). `BareServerWorker`: a
bare grpc.aio server on the same methods that writes the same pre-built bytes to every
stream with no logic (with `telemetry`, an OTLP logs sink that only counts): the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from benchmarks._proc import now
from benchmarks._resources import SMALL, make_resource
from xds_server.cache import ECDS, TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant, collection_version
from xds_server.nodes import NodeSelector
from xds_server.state import open_state_store
from xds_server.status import StatusTracker
from xds_server.telemetry import (
    LOGS_SERVICE,
    AckAttribution,
    HealthWindows,
    LogBuffer,
    RequestRecord,
    StatRecord,
    TelemetryHub,
    TelemetryReceiver,
)
from xds_server.xds import ADS_SERVICE, StreamInfo, StreamLimits, XdsService

ECDS_SERVICE = "envoy.service.extension.v3.ExtensionConfigDiscoveryService"


def _quiet_logging() -> None:
    from xds_server.log import configure_logging

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    configure_logging("info", "json")


def _options() -> list[tuple[str, Any]]:
    from xds_server.runtime import GRPC_OPTIONS

    return list(GRPC_OPTIONS)


class _Profiling:
    _profiler: Any = None

    async def cmd_profile_start(self) -> None:
        from pyinstrument import Profiler

        self._profiler = Profiler(interval=0.0005, async_mode="disabled")
        self._profiler.start()

    async def cmd_profile_stop(self) -> str:
        self._profiler.stop()
        text: str = self._profiler.output_text(unicode=False, color=False, show_all=False)
        self._profiler = None
        return text


class BenchTracker(StatusTracker):
    """The production status tracker, plus a count of ACKs of one (name, version)."""

    def __init__(self) -> None:
        super().__init__()
        self.target: tuple[str, str] = ("", "")
        self.acks = 0
        self.last_ack = 0.0

    def on_ack(self, stream: StreamInfo, type_url: str, nonce: str,
               resources: Mapping[str, str]) -> None:
        super().on_ack(stream, type_url, nonce, resources)
        name, version = self.target
        if resources.get(name) == version:
            self.acks += 1
            self.last_ack = now()


class _Count:
    """A telemetry consumer that counts access-log entries."""

    def __init__(self) -> None:
        self.records = 0

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        self.records += len(records)

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        pass


class TelemetryIngest:
    """The production telemetry path: OTLP receiver, ACK attribution, hub, the access-log
    buffer, health windows (flushed to a SQLite store) and a counting consumer. Every `f*`
    resource counts as a filter at revision 1 (the runtime asks the controller; the
    benchmark has none)."""

    def __init__(self, tracker: StatusTracker) -> None:
        self.hub = TelemetryHub()
        self.hub.subscribe(LogBuffer())
        self.count = _Count()
        self.hub.subscribe(self.count)
        self.dir = tempfile.TemporaryDirectory(prefix="xds-bench-")
        self.store = open_state_store(None, data_dir=Path(self.dir.name))
        self.health = HealthWindows(self.store, replica_id="bench")
        self.hub.subscribe(self.health)
        self.flusher: asyncio.Task[None] | None = None

        def lookup(name: str, version: str) -> tuple[int, bool] | None:
            return (1, False) if name.startswith("f") else None

        self.receiver = TelemetryReceiver(self.hub, AckAttribution(tracker, lookup))

    async def start(self) -> None:
        await self.store.open()
        self.flusher = asyncio.create_task(self.health.run())

    async def close(self) -> None:
        if self.flusher is not None:
            self.flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.flusher
        await self.health.close()
        await self.store.close()
        self.dir.cleanup()


class XdsServerWorker(_Profiling):
    def __init__(self) -> None:
        _quiet_logging()
        self.telemetry: TelemetryIngest | None = None
        self.cache = ResourceCache()
        self.tracker = BenchTracker()
        self.service: XdsService | None = None
        self.server: grpc.aio.Server | None = None

    async def cmd_start(self, write_slots: int | None = None, telemetry: bool = False) -> int:
        limits = StreamLimits() if write_slots is None else StreamLimits(write_slots=write_slots)
        self.service = XdsService(self.cache, types=[ECDS], callbacks=self.tracker, limits=limits)
        self.server = grpc.aio.server(options=_options())
        self.service.register(self.server)
        if telemetry:
            self.telemetry = TelemetryIngest(self.tracker)
            await self.telemetry.start()
            self.telemetry.receiver.register(self.server)
        port: int = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        if os.environ.get("BENCH_DEFAULT_GC") is None:
            from xds_server.runtime import tune_gc

            tune_gc()  # as `xds-server serve` does once started
        return port

    async def cmd_set(self, names: list[str], version: int, kind: str = SMALL) -> None:
        for name in names:
            self._put(make_resource(name, version, kind))

    def _put(self, r: Resource) -> None:
        self.cache.set(TYPED_EXTENSION_CONFIG, r.name, [Variant(NodeSelector(), r)])

    async def cmd_push(self, name: str, version: int, kind: str = SMALL) -> float:
        r = make_resource(name, version, kind)  # serialized once, before the clock starts
        self.tracker.target = (name, r.version)
        self.tracker.acks, self.tracker.last_ack = 0, 0.0
        t0 = now()
        self._put(r)
        return t0

    async def cmd_acks(self) -> dict[str, float]:
        return {"acks": self.tracker.acks, "last": self.tracker.last_ack}

    async def cmd_streams(self) -> int:
        return self.service.stream_count if self.service else 0

    async def cmd_telemetry_records(self) -> int:
        return self.telemetry.count.records if self.telemetry else 0

    async def close(self) -> None:
        if self.service is not None:
            self.service.begin_shutdown()
        if self.server is not None:
            await self.server.stop(0)
        if self.telemetry is not None:
            await self.telemetry.close()


class BareServerWorker(_Profiling):
    """Writes the current bytes to every stream; counts requests carrying the current nonce."""

    def __init__(self) -> None:
        self.server: grpc.aio.Server | None = None
        self.gen = 0
        self.changed = asyncio.Event()
        self.initial = {False: b"", True: b""}
        self.payload = {False: b"", True: b""}
        self.resources: dict[str, Resource] = {}
        self.acks = 0
        self.last_ack = 0.0
        self.sem: asyncio.Semaphore | None = None
        self.streams = 0
        self.telemetry_records = 0

    async def cmd_start(self, write_slots: int | None = None, telemetry: bool = False) -> int:
        self.sem = asyncio.Semaphore(write_slots) if write_slots else None
        self.server = grpc.aio.server(options=_options())
        if telemetry:
            self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                LOGS_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(
                    self._export, logs_service_pb2.ExportLogsServiceRequest.FromString,
                    lambda m: m.SerializeToString())}),))
        sotw = grpc.stream_stream_rpc_method_handler(
            self._handler(False), discovery_pb2.DiscoveryRequest.FromString, lambda b: b)
        delta = grpc.stream_stream_rpc_method_handler(
            self._handler(True), discovery_pb2.DeltaDiscoveryRequest.FromString, lambda b: b)
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(
                ECDS_SERVICE, {"StreamExtensionConfigs": sotw, "DeltaExtensionConfigs": delta}),
            grpc.method_handlers_generic_handler(
                ADS_SERVICE, {"StreamAggregatedResources": sotw, "DeltaAggregatedResources": delta}),
        ))
        port: int = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        if os.environ.get("BENCH_FLOOR_GC"):  # the floor with xds-server's GC settings
            from xds_server.runtime import tune_gc

            tune_gc()
        return port

    def _build(self, changed: Resource | None) -> None:
        nonce = str(self.gen)
        ordered = [self.resources[n] for n in sorted(self.resources)]
        version = collection_version({r.name: r.version for r in ordered})
        sotw = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=TYPED_EXTENSION_CONFIG, nonce=nonce).SerializeToString()
        sotw += b"".join(r.sotw_field for r in ordered)
        delta_head = discovery_pb2.DeltaDiscoveryResponse(
            type_url=TYPED_EXTENSION_CONFIG, nonce=nonce).SerializeToString()
        self.payload[False] = self.initial[False] = sotw
        self.initial[True] = delta_head + b"".join(r.delta_field for r in ordered)
        self.payload[True] = delta_head + (changed.delta_field if changed else b"")

    async def cmd_set(self, names: list[str], version: int, kind: str = SMALL) -> None:
        for name in names:
            self.resources[name] = make_resource(name, version, kind)
        self._build(None)

    async def cmd_push(self, name: str, version: int, kind: str = SMALL) -> float:
        r = make_resource(name, version, kind)
        self.resources[name] = r
        self.gen += 1
        self._build(r)  # built once, before the clock starts
        self.acks, self.last_ack = 0, 0.0
        t0 = now()
        old, self.changed = self.changed, asyncio.Event()
        old.set()
        return t0

    async def cmd_acks(self) -> dict[str, float]:
        return {"acks": self.acks, "last": self.last_ack}

    async def cmd_streams(self) -> int:
        return self.streams

    async def cmd_telemetry_records(self) -> int:
        return self.telemetry_records

    async def _export(self, request: Any, _context: grpc.aio.ServicerContext) -> Any:
        """A bare OTLP logs sink: parse, count the records, answer."""
        self.telemetry_records += sum(len(s.log_records) for r in request.resource_logs
                                      for s in r.scope_logs)
        return logs_service_pb2.ExportLogsServiceResponse()

    def _handler(self, delta: bool) -> Any:
        async def handle(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            it = requests.__aiter__()
            try:
                await it.__anext__()
            except StopAsyncIteration:
                return
            self.streams += 1
            reader = asyncio.create_task(self._read(it))
            sent = -1
            try:
                while True:
                    if sent != self.gen:
                        data = self.initial[delta] if sent < 0 else self.payload[delta]
                        sent = self.gen
                        if self.sem is not None:
                            async with self.sem:
                                await context.write(data)
                        else:
                            await context.write(data)
                    else:
                        await self.changed.wait()
            finally:
                self.streams -= 1
                reader.cancel()

        return handle

    async def _read(self, it: AsyncIterator[Any]) -> None:
        try:
            async for request in it:
                if request.response_nonce == str(self.gen):
                    self.acks += 1
                    self.last_ack = now()
        except (asyncio.CancelledError, grpc.RpcError):
            pass

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
