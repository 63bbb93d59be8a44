"""The OTLP receivers on the xDS port, driven by a real gRPC client: attribution to node
and revision, and hostile inputs (oversized, flood, unknown node, garbage, another
node's resources) dropped and counted while the stream and server survive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.extension.v3 import config_discovery_pb2_grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client import REGISTRY

from tests.fixtures.envoy import wait_for
from tests.fixtures.pki import Pki, make_pki
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.xds_client import Stream, XdsClient, ack, node, sotw_request
from xds_server.config import parse_filter_spec
from xds_server.runtime import XdsServerApp
from xds_server.telemetry import LOGS_SERVICE, METRICS_SERVICE, RequestRecord, StatRecord

LOGS_EXPORT = f"/{LOGS_SERVICE}/Export"
METRICS_EXPORT = f"/{METRICS_SERVICE}/Export"


@dataclass
class Collect:
    """A consumer that keeps what it is given."""

    requests: list[RequestRecord] = field(default_factory=list)
    stats: list[StatRecord] = field(default_factory=list)

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        self.requests.extend(records)

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        self.stats.extend(records)


class Exploding:
    """A consumer with a bug: it raises on every batch."""

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        raise RuntimeError("consumer bug")

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        raise RuntimeError("consumer bug")


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("xds_server_telemetry_dropped_total", {"reason": reason}) or 0.0


def accepted(kind: str) -> float:
    return REGISTRY.get_sample_value("xds_server_telemetry_records_total", {"kind": kind}) or 0.0


def kv(key: str, value: Any) -> common_pb2.KeyValue:
    if isinstance(value, common_pb2.AnyValue):
        return common_pb2.KeyValue(key=key, value=value)
    if isinstance(value, int):
        return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(int_value=value))
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def log_record(status: Any = "200", *, path: str = "/x", start: float = 0.0,
               extra: Sequence[common_pb2.KeyValue] = ()) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(
        time_unix_nano=int(start * 1e9),
        attributes=[kv("http.response.status_code", status), kv("envoy.duration_ms", "3"),
                    kv("http.request.method", "GET"), kv("url.path", path),
                    kv("envoy.response_code_details", "via_upstream"), *extra])


def logs_request(node_id: str, records: Sequence[logs_pb2.LogRecord],
                 cluster: str = "c1") -> logs_service_pb2.ExportLogsServiceRequest:
    res = logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=records)])
    res.resource.attributes.extend([kv("node_name", node_id), kv("cluster_name", cluster)])
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[res])


class Otlp:
    """Raw OTLP unary calls on the server's xDS port."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.logs = channel.unary_unary(LOGS_EXPORT, request_serializer=None, response_deserializer=None)
        self.metrics = channel.unary_unary(METRICS_EXPORT, request_serializer=None,
                                           response_deserializer=None)

    async def export_logs(self, data: bytes | Any, *, node_id: str | None = None) -> Any:
        raw = data if isinstance(data, bytes) else data.SerializeToString()
        md = (("x-xds-node-id", node_id),) if node_id is not None else None
        out = await self.logs(raw, metadata=md, timeout=10)
        return logs_service_pb2.ExportLogsServiceResponse.FromString(out)

    async def export_metrics(self, data: Any, *, node_id: str | None) -> Any:
        md = (("x-xds-node-id", node_id),) if node_id is not None else None
        out = await self.metrics(data.SerializeToString(), metadata=md, timeout=10)
        return metrics_service_pb2.ExportMetricsServiceResponse.FromString(out)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[XdsServerApp, Collect, Otlp, XdsClient]]:
    """A server with filter `hdr`, a node `e1` that ACKed it, a collecting consumer and
    an OTLP client."""
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-a", "A"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod)}}],
                       limits={"telemetry_records_per_second": 50, "telemetry_record_burst": 100,
                               "telemetry_message_bytes": 64 * 1024})
    async with running_server(cfg) as app:
        collect = Collect()
        app.telemetry.subscribe(collect)
        client = XdsClient(f"127.0.0.1:{app.xds_port}")
        stream = client.sotw()
        await stream.send(sotw_request(["hdr"], node_msg=node("e1")))
        response = await stream.recv()
        await stream.send(ack(response, ["hdr"]))

        async def acked() -> bool | None:
            p = app.status.proxies.get("e1")
            return True if p and p.resources["hdr"].acked else None

        await wait_for(acked, 10, what="ACK of hdr")
        try:
            yield app, collect, Otlp(client.channel), client
        finally:
            stream.cancel()
            await client.close()


async def test_logs_attributed_to_node_and_revision_across_a_swap(
        served: tuple[XdsServerApp, Collect, Otlp, XdsClient], tmp_path: Path) -> None:
    app, collect, otlp, client = served
    rev1 = app.controller.filters["hdr"].revision
    assert rev1 is not None
    v1 = app.controller.filters["hdr"].versions[0]
    before = accepted("request")
    served_before = time.time()
    fs = kv("envoy.filter_state.wasm.debug", "trace=1")
    md = kv("envoy.metadata.lua", '{"k":"v"}')
    response = await otlp.export_logs(logs_request("e1", [log_record(start=served_before, extra=[fs, md])]))
    assert not response.HasField("partial_success")
    (rec,) = collect.requests
    assert (rec.node_id, rec.cluster, rec.status, rec.method, rec.path) == ("e1", "c1", 200, "GET", "/x")
    assert rec.details == "via_upstream" and rec.duration_ms == 3.0
    assert rec.filter_state == {"wasm.debug": "trace=1"} and rec.metadata == {"lua": '{"k":"v"}'}
    assert [(r.filter, r.revision, r.version, r.canary) for r in rec.runs] == [("hdr", rev1.revision, v1, False)]
    assert accepted("request") == before + 1

    # Swap to B; the node ACKs it. Entries served before the ACK keep revision 1, later
    # ones get revision 2, whatever order they arrive in.
    mod_b = tmp_path / "b.wasm"
    mod_b.write_bytes(header_filter("x-a", "B"))
    state = await app.controller.deploy(
        "hdr", [parse_filter_spec({"name": "hdr", "source": {"file": str(mod_b)}}, where="t")],
        author="test")
    assert state.revision is not None
    rev2, v2 = state.revision.revision, state.versions[0]
    stream = client.sotw()
    await stream.send(sotw_request(["hdr"], node_msg=node("e1")))
    await stream.send(ack(await stream.recv(), ["hdr"]))

    async def acked_b() -> bool | None:
        return True if app.status.proxies["e1"].resources["hdr"].acked == v2 else None

    await wait_for(acked_b, 10, what="ACK of B")
    after = time.time() + 0.01
    collect.requests.clear()
    await otlp.export_logs(logs_request("e1", [log_record(start=after, path="/new"),
                                               log_record(start=served_before, path="/old")]))
    runs = {r.path: r.runs[0] for r in collect.requests}
    assert (runs["/new"].revision, runs["/new"].version) == (rev2, v2)
    assert (runs["/old"].revision, runs["/old"].version) == (rev1.revision, v1)
    stream.cancel()


def body_record(body: str, start: float = 0.0) -> logs_pb2.LogRecord:
    return logs_pb2.LogRecord(time_unix_nano=int(start * 1e9), body=common_pb2.AnyValue(string_value=body))


async def test_compact_body_form_as_the_generated_bootstrap_sends_it(
        served: tuple[XdsServerApp, Collect, Otlp, XdsClient]) -> None:
    _, collect, otlp, _ = served
    sep = "\x1f"
    fields = ["xds1", "503", "12", "POST", "/api/x", "shop", "wasm_fail_stream", "-", "-"]
    records = [
        body_record(sep.join([*fields, "fs:wasm.debug=rule=7", "md:lua={}", "fs:empty=-", "junk"])),
        body_record(sep.join(fields)),
        body_record(sep.join(fields[:5])),                       # cut short: bad
        body_record(sep.join(["xds1", "abc", *fields[2:]])),     # non-numeric status: bad
        body_record(sep.join([*fields[:4], "/" + "p" * 5000, *fields[5:]])),  # cut to 1,024
    ]
    before = dropped("bad_record")
    response = await otlp.export_logs(logs_request("e1", records))
    assert response.partial_success.rejected_log_records == 2
    assert dropped("bad_record") == before + 2
    first, second, long = collect.requests
    assert (first.status, first.duration_ms, first.method) == (503, 12.0, "POST")
    assert (first.path, first.authority) == ("/api/x", "shop")
    assert (first.details, first.flags, first.upstream_host) == ("wasm_fail_stream", "", "")
    assert dict(first.filter_state) == {"wasm.debug": "rule=7"} and dict(first.metadata) == {"lua": "{}"}
    assert dict(second.filter_state) == {} and [r.filter for r in second.runs] == ["hdr"]
    assert len(long.path) == 1024


async def test_stats_need_the_node_header_and_are_attributed(
        served: tuple[XdsServerApp, Collect, Otlp, XdsClient]) -> None:
    _, collect, otlp, _ = served
    metric = metrics_pb2.Metric(name="wasmcustom.my_requests", sum=metrics_pb2.Sum(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE, is_monotonic=True,
        data_points=[metrics_pb2.NumberDataPoint(as_int=7, time_unix_nano=1)]))
    gauge = metrics_pb2.Metric(name="wasm.envoy.wasm.runtime.v8.active", gauge=metrics_pb2.Gauge(
        data_points=[metrics_pb2.NumberDataPoint(as_double=2.0, attributes=[kv("envoy.worker_id", "0")])]))
    request = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[
        metrics_pb2.ResourceMetrics(scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric, gauge])])])
    before = dropped("unknown_node")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await otlp.export_metrics(request, node_id=None)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "x-xds-node-id" in (err.value.details() or "")
    assert dropped("unknown_node") == before + 2
    await otlp.export_metrics(request, node_id="e1")
    by_name = {s.name: s for s in collect.stats}
    counter, g = by_name["wasmcustom.my_requests"], by_name["wasm.envoy.wasm.runtime.v8.active"]
    assert (counter.kind, counter.value, counter.node_id) == ("counter", 7.0, "e1")
    assert (g.kind, g.value, dict(g.tags)) == ("gauge", 2.0, {"envoy.worker_id": "0"})
    assert [r.filter for r in counter.runs] == ["hdr"]


async def test_hostile_exports_are_dropped_and_counted_and_the_server_survives(
        served: tuple[XdsServerApp, Collect, Otlp, XdsClient]) -> None:
    app, collect, otlp, _ = served
    app.telemetry.subscribe(Exploding())
    counts = {r: dropped(r) for r in ("too_large", "malformed", "unknown_node", "rate_limited",
                                      "bad_record", "node_mismatch", "consumer_error")}
    # Oversized (the test config allows 64 KiB).
    big = logs_request("e1", [log_record(path="/" + "a" * 1000) for _ in range(100)])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await otlp.export_logs(big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dropped("too_large") == counts["too_large"] + 1
    # Not protobuf.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await otlp.export_logs(b"\xff\xff\xff\xff garbage")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dropped("malformed") == counts["malformed"] + 1
    # A node that never had an xDS stream, by header or by resource attribute.
    for kwargs in ({"node_id": "intruder"}, {}):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await otlp.export_logs(logs_request("intruder", [log_record()]), **kwargs)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert dropped("unknown_node") == counts["unknown_node"] + 2
    # Garbage attributes: a non-numeric status, a list, a huge value, too many attributes.
    garbage = [
        log_record(status="two hundred"),
        log_record(status=common_pb2.AnyValue(array_value=common_pb2.ArrayValue())),
        log_record(extra=[kv("envoy.filter_state.x", "v" * 5000)]
                   + [kv(f"k{i}", "v") for i in range(200)]),
        log_record(status=-5),
    ]
    response = await otlp.export_logs(logs_request("e1", garbage))
    assert response.partial_success.rejected_log_records == 2
    assert dropped("bad_record") == counts["bad_record"] + 2
    kept = collect.requests[-2:]
    assert kept[0].status == 0  # a list is no status: absent
    assert len(kept[1].filter_state["x"]) == 1024
    # Another node's resources inside e1's export.
    mixed = logs_request("e1", [log_record()])
    mixed.resource_logs.extend(logs_request("e2", [log_record(), log_record()]).resource_logs)
    response = await otlp.export_logs(mixed, node_id="e1")
    assert response.partial_success.rejected_log_records == 2
    assert dropped("node_mismatch") == counts["node_mismatch"] + 2
    # A flood: the bucket holds 100 records and refills 50/s; the excess is dropped and
    # counted (the bound on what passes follows from the elapsed time, whatever it is).
    before = len(collect.requests)
    rejected = 0
    started = time.monotonic()
    for _ in range(10):
        r = await otlp.export_logs(logs_request("e1", [log_record() for _ in range(100)]))
        rejected += r.partial_success.rejected_log_records
    taken = len(collect.requests) - before
    assert taken + rejected == 1000
    assert taken <= 100 + 50 * (time.monotonic() - started) + 1
    assert dropped("rate_limited") == counts["rate_limited"] + rejected
    assert dropped("consumer_error") > counts["consumer_error"]
    # The server still serves xDS and telemetry.
    await asyncio.sleep(1.0)
    before = len(collect.requests)
    await otlp.export_logs(logs_request("e1", [log_record()]))
    assert len(collect.requests) == before + 1
    assert app.xds.stream_count >= 1


async def test_mtls_identity_binding_applies_to_telemetry(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", {"e1": "spiffe://fleet/e1", "e2": "spiffe://fleet/e2"})
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-a", "A"))
    cfg = write_config(
        tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod)}}],
        xds_tls={"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                 "client_ca_file": str(pki.ca)},
        node_identity=[{"san": "spiffe://fleet/e1", "node_id": "e1"},
                       {"san": "spiffe://fleet/e2", "node_id": "e2"}])
    async with running_server(cfg) as app:
        collect = Collect()
        app.telemetry.subscribe(collect)
        channels = {n: secure_channel(app.xds_port, pki, pki.clients[n]) for n in ("e1", "e2")}
        streams = []
        for n, ch in channels.items():  # both nodes are known: each has an xDS stream
            stream = Stream(config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub(ch)
                            .StreamExtensionConfigs())
            await stream.send(sotw_request(["hdr"], node_msg=node(n)))
            await stream.recv()
            streams.append(stream)
        before = dropped("identity")
        otlp = Otlp(channels["e1"])
        # e1's certificate claiming e2, by header or by resource: refused and counted.
        for kwargs in ({"node_id": "e2"}, {}):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await otlp.export_logs(logs_request("e2", [log_record()]), **kwargs)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "not allowed" in (err.value.details() or "")
        assert dropped("identity") == before + 2
        assert collect.requests == []
        await otlp.export_logs(logs_request("e1", [log_record()]))
        assert [r.node_id for r in collect.requests] == ["e1"]
        for stream in streams:
            stream.cancel()
        for ch in channels.values():
            await ch.close()


def secure_channel(port: int, pki: Pki, client: tuple[Path, Path]) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes(),
                                         private_key=client[1].read_bytes(),
                                         certificate_chain=client[0].read_bytes())
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])


async def test_telemetry_reaching_another_replica_is_attributed(tmp_path: Path, fresh_database: str) -> None:
    """Envoy's telemetry calls are balanced over the `xds_server` cluster: a replica that
    does not hold the node's xDS stream knows the node, and what it ACKed, from the
    shared PostgreSQL status."""
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter("x-a", "A"))
    filters = [{"name": "hdr", "source": {"file": str(mod)}}]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    cfg_a = write_config(tmp_path / "a" / "config.yaml", filters, database_url=fresh_database, replica_id="a")
    cfg_b = write_config(tmp_path / "b" / "config.yaml", filters, database_url=fresh_database, replica_id="b")
    async with running_server(cfg_a) as a, running_server(cfg_b) as b:
        collect = Collect()
        b.telemetry.subscribe(collect)
        client = XdsClient(f"127.0.0.1:{a.xds_port}")
        stream = client.sotw()
        await stream.send(sotw_request(["hdr"], node_msg=node("e1")))
        await stream.send(ack(await stream.recv(), ["hdr"]))

        def known_to_b() -> bool | None:
            p = b.status.proxies.get("e1")
            return True if p is not None and p.resources.get("hdr") and p.resources["hdr"].acked else None

        await wait_for(known_to_b, 15, what="replica b seeing e1's ACK")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{b.xds_port}") as channel:
            await Otlp(channel).export_logs(logs_request("e1", [log_record(start=time.time())]))
        (rec,) = collect.requests
        state = a.controller.filters["hdr"]
        assert state.revision is not None
        assert [(r.filter, r.revision, r.version) for r in rec.runs] == [
            ("hdr", state.revision.revision, state.versions[0])]
        stream.cancel()
        await client.close()
