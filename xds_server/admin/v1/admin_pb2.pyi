import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_STATE_UNSPECIFIED: _ClassVar[ResourceState]
    RESOURCE_STATE_ACKED: _ClassVar[ResourceState]
    RESOURCE_STATE_NACKED: _ClassVar[ResourceState]
    RESOURCE_STATE_REQUESTED: _ClassVar[ResourceState]
    RESOURCE_STATE_STALE: _ClassVar[ResourceState]
RESOURCE_STATE_UNSPECIFIED: ResourceState
RESOURCE_STATE_ACKED: ResourceState
RESOURCE_STATE_NACKED: ResourceState
RESOURCE_STATE_REQUESTED: ResourceState
RESOURCE_STATE_STALE: ResourceState

class ApplyFilterRequest(_message.Message):
    __slots__ = ("name", "specs", "actor", "expect_revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EXPECT_REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    specs: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    actor: str
    expect_revision: int
    def __init__(self, name: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., actor: _Optional[str] = ..., expect_revision: _Optional[int] = ...) -> None: ...

class DeleteFilterRequest(_message.Message):
    __slots__ = ("name", "actor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    actor: str
    def __init__(self, name: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class DeleteFilterResponse(_message.Message):
    __slots__ = ("name", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class RollbackFilterRequest(_message.Message):
    __slots__ = ("name", "to_revision", "actor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    to_revision: int
    actor: str
    def __init__(self, name: _Optional[str] = ..., to_revision: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class PromoteFilterRequest(_message.Message):
    __slots__ = ("name", "actor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    actor: str
    def __init__(self, name: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class ListFiltersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFiltersResponse(_message.Message):
    __slots__ = ("filters",)
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.RepeatedCompositeFieldContainer[Filter]
    def __init__(self, filters: _Optional[_Iterable[_Union[Filter, _Mapping]]] = ...) -> None: ...

class GetFilterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("name", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("name", "history")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    history: _containers.RepeatedCompositeFieldContainer[Revision]
    def __init__(self, name: _Optional[str] = ..., history: _Optional[_Iterable[_Union[Revision, _Mapping]]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("name", "revision", "author", "action", "updated_at", "summary", "error", "error_at", "canary", "good_revision", "base_versions", "specs", "proxies", "rollout", "analysis", "debug")
    class RolloutEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_AT_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    GOOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    author: str
    action: str
    updated_at: _timestamp_pb2.Timestamp
    summary: str
    error: str
    error_at: _timestamp_pb2.Timestamp
    canary: bool
    good_revision: int
    base_versions: _containers.RepeatedScalarFieldContainer[str]
    specs: _containers.RepeatedCompositeFieldContainer[DeployedSpec]
    proxies: ProxyCounts
    rollout: _containers.ScalarMap[str, int]
    analysis: _struct_pb2.Struct
    debug: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., author: _Optional[str] = ..., action: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., summary: _Optional[str] = ..., error: _Optional[str] = ..., error_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canary: _Optional[bool] = ..., good_revision: _Optional[int] = ..., base_versions: _Optional[_Iterable[str]] = ..., specs: _Optional[_Iterable[_Union[DeployedSpec, _Mapping]]] = ..., proxies: _Optional[_Union[ProxyCounts, _Mapping]] = ..., rollout: _Optional[_Mapping[str, int]] = ..., analysis: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., debug: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StartDebugRequest(_message.Message):
    __slots__ = ("name", "node", "configuration", "duration", "actor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    configuration: _struct_pb2.Value
    duration: str
    actor: str
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., configuration: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., duration: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class EndDebugRequest(_message.Message):
    __slots__ = ("name", "actor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    actor: str
    def __init__(self, name: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class DeployedSpec(_message.Message):
    __slots__ = ("spec", "version", "module")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    spec: _struct_pb2.Struct
    version: str
    module: Module
    def __init__(self, spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[str] = ..., module: _Optional[_Union[Module, _Mapping]] = ...) -> None: ...

class Module(_message.Message):
    __slots__ = ("sha256", "size", "layout", "reference", "root_ids", "manifest_digest")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ROOT_IDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    layout: str
    reference: str
    root_ids: _containers.RepeatedScalarFieldContainer[str]
    manifest_digest: str
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., layout: _Optional[str] = ..., reference: _Optional[str] = ..., root_ids: _Optional[_Iterable[str]] = ..., manifest_digest: _Optional[str] = ...) -> None: ...

class ProxyCounts(_message.Message):
    __slots__ = ("total", "acked", "nacked")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    NACKED_FIELD_NUMBER: _ClassVar[int]
    total: int
    acked: int
    nacked: int
    def __init__(self, total: _Optional[int] = ..., acked: _Optional[int] = ..., nacked: _Optional[int] = ...) -> None: ...

class Revision(_message.Message):
    __slots__ = ("revision", "created_at", "author", "action", "summary", "specs", "digests", "versions", "base_revision")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    BASE_REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    created_at: _timestamp_pb2.Timestamp
    author: str
    action: str
    summary: str
    specs: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    digests: _containers.RepeatedScalarFieldContainer[str]
    versions: _containers.RepeatedScalarFieldContainer[str]
    base_revision: int
    def __init__(self, revision: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., author: _Optional[str] = ..., action: _Optional[str] = ..., summary: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., digests: _Optional[_Iterable[str]] = ..., versions: _Optional[_Iterable[str]] = ..., base_revision: _Optional[int] = ...) -> None: ...

class ListResourcesRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class ListResourcesResponse(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class GetResourceRequest(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PutResourceRequest(_message.Message):
    __slots__ = ("kind", "name", "specs", "actor", "expect_revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EXPECT_REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    specs: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    actor: str
    expect_revision: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., actor: _Optional[str] = ..., expect_revision: _Optional[int] = ...) -> None: ...

class DeleteResourceRequest(_message.Message):
    __slots__ = ("kind", "name", "actor")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    actor: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class DeleteResourceResponse(_message.Message):
    __slots__ = ("kind", "name", "revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    revision: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class GetResourceHistoryRequest(_message.Message):
    __slots__ = ("kind", "name", "limit")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    limit: int
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RollbackResourceRequest(_message.Message):
    __slots__ = ("kind", "name", "to_revision", "actor")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    to_revision: int
    actor: str
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., to_revision: _Optional[int] = ..., actor: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("kind", "name", "revision", "specs", "versions")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    revision: int
    specs: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    versions: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ..., specs: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., versions: _Optional[_Iterable[str]] = ...) -> None: ...

class GetFilterHealthRequest(_message.Message):
    __slots__ = ("name", "window_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    window_seconds: float
    def __init__(self, name: _Optional[str] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class FilterHealth(_message.Message):
    __slots__ = ("name", "window_seconds", "bucket_seconds", "current_revision", "revisions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUCKET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    window_seconds: float
    bucket_seconds: int
    current_revision: int
    revisions: _containers.RepeatedCompositeFieldContainer[RevisionHealth]
    def __init__(self, name: _Optional[str] = ..., window_seconds: _Optional[float] = ..., bucket_seconds: _Optional[int] = ..., current_revision: _Optional[int] = ..., revisions: _Optional[_Iterable[_Union[RevisionHealth, _Mapping]]] = ...) -> None: ...

class RevisionHealth(_message.Message):
    __slots__ = ("revision", "version", "canary", "proxies", "requests", "errors_5xx", "error_rate", "latency_p50_ms", "latency_p99_ms", "vm_failures", "vm_reloads", "custom_metrics", "failing", "series")
    class CustomMetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_5XX_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    VM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    VM_RELOADS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_METRICS_FIELD_NUMBER: _ClassVar[int]
    FAILING_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    version: str
    canary: bool
    proxies: int
    requests: int
    errors_5xx: int
    error_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    vm_failures: int
    vm_reloads: int
    custom_metrics: _containers.ScalarMap[str, float]
    failing: bool
    series: _containers.RepeatedCompositeFieldContainer[HealthPoint]
    def __init__(self, revision: _Optional[int] = ..., version: _Optional[str] = ..., canary: _Optional[bool] = ..., proxies: _Optional[int] = ..., requests: _Optional[int] = ..., errors_5xx: _Optional[int] = ..., error_rate: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., vm_failures: _Optional[int] = ..., vm_reloads: _Optional[int] = ..., custom_metrics: _Optional[_Mapping[str, float]] = ..., failing: _Optional[bool] = ..., series: _Optional[_Iterable[_Union[HealthPoint, _Mapping]]] = ...) -> None: ...

class HealthPoint(_message.Message):
    __slots__ = ("t", "requests", "errors_5xx", "vm_failures")
    T_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_5XX_FIELD_NUMBER: _ClassVar[int]
    VM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    t: _timestamp_pb2.Timestamp
    requests: int
    errors_5xx: int
    vm_failures: int
    def __init__(self, t: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., errors_5xx: _Optional[int] = ..., vm_failures: _Optional[int] = ...) -> None: ...

class GetProxyStatusRequest(_message.Message):
    __slots__ = ("node_id", "node", "cluster", "filter", "state", "version", "limit", "cursor")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node: str
    cluster: str
    filter: str
    state: ResourceState
    version: str
    limit: int
    cursor: str
    def __init__(self, node_id: _Optional[str] = ..., node: _Optional[str] = ..., cluster: _Optional[str] = ..., filter: _Optional[str] = ..., state: _Optional[_Union[ResourceState, str]] = ..., version: _Optional[str] = ..., limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class GetProxyStatusResponse(_message.Message):
    __slots__ = ("proxies", "total", "next_cursor")
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    proxies: _containers.RepeatedCompositeFieldContainer[ProxyStatus]
    total: int
    next_cursor: str
    def __init__(self, proxies: _Optional[_Iterable[_Union[ProxyStatus, _Mapping]]] = ..., total: _Optional[int] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetSummaryRequest(_message.Message):
    __slots__ = ("window_seconds",)
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    window_seconds: float
    def __init__(self, window_seconds: _Optional[float] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("seq", "at", "proxies_known", "proxies_connected", "filters", "resources")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    PROXIES_KNOWN_FIELD_NUMBER: _ClassVar[int]
    PROXIES_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    proxies_known: int
    proxies_connected: int
    filters: _containers.RepeatedCompositeFieldContainer[FilterSummary]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceSummary]
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., proxies_known: _Optional[int] = ..., proxies_connected: _Optional[int] = ..., filters: _Optional[_Iterable[_Union[FilterSummary, _Mapping]]] = ..., resources: _Optional[_Iterable[_Union[ResourceSummary, _Mapping]]] = ...) -> None: ...

class ResourceSummary(_message.Message):
    __slots__ = ("kind", "name", "served", "revision", "current_versions", "attention", "totals", "connected", "disconnected", "versions", "nacks")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    served: bool
    revision: int
    current_versions: _containers.RepeatedScalarFieldContainer[str]
    attention: bool
    totals: StateCounts
    connected: int
    disconnected: int
    versions: _containers.RepeatedCompositeFieldContainer[VersionSummary]
    nacks: _containers.RepeatedCompositeFieldContainer[NackGroup]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., served: _Optional[bool] = ..., revision: _Optional[int] = ..., current_versions: _Optional[_Iterable[str]] = ..., attention: _Optional[bool] = ..., totals: _Optional[_Union[StateCounts, _Mapping]] = ..., connected: _Optional[int] = ..., disconnected: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[VersionSummary, _Mapping]]] = ..., nacks: _Optional[_Iterable[_Union[NackGroup, _Mapping]]] = ...) -> None: ...

class StateCounts(_message.Message):
    __slots__ = ("acked", "nacked", "requested", "stale")
    ACKED_FIELD_NUMBER: _ClassVar[int]
    NACKED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    acked: int
    nacked: int
    requested: int
    stale: int
    def __init__(self, acked: _Optional[int] = ..., nacked: _Optional[int] = ..., requested: _Optional[int] = ..., stale: _Optional[int] = ...) -> None: ...

class FilterSummary(_message.Message):
    __slots__ = ("name", "served", "revision", "canary", "error", "current_versions", "attention", "failing", "totals", "connected", "disconnected", "versions", "nacks", "health")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    FAILING_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    served: bool
    revision: int
    canary: bool
    error: str
    current_versions: _containers.RepeatedScalarFieldContainer[str]
    attention: bool
    failing: bool
    totals: StateCounts
    connected: int
    disconnected: int
    versions: _containers.RepeatedCompositeFieldContainer[VersionSummary]
    nacks: _containers.RepeatedCompositeFieldContainer[NackGroup]
    health: _containers.RepeatedCompositeFieldContainer[RevisionHealthSummary]
    def __init__(self, name: _Optional[str] = ..., served: _Optional[bool] = ..., revision: _Optional[int] = ..., canary: _Optional[bool] = ..., error: _Optional[str] = ..., current_versions: _Optional[_Iterable[str]] = ..., attention: _Optional[bool] = ..., failing: _Optional[bool] = ..., totals: _Optional[_Union[StateCounts, _Mapping]] = ..., connected: _Optional[int] = ..., disconnected: _Optional[int] = ..., versions: _Optional[_Iterable[_Union[VersionSummary, _Mapping]]] = ..., nacks: _Optional[_Iterable[_Union[NackGroup, _Mapping]]] = ..., health: _Optional[_Iterable[_Union[RevisionHealthSummary, _Mapping]]] = ...) -> None: ...

class VersionSummary(_message.Message):
    __slots__ = ("version", "current", "running", "states", "clusters")
    class ClustersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StateCounts
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StateCounts, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    current: bool
    running: int
    states: StateCounts
    clusters: _containers.MessageMap[str, StateCounts]
    def __init__(self, version: _Optional[str] = ..., current: _Optional[bool] = ..., running: _Optional[int] = ..., states: _Optional[_Union[StateCounts, _Mapping]] = ..., clusters: _Optional[_Mapping[str, StateCounts]] = ...) -> None: ...

class NackGroup(_message.Message):
    __slots__ = ("message", "count", "versions", "nodes")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    message: str
    count: int
    versions: _containers.RepeatedScalarFieldContainer[str]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, message: _Optional[str] = ..., count: _Optional[int] = ..., versions: _Optional[_Iterable[str]] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class RevisionHealthSummary(_message.Message):
    __slots__ = ("revision", "version", "canary", "failing", "proxies", "requests", "errors_5xx", "error_rate", "vm_failures")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    FAILING_FIELD_NUMBER: _ClassVar[int]
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_5XX_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    VM_FAILURES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    version: str
    canary: bool
    failing: bool
    proxies: int
    requests: int
    errors_5xx: int
    error_rate: float
    vm_failures: int
    def __init__(self, revision: _Optional[int] = ..., version: _Optional[str] = ..., canary: _Optional[bool] = ..., failing: _Optional[bool] = ..., proxies: _Optional[int] = ..., requests: _Optional[int] = ..., errors_5xx: _Optional[int] = ..., error_rate: _Optional[float] = ..., vm_failures: _Optional[int] = ...) -> None: ...

class ProxyStatus(_message.Message):
    __slots__ = ("node_id", "cluster", "metadata", "envoy_version", "address", "connected", "connected_since", "disconnected_at", "resources", "seq")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    ENVOY_VERSION_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cluster: str
    metadata: _struct_pb2.Struct
    envoy_version: str
    address: str
    connected: bool
    connected_since: _timestamp_pb2.Timestamp
    disconnected_at: _timestamp_pb2.Timestamp
    resources: _containers.RepeatedCompositeFieldContainer[ResourceStatus]
    seq: int
    def __init__(self, node_id: _Optional[str] = ..., cluster: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., envoy_version: _Optional[str] = ..., address: _Optional[str] = ..., connected: _Optional[bool] = ..., connected_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resources: _Optional[_Iterable[_Union[ResourceStatus, _Mapping]]] = ..., seq: _Optional[int] = ...) -> None: ...

class ResourceStatus(_message.Message):
    __slots__ = ("name", "type_url", "state", "version_sent", "sent_at", "version_acked", "acked_at", "last_nack")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    VERSION_SENT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_ACKED_FIELD_NUMBER: _ClassVar[int]
    ACKED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_NACK_FIELD_NUMBER: _ClassVar[int]
    name: str
    type_url: str
    state: ResourceState
    version_sent: str
    sent_at: _timestamp_pb2.Timestamp
    version_acked: str
    acked_at: _timestamp_pb2.Timestamp
    last_nack: Nack
    def __init__(self, name: _Optional[str] = ..., type_url: _Optional[str] = ..., state: _Optional[_Union[ResourceState, str]] = ..., version_sent: _Optional[str] = ..., sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version_acked: _Optional[str] = ..., acked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_nack: _Optional[_Union[Nack, _Mapping]] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("version", "code", "message", "at")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    version: str
    code: int
    message: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchStatusRequest(_message.Message):
    __slots__ = ("node_id", "include_filter_events")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FILTER_EVENTS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    include_filter_events: bool
    def __init__(self, node_id: _Optional[str] = ..., include_filter_events: _Optional[bool] = ...) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("kind", "at", "node_id", "resources", "message", "filter")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[StatusEvent.Kind]
        CONNECT: _ClassVar[StatusEvent.Kind]
        DISCONNECT: _ClassVar[StatusEvent.Kind]
        ACK: _ClassVar[StatusEvent.Kind]
        NACK: _ClassVar[StatusEvent.Kind]
        FILTER_DEPLOYED: _ClassVar[StatusEvent.Kind]
        FILTER_DELETED: _ClassVar[StatusEvent.Kind]
        FILTER_REJECTED: _ClassVar[StatusEvent.Kind]
    KIND_UNSPECIFIED: StatusEvent.Kind
    CONNECT: StatusEvent.Kind
    DISCONNECT: StatusEvent.Kind
    ACK: StatusEvent.Kind
    NACK: StatusEvent.Kind
    FILTER_DEPLOYED: StatusEvent.Kind
    FILTER_DELETED: StatusEvent.Kind
    FILTER_REJECTED: StatusEvent.Kind
    class ResourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    kind: StatusEvent.Kind
    at: _timestamp_pb2.Timestamp
    node_id: str
    resources: _containers.ScalarMap[str, str]
    message: str
    filter: FilterChange
    def __init__(self, kind: _Optional[_Union[StatusEvent.Kind, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_id: _Optional[str] = ..., resources: _Optional[_Mapping[str, str]] = ..., message: _Optional[str] = ..., filter: _Optional[_Union[FilterChange, _Mapping]] = ...) -> None: ...

class FilterChange(_message.Message):
    __slots__ = ("name", "revision", "action", "author")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    revision: int
    action: str
    author: str
    def __init__(self, name: _Optional[str] = ..., revision: _Optional[int] = ..., action: _Optional[str] = ..., author: _Optional[str] = ...) -> None: ...
