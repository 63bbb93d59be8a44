"""Telemetry from Envoy: receivers for access logs and stats, health per filter revision,
and the access-log buffer behind `logs`.

May import: `xds_server.nodes`, `xds_server.status` (read), `xds_server.state` (shared
health windows), `xds_server.log`. Must not import the controller, the admin app or
`xds_server.wasm`: the controller reads health from here; nor `xds_server.config` or
`xds_server.identity`: the config takes its telemetry defaults (`TelemetryLimits`) from here.
"""

from xds_server.telemetry._attribution import AckAttribution, Attribution, RevisionLookup, RunTimeline
from xds_server.telemetry._bootstrap import DEFAULT_FILTER_STATE, access_logger, add_telemetry, stats_sink
from xds_server.telemetry._health import (
    WASM_FAIL_DETAILS,
    HealthLimits,
    HealthTotals,
    HealthWindows,
    RevisionHealth,
)
from xds_server.telemetry._histogram import LatencyHistogram
from xds_server.telemetry._hub import TelemetryHub
from xds_server.telemetry._limits import DROP_REASONS, TelemetryLimits
from xds_server.telemetry._logbuffer import LogBuffer, LogEntry, LogFollower
from xds_server.telemetry._model import FilterRun, RequestRecord, StatRecord, TelemetryConsumer
from xds_server.telemetry._receiver import LOGS_SERVICE, METRICS_SERVICE, NODE_HEADER, TelemetryReceiver

__all__ = [
    "DEFAULT_FILTER_STATE",
    "DROP_REASONS",
    "LOGS_SERVICE",
    "METRICS_SERVICE",
    "NODE_HEADER",
    "WASM_FAIL_DETAILS",
    "AckAttribution",
    "Attribution",
    "FilterRun",
    "HealthLimits",
    "HealthTotals",
    "HealthWindows",
    "LatencyHistogram",
    "LogBuffer",
    "LogEntry",
    "LogFollower",
    "RequestRecord",
    "RevisionHealth",
    "RevisionLookup",
    "RunTimeline",
    "StatRecord",
    "TelemetryConsumer",
    "TelemetryHub",
    "TelemetryLimits",
    "TelemetryReceiver",
    "access_logger",
    "add_telemetry",
    "stats_sink",
]
