"""OTLP receivers on the xDS gRPC port: `LogsService/Export` and `MetricsService/Export`.

Thin, like the xDS servicers and the OpenTelemetry Collector's otlpreceiver: each call
is bounded (size), parsed, authenticated (the same node identity rules as xDS streams),
rate limited per node, decoded into attributed records and handed to one consumer (the
`TelemetryHub`). Nothing a client sends can raise out of a handler: bad input is dropped
and counted in `xds_server_telemetry_dropped_total{reason}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from xds_server.nodes import NodeInfo
from xds_server.telemetry import _otlp
from xds_server.telemetry._attribution import Attribution
from xds_server.telemetry._limits import STATS, NodeRateLimiter, TelemetryLimits
from xds_server.telemetry._model import TelemetryConsumer

__all__ = ["LOGS_SERVICE", "METRICS_SERVICE", "NODE_HEADER", "TelemetryReceiver"]

log = structlog.get_logger("xds_server.telemetry")

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
NODE_HEADER = "x-xds-node-id"
"""gRPC metadata naming the sending node (`grpc_service.initial_metadata` in Envoy's
bootstrap). Envoy's stats sink sends no node in the message, so it is required for
metrics; for access logs the resource's `node_name` is used when it is absent."""

_EMPTY_RESPONSE = b""
"""Both services' `Export` response without `partial_success`: an empty message."""

NodeAuthorizer = Callable[[NodeInfo, Mapping[str, Sequence[bytes]]], "str | None"]
"""The xDS streams' authorizer (mTLS binding of certificate SANs to node ids): None to
allow, or the reason to refuse."""


class Refused(Exception):
    """A whole export refused: `reason` is the drop reason, `code` the gRPC status,
    `count` what it counts as (its records once parsed, else one export)."""

    def __init__(self, reason: str, code: grpc.StatusCode, message: str, count: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message
        self.count = count


class TelemetryReceiver:
    """The OTLP logs and metrics services. Register on the xDS gRPC server with
    `register(server)` before it starts; calls are independent (no per-receiver state
    but the rate limiter and the warning throttle, both bounded)."""

    def __init__(self, consumer: TelemetryConsumer, attribution: Attribution, *,
                 limits: TelemetryLimits | None = None,
                 authorizer: NodeAuthorizer | None = None) -> None:
        self.consumer = consumer
        self.attribution = attribution
        self.limits = limits or TelemetryLimits()
        self.authorizer = authorizer
        self.limiter = NodeRateLimiter(self.limits)
        self._warned: dict[tuple[str, str], float] = {}

    @property
    def service_names(self) -> list[str]:
        """Fully qualified names of the gRPC services registered."""
        return [LOGS_SERVICE, METRICS_SERVICE]

    def register(self, server: grpc.aio.Server) -> None:
        """Add both services' `Export` handlers to `server` (raw bytes in and out)."""
        for service, handler in ((LOGS_SERVICE, self._export_logs),
                                 (METRICS_SERVICE, self._export_metrics)):
            method = grpc.unary_unary_rpc_method_handler(handler)
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, {"Export": method}),))

    # -- handlers -------------------------------------------------------------------

    async def _export_logs(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        STATS.exports["logs"] += 1
        limits = self.limits
        try:
            request = self._parse(data, logs_service_pb2.ExportLogsServiceRequest)
            claims = [_otlp.resource_node(r.resource, limits.max_value_chars) for r in request.resource_logs]
            node = self._authenticate(context, claims[0][0] if claims else "",
                                      lambda: _otlp.count_logs(request.resource_logs))
        except Refused as exc:
            return await self._refuse(context, exc)
        mine = [r for r, (n, _) in zip(request.resource_logs, claims, strict=True) if n in ("", node.id)]
        mismatched = _otlp.count_logs(request.resource_logs) - _otlp.count_logs(mine)
        total = _otlp.count_logs(mine)
        granted = self.limiter.take(node.id, min(total, limits.max_records_per_export))
        cluster = next((c for n, c in claims if c), node.cluster)
        timeline = self.attribution.timeline(node.id)
        out = _otlp.decode_logs(mine, node.id, cluster, timeline.at, limits, granted)
        rejected = self._count(node.id, total, granted, out, mismatched, "request", len(out.requests))
        self.consumer.on_requests(out.requests)
        return _answer(logs_service_pb2.ExportLogsServiceResponse(), "rejected_log_records",
                       rejected, limits)

    async def _export_metrics(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        STATS.exports["metrics"] += 1
        limits = self.limits
        try:
            request = self._parse(data, metrics_service_pb2.ExportMetricsServiceRequest)
            claimed = next((n for r in request.resource_metrics
                            if (n := _otlp.resource_node(r.resource, limits.max_value_chars)[0])), "")
            node = self._authenticate(context, claimed, lambda: _otlp.count_points(request))
        except Refused as exc:
            return await self._refuse(context, exc)
        total = _otlp.count_points(request)
        granted = self.limiter.take(node.id, min(total, limits.max_records_per_export))
        timeline = self.attribution.timeline(node.id)
        out = _otlp.decode_metrics(request, node.id, node.cluster, timeline.at, limits, granted)
        rejected = self._count(node.id, total, granted, out, 0, "stat", len(out.stats))
        self.consumer.on_stats(out.stats)
        return _answer(metrics_service_pb2.ExportMetricsServiceResponse(), "rejected_data_points",
                       rejected, limits)

    # -- the edge -------------------------------------------------------------------

    def _parse(self, data: bytes, message_type: type[Message]) -> Any:
        if len(data) > self.limits.max_message_bytes:
            raise Refused("too_large", grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"telemetry export of {len(data)} bytes exceeds the limit of "
                          f"{self.limits.max_message_bytes} bytes")
        try:
            return message_type.FromString(data)
        except (DecodeError, ValueError, RecursionError) as exc:
            raise Refused("malformed", grpc.StatusCode.INVALID_ARGUMENT,
                          f"not an OTLP {message_type.DESCRIPTOR.name}: {exc}") from exc

    def _authenticate(self, context: grpc.aio.ServicerContext, claimed: str,
                      records: Callable[[], int]) -> NodeInfo:
        """The caller's node: named by the `x-xds-node-id` header (else `claimed`, the
        node the message names), known to the server, and allowed for the caller's
        certificate when node identity rules are configured."""
        header = next((v for k, v in context.invocation_metadata() or () if k == NODE_HEADER), None)
        node_id = (header if isinstance(header, str) else "") or claimed
        node = self.attribution.node(node_id[:1024]) if node_id else None
        if node is None:
            raise Refused("unknown_node", grpc.StatusCode.PERMISSION_DENIED,
                          f"node {node_id[:200]!r} has no xDS stream to this server; telemetry "
                          f"is taken only from known nodes (set {NODE_HEADER} in grpc_service "
                          "initial_metadata)" if node_id else
                          f"telemetry names no node: set {NODE_HEADER} in grpc_service initial_metadata",
                          records())
        if self.authorizer is not None:
            refused = self.authorizer(node, context.auth_context())
            if refused is not None:
                raise Refused("identity", grpc.StatusCode.PERMISSION_DENIED, refused, records())
        return node

    async def _refuse(self, context: grpc.aio.ServicerContext, exc: Refused) -> bytes:
        STATS.dropped[exc.reason] += exc.count
        self._warn(exc.reason, context.peer(), peer=context.peer(), error=exc.message)
        await context.abort(exc.code, exc.message)
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    def _count(self, node_id: str, total: int, granted: int, out: _otlp.Decoded,
               mismatched: int, kind: str, accepted: int) -> int:
        allowed = min(total, self.limits.max_records_per_export)
        drops = {"too_many": total - allowed, "rate_limited": allowed - granted,
                 "bad_record": out.bad, "node_mismatch": mismatched}
        STATS.records[kind] += accepted
        for reason, n in drops.items():
            if n:
                STATS.dropped[reason] += n
                self._warn(reason, node_id, node_id=node_id, records=n)
        return sum(drops.values())

    def _warn(self, reason: str, who: str, **context: Any) -> None:
        """Log a drop at most once a minute per reason and `who` (node or peer), so a
        flood stays quiet."""
        now = time.monotonic()
        key = (reason, who)
        if now - self._warned.get(key, -1e9) < 60.0:
            return
        if len(self._warned) >= 10_000:
            self._warned.clear()
        self._warned[key] = now
        log.warning("telemetry_dropped", reason=reason, **context)


def _answer(
    response: logs_service_pb2.ExportLogsServiceResponse | metrics_service_pb2.ExportMetricsServiceResponse,
    rejected_field: str, rejected: int, limits: TelemetryLimits,
) -> bytes:
    """An export's response: a partial success naming the `rejected` records (in the
    signal's own `rejected_field`) and why, or empty when all were taken."""
    if not rejected:
        return _EMPTY_RESPONSE
    setattr(response.partial_success, rejected_field, rejected)
    response.partial_success.error_message = _why(rejected, limits)
    return response.SerializeToString()


def _why(rejected: int, limits: TelemetryLimits) -> str:
    return (f"{rejected} records dropped (rate limit {limits.records_per_second:g}/s per node, "
            f"burst {limits.record_burst}; at most {limits.max_records_per_export} per export; "
            "unreadable records; resources of another node)")
