"""Envoy bootstrap snippets that send telemetry to this server (OTLP over gRPC).

`access_logger` goes into an HTTP connection manager's `access_log` list; `stats_sink`
into the bootstrap's `stats_sinks`. Both name the server's xDS cluster and carry the
node id in the `x-xds-node-id` gRPC header (Envoy's stats sink sends no node otherwise).
`add_telemetry` applies both to a generated bootstrap. The access log's body format
is the receiver's contract (`xds_server.telemetry._otlp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xds_server.telemetry._otlp import body_format
from xds_server.telemetry._receiver import NODE_HEADER

__all__ = ["DEFAULT_FILTER_STATE", "access_logger", "add_telemetry", "stats_sink"]

ACCESS_LOGGER = "envoy.access_loggers.open_telemetry"
ACCESS_LOGGER_TYPE = ("type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3."
                      "OpenTelemetryAccessLogConfig")
STATS_SINK = "envoy.stat_sinks.open_telemetry"
STATS_SINK_TYPE = "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"
HCM = "envoy.filters.network.http_connection_manager"

DEFAULT_FILTER_STATE = ("wasm.debug",)
"""Filter state logged by default: what a module sets with
`proxy_set_property("debug", value)` (Envoy stores it as `wasm.debug`)."""

def _grpc_service(cluster: str, node_id: str) -> dict[str, Any]:
    return {"envoy_grpc": {"cluster_name": cluster},
            "initial_metadata": [{"key": NODE_HEADER, "value": node_id}]}


def access_logger(*, node_id: str, cluster: str,
                  filter_state: Sequence[str] = DEFAULT_FILTER_STATE,
                  metadata: Sequence[str] = (), flush_interval: str = "1s") -> dict[str, Any]:
    """An `access_log` entry (Envoy's OpenTelemetry access logger) sending each request's
    status, duration, method, path (no query string: it may carry secrets), authority,
    response code details, flags, upstream host, the `filter_state` keys (e.g.
    `wasm.debug`) and the dynamic `metadata` namespaces to the gRPC cluster `cluster`,
    as the compact body (see `xds_server.telemetry._otlp`), batched every `flush_interval`."""
    return {
        "name": ACCESS_LOGGER,
        "typed_config": {
            "@type": ACCESS_LOGGER_TYPE,
            "log_name": "xds-server",
            "grpc_service": _grpc_service(cluster, node_id),
            "buffer_flush_interval": flush_interval,
            "body": {"string_value": body_format(filter_state, metadata)},
        },
    }


def stats_sink(*, node_id: str, cluster: str, max_data_points: int = 1_000) -> dict[str, Any]:
    """A `stats_sinks` entry (Envoy's OpenTelemetry stats sink): full stat names
    (`wasmcustom.*`, `wasm.*`), cumulative counters, at most `max_data_points` per export
    (Envoy splits larger flushes), to the gRPC cluster `cluster`."""
    return {
        "name": STATS_SINK,
        "typed_config": {
            "@type": STATS_SINK_TYPE,
            "grpc_service": _grpc_service(cluster, node_id),
            "use_tag_extracted_name": False,
            "emit_tags_as_attributes": False,
            "max_data_points_per_request": max_data_points,
        },
    }


def add_telemetry(bootstrap: dict[str, Any], *, cluster: str, stats_flush_interval: str = "5s",
                  filter_state: Sequence[str] = DEFAULT_FILTER_STATE,
                  metadata: Sequence[str] = ()) -> dict[str, Any]:
    """Add the access logger to every HTTP connection manager of `bootstrap`'s static
    listeners and the stats sink to the bootstrap; the node id is `bootstrap.node.id`.
    Returns `bootstrap` (changed in place)."""
    node_id = bootstrap["node"]["id"]
    logger = access_logger(node_id=node_id, cluster=cluster, filter_state=filter_state, metadata=metadata)
    for listener in bootstrap.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == HCM:
                    f["typed_config"].setdefault("access_log", []).append(logger)
    bootstrap.setdefault("stats_sinks", []).append(stats_sink(node_id=node_id, cluster=cluster))
    bootstrap["stats_flush_interval"] = stats_flush_interval
    return bootstrap
