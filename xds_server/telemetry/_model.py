"""Telemetry records: what the receivers hand to their consumers.

The receivers (gRPC servicers for Envoy's telemetry streams) decode, bound and attribute
what Envoy sends and hand batches of these records to a `TelemetryConsumer`; they hold no
business logic. Consumers (health windows, the log buffer) never see protobuf messages.

Records are immutable once built; consumers must not keep references to mutable
containers inside them beyond the call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, Protocol

__all__ = ["EMPTY_MAPPING", "FilterRun", "RequestRecord", "StatRecord", "TelemetryConsumer"]

EMPTY_MAPPING: Mapping[str, str] = MappingProxyType({})
"""The empty, read-only mapping records share for absent metadata and filter state."""


@dataclass(frozen=True, slots=True)
class FilterRun:
    """One wasm filter a node was running when a record was made.

    `revision` is the filter revision whose xDS `version` the node had ACKed at that
    moment (0 when the version maps to no known revision); `canary` is true when the node
    was served the canary side of a rollout.
    """

    filter: str
    revision: int
    version: str
    canary: bool = False


class RequestRecord(NamedTuple):
    """One HTTP request an Envoy logged (one access-log entry), attributed to its node.

    `time` is the request's start in Unix seconds, `duration_ms` the total time to the
    last response byte, `status` the HTTP response code (0 when none was sent),
    `details` Envoy's response code details (e.g. `via_upstream`), `metadata` the dynamic
    metadata and `filter_state` the filter state entries that were logged (string values,
    size-bounded by the receiver).

    A named tuple, not a frozen dataclass: the receivers build one per access-log entry
    (thousands per second), and a tuple is built in a fraction of the time a frozen
    dataclass's `__init__` takes (one `object.__setattr__` per field). Immutable all the
    same; `metadata` and `filter_state` default to one shared read-only empty mapping.
    """

    node_id: str
    cluster: str
    time: float
    duration_ms: float
    status: int
    method: str = ""
    path: str = ""
    authority: str = ""
    details: str = ""
    flags: str = ""
    upstream_host: str = ""
    runs: tuple[FilterRun, ...] = ()
    metadata: Mapping[str, str] = EMPTY_MAPPING
    filter_state: Mapping[str, str] = EMPTY_MAPPING


@dataclass(frozen=True, slots=True)
class StatRecord:
    """One Envoy stat sample, attributed to its node.

    `kind` is "counter" (cumulative value since Envoy started) or "gauge". `name` is
    Envoy's full stat name (e.g. `wasmcustom.my_counter`, `wasm.envoy.wasm.runtime.v8.active`)
    as the generated bootstrap sends it (`use_tag_extracted_name: false`); a bootstrap that
    sends tag-extracted names gives the tags in `tags` (e.g. `envoy.cluster_name`).
    """

    node_id: str
    cluster: str
    time: float
    name: str
    value: float
    kind: str
    runs: tuple[FilterRun, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class TelemetryConsumer(Protocol):
    """Takes attributed batches from the receivers.

    Called on the event loop; must not block or raise (a consumer failure must never end
    an Envoy's telemetry stream). Batches are bounded by the receiver's limits.
    """

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """A batch of access-log entries."""

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """A batch of stat samples (one flush of one Envoy's stats sink)."""
