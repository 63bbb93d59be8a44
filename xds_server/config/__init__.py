"""Validated, typed configuration. No I/O beyond reading the config file."""

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
    ON_NACK_POLICIES,
    ON_RUNTIME_FAILURE_POLICIES,
    PULL_POLICIES,
    AnalysisSpec,
    Config,
    FilterSpec,
    IdentityRule,
    Limits,
    RegistryConfig,
    ServerConfig,
    SourceSpec,
    TlsConfig,
)

__all__ = [
    "DELIVERY_MODES",
    "FAILURE_POLICIES",
    "FILTER_TYPES",
    "ON_NACK_POLICIES",
    "ON_RUNTIME_FAILURE_POLICIES",
    "PULL_POLICIES",
    "AnalysisSpec",
    "Config",
    "ConfigError",
    "FilterSpec",
    "IdentityRule",
    "Limits",
    "RegistryConfig",
    "ServerConfig",
    "SourceSpec",
    "TlsConfig",
    "check_overlaps",
    "configuration_text",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_filter_spec",
]
