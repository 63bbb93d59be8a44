"""Validated, typed configuration. No I/O beyond reading the config file.

`_model` holds the frozen dataclasses and the allowed values (policies, delivery modes,
log levels), `_load` parses and validates a document into them, `_errors` the error.

May import: `nodes` (selectors), and the defaults of what it configures, whose one home
is the package that owns them: `xds` (`StreamLimits`), `telemetry` (`TelemetryLimits`),
`wasm` (module size, fetch timeouts and retries, `RegistrySettings`). Never the
controller, admin, runtime, state or cli.
"""

from xds_server.config._errors import ConfigError
from xds_server.config._load import (
    check_overlaps,
    configuration_text,
    load_config,
    parse_config,
    parse_duration,
    parse_filter_spec,
)
from xds_server.config._model import (
    DELIVERY_MODES,
    FAILURE_POLICIES,
    FILTER_TYPES,
    LOG_FORMATS,
    LOG_LEVELS,
    ON_NACK_POLICIES,
    ON_RUNTIME_FAILURE_POLICIES,
    PULL_POLICIES,
    AnalysisSpec,
    Config,
    FilterSpec,
    IdentityRule,
    KeylessRule,
    Limits,
    Preflight,
    PreflightRequest,
    RegistryConfig,
    ServerConfig,
    SourceSpec,
    TlsConfig,
    VerifyRule,
)

__all__ = [
    "DELIVERY_MODES",
    "FAILURE_POLICIES",
    "FILTER_TYPES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ON_NACK_POLICIES",
    "ON_RUNTIME_FAILURE_POLICIES",
    "PULL_POLICIES",
    "AnalysisSpec",
    "Config",
    "ConfigError",
    "FilterSpec",
    "IdentityRule",
    "KeylessRule",
    "Limits",
    "Preflight",
    "PreflightRequest",
    "RegistryConfig",
    "ServerConfig",
    "SourceSpec",
    "TlsConfig",
    "VerifyRule",
    "check_overlaps",
    "configuration_text",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_filter_spec",
]
