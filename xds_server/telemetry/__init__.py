"""Telemetry from Envoy: receivers for access logs and stats, health per filter revision,
and the access-log buffer behind `logs`.

May import: `xds_server.nodes`, `xds_server.identity`, `xds_server.status` (read),
`xds_server.state` (shared health windows), `xds_server.log`. Must not import the
controller, the admin app or `xds_server.wasm`: the controller reads health from here.
"""

from xds_server.telemetry._health import (
    WASM_FAIL_DETAILS,
    HealthLimits,
    HealthTotals,
    HealthWindows,
    RevisionHealth,
)
from xds_server.telemetry._histogram import LatencyHistogram
from xds_server.telemetry._model import FilterRun, RequestRecord, StatRecord, TelemetryConsumer

__all__ = [
    "WASM_FAIL_DETAILS",
    "FilterRun",
    "HealthLimits",
    "HealthTotals",
    "HealthWindows",
    "LatencyHistogram",
    "RequestRecord",
    "RevisionHealth",
    "StatRecord",
    "TelemetryConsumer",
]
