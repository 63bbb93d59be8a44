"""OTLP messages -> telemetry records: bounded, defensive decoding.

An access-log record is read in one of two forms, the contract with the access logger:

* the compact body the generated bootstrap sends (`BODY_FORMAT`): the string
  `xds1` US status US duration_ms US method US path US authority US details US flags
  US upstream_host, then `fs:<filter state key>=<value>` and `md:<namespace>=<value>`
  items, all separated by US (\x1f, a control character HTTP forbids in the fields).
  One string per record: decoding it costs a split, not a protobuf access per field;
* else the attributes named below (`http.response.status_code`, ...,
  `envoy.filter_state.<key>`, `envoy.metadata.<namespace>`), as a hand-written OTLP
  logger configuration would send them (values as strings, ints or doubles).

Envoy writes "-" for a value it does not have, which reads as absent. Nothing here
raises on hostile input: unreadable records are skipped and counted by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from xds_server.telemetry import _protos  # noqa: F401  (refuses xds-protos' old OTLP copy)
from xds_server.telemetry._limits import TelemetryLimits
from xds_server.telemetry._model import EMPTY_MAPPING, FilterRun, RequestRecord, StatRecord

__all__ = [
    "ATTR_AUTHORITY",
    "ATTR_DETAILS",
    "ATTR_DURATION",
    "ATTR_FLAGS",
    "ATTR_METHOD",
    "ATTR_PATH",
    "ATTR_STATUS",
    "ATTR_UPSTREAM",
    "BODY_MAGIC",
    "FILTER_STATE_PREFIX",
    "METADATA_PREFIX",
    "RES_CLUSTER",
    "RES_NODE",
    "Decoded",
    "body_format",
    "count_logs",
    "count_points",
    "decode_logs",
    "decode_metrics",
    "resource_node",
]

ATTR_STATUS = "http.response.status_code"
ATTR_DETAILS = "envoy.response_code_details"
ATTR_FLAGS = "envoy.response_flags"
ATTR_DURATION = "envoy.duration_ms"
ATTR_METHOD = "http.request.method"
ATTR_PATH = "url.path"
ATTR_AUTHORITY = "envoy.authority"
ATTR_UPSTREAM = "envoy.upstream_host"
FILTER_STATE_PREFIX = "envoy.filter_state."
METADATA_PREFIX = "envoy.metadata."
RES_NODE = "node_name"        # resource attributes Envoy's access logger sets
RES_CLUSTER = "cluster_name"

RunsAt = Callable[[float], tuple[FilterRun, ...]]


@dataclass(slots=True)
class Decoded:
    """What decoding one export produced: records, and how many were skipped."""

    requests: list[RequestRecord]
    stats: list[StatRecord]
    bad: int = 0
    skipped: int = 0


def text(value: Any, limit: int) -> str | None:
    """An OTLP `AnyValue` as text cut to `limit` characters; None for "-", empty,
    arrays, key-value lists and bytes."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        s: str = value.string_value
        return None if s in ("", "-") else s[:limit]
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    return None


def resource_node(resource: Any, limit: int) -> tuple[str, str]:
    """(node_name, cluster_name) from an OTLP resource's attributes ("" when absent)."""
    node = cluster = ""
    for kv in resource.attributes[:64]:
        if kv.key == RES_NODE:
            node = text(kv.value, limit) or ""
        elif kv.key == RES_CLUSTER:
            cluster = text(kv.value, limit) or ""
    return node, cluster


SEP = "\x1f"
BODY_MAGIC = "xds1" + SEP
BODY_FIELDS = ("%RESPONSE_CODE%", "%DURATION%", "%REQ(:METHOD)%", "%PATH(NQ)%",
               "%REQ(:AUTHORITY)%", "%RESPONSE_CODE_DETAILS%", "%RESPONSE_FLAGS%", "%UPSTREAM_HOST%")
_EMPTY: Mapping[str, str] = EMPTY_MAPPING


def body_format(filter_state: Sequence[str], metadata: Sequence[str]) -> str:
    """The access logger's body format string for the compact form."""
    items = [*BODY_FIELDS, *(f"fs:{k}=%FILTER_STATE({k}:PLAIN)%" for k in filter_state),
             *(f"md:{ns}=%DYNAMIC_METADATA({ns})%" for ns in metadata)]
    return BODY_MAGIC + SEP.join(items)


Fields = tuple[str, str, list[str], Mapping[str, str], Mapping[str, str]]
"""status, duration, [method, path, authority, details, flags, upstream_host],
filter state, metadata (all text; "" for absent)."""


def _from_body(body: str, limit: int) -> Fields | None:
    parts = body.split(SEP)
    if len(parts) < 9:
        return None
    if len(body) > limit:  # only then can a value be longer than the limit
        parts = [p[:limit] for p in parts]
    fixed = parts[3:9]
    if "-" in fixed:
        fixed = ["" if p == "-" else p for p in fixed]
    if len(parts) == 9:
        return parts[1], parts[2], fixed, _EMPTY, _EMPTY
    state, meta = _extras(parts)
    return parts[1], parts[2], fixed, state, meta


def _extras(parts: Sequence[str]) -> tuple[Mapping[str, str], Mapping[str, str]]:
    """Filter state and metadata items of a compact body split at US."""
    state: dict[str, str] = {}
    meta: dict[str, str] = {}
    for item in parts[9:64]:
        key, _, value = item.partition("=")
        if not value or value == "-":
            continue
        if key.startswith("fs:"):
            state[key[3:131]] = value
        elif key.startswith("md:"):
            meta[key[3:131]] = value
    return state or _EMPTY, meta or _EMPTY


_ORDER = {ATTR_METHOD: 0, ATTR_PATH: 1, ATTR_AUTHORITY: 2, ATTR_DETAILS: 3, ATTR_FLAGS: 4,
          ATTR_UPSTREAM: 5}


def _from_attributes(record: Any, limits: TelemetryLimits) -> Fields:
    limit = limits.max_value_chars
    fixed = ["", "", "", "", "", ""]
    state: dict[str, str] = {}
    meta: dict[str, str] = {}
    status = duration = ""
    for kv in record.attributes[: limits.max_attributes]:
        v = text(kv.value, limit)
        if v is None:
            continue
        key = kv.key
        if key == ATTR_STATUS:
            status = v
        elif key == ATTR_DURATION:
            duration = v
        elif key in _ORDER:
            fixed[_ORDER[key]] = v
        elif key.startswith(FILTER_STATE_PREFIX):
            state[key[len(FILTER_STATE_PREFIX):][:128]] = v
        elif key.startswith(METADATA_PREFIX):
            meta[key[len(METADATA_PREFIX):][:128]] = v
    return status, duration, fixed, state, meta


def _fields(record: Any, body: str, limits: TelemetryLimits) -> tuple[int, float, Fields] | None:
    """Status, duration and fields of one log record (compact body, else attributes);
    None when its body is cut short or its status or duration cannot be read."""
    if body.startswith(BODY_MAGIC):
        fields = _from_body(body, limits.max_value_chars)
        if fields is None:
            return None
    else:
        fields = _from_attributes(record, limits)
    status, duration = fields[0], fields[1]
    try:
        code = int(status) if status and status != "-" else 0
        ms = float(duration) if duration and duration != "-" else 0.0
    except ValueError:
        return None
    if not 0 <= code < 1000 or not 0.0 <= ms < 1e10:
        return None
    return code, ms, fields


_new_record = tuple.__new__


def decode_logs(resources: Iterable[Any], node_id: str, cluster: str,
                runs_at: RunsAt, limits: TelemetryLimits, budget: int) -> Decoded:
    """Access-log records of OTLP `ResourceLogs` that belong to `node_id`, at most
    `budget`; the rest count as `skipped`, unreadable ones as `bad`.

    The hot path of telemetry ingestion (one iteration per access-log entry): the
    compact body's common case (nine fields, values within the limit) is read inline,
    records with the same filter state and metadata items as the one before share its
    (read-only) mappings, runs are looked up once per distinct start time, and records
    are built as tuples
    (`RequestRecord` is a named tuple) without a Python-level constructor call.
    """
    out = Decoded([], [])
    requests = out.requests
    limit = limits.max_value_chars
    last_at = -1.0
    runs: tuple[FilterRun, ...] = ()
    last_items: list[str] = []
    last_extras = (_EMPTY, _EMPTY)
    for resource_logs in resources:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                if len(requests) >= budget:
                    out.skipped += 1
                    continue
                body = record.body.string_value
                parts: list[str] = (body.split(SEP) if body.startswith(BODY_MAGIC) and len(body) <= limit
                                    else [])
                try:
                    if len(parts) < 9:
                        raise ValueError
                    code = int(parts[1])  # "-" or "" raise: the general path reads them
                    ms = float(parts[2])
                except ValueError:
                    got = _fields(record, body, limits)
                    if got is None:
                        out.bad += 1
                        continue
                    code, ms, (_, _, (method, path, authority, details, flags, upstream), state, meta) = got
                else:  # the compact body's common case, inline (`_from_body`)
                    fixed = parts[3:9]
                    while "-" in fixed:  # Envoy's "absent" (flags, upstream host): usually one
                        fixed[fixed.index("-")] = ""
                    method, path, authority, details, flags, upstream = fixed
                    if len(parts) == 9:
                        state = meta = _EMPTY
                    elif parts[9:] != last_items:  # else the previous record's (shared)
                        last_items = parts[9:]
                        state, meta = last_extras = _extras(parts)
                    else:
                        state, meta = last_extras
                if not 0 <= code < 1000 or not 0.0 <= ms < 1e10:
                    out.bad += 1
                    continue
                nanos = record.time_unix_nano or record.observed_time_unix_nano
                at = nanos / 1e9 if nanos else time.time()
                if at != last_at:
                    runs = runs_at(at)
                    last_at = at
                requests.append(_new_record(RequestRecord, (
                    node_id, cluster, at, ms, code, method, path, authority, details, flags,
                    upstream, runs, meta, state)))
    return out


def count_logs(resources: Iterable[Any]) -> int:
    """How many log records OTLP `ResourceLogs` hold."""
    return sum(len(s.log_records) for r in resources for s in r.scope_logs)


def count_points(request: metrics_service_pb2.ExportMetricsServiceRequest) -> int:
    """How many gauge and sum data points `request` holds."""
    n = 0
    for r in request.resource_metrics:
        for s in r.scope_metrics:
            for m in s.metrics:
                kind = m.WhichOneof("data")
                n += len(m.gauge.data_points) if kind == "gauge" else (
                    len(m.sum.data_points) if kind == "sum" else 0)
    return n


def _points(metric: Any) -> Iterator[tuple[Any, str]]:
    kind = metric.WhichOneof("data")
    if kind == "gauge":
        for p in metric.gauge.data_points:
            yield p, "gauge"
    elif kind == "sum":
        s = metric.sum
        cumulative = s.aggregation_temporality == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
        label = ("counter" if cumulative else "delta") if s.is_monotonic else "gauge"
        for p in s.data_points:
            yield p, label
    # histograms and summaries are not used: latency comes from the access logs


def decode_metrics(request: metrics_service_pb2.ExportMetricsServiceRequest, node_id: str,
                   cluster: str, runs_at: RunsAt, limits: TelemetryLimits, budget: int) -> Decoded:
    """Stat samples of `request` for `node_id`: sums (cumulative monotonic = "counter",
    delta monotonic = "delta") and gauges, at most `budget`; data points beyond it count
    as `skipped`, unreadable ones as `bad`."""
    out = Decoded([], [])
    limit = limits.max_value_chars
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                name = metric.name[:limit]
                for point, kind in _points(metric):
                    if len(out.stats) >= budget:
                        out.skipped += 1
                        continue
                    which = point.WhichOneof("value")
                    value = float(point.as_int if which == "as_int" else point.as_double)
                    if not name or value != value:  # no name, or NaN
                        out.bad += 1
                        continue
                    tags = {kv.key[:128]: t for kv in point.attributes[: limits.max_attributes]
                            if (t := text(kv.value, limit)) is not None}
                    at = point.time_unix_nano / 1e9 if point.time_unix_nano else time.time()
                    out.stats.append(StatRecord(node_id=node_id, cluster=cluster, time=at, name=name,
                                                value=value, kind=kind, runs=runs_at(at), tags=tags))
    return out
