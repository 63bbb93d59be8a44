"""Validated, typed configuration. No I/O beyond reading the config file."""

from xds_server.config._errors import ConfigError
from xds_server.config._load import check_overlaps, load_config, parse_config, parse_filter_spec
from xds_server.config._model import (
    DELIVERY_MODES,
    FAILURE_POLICIES,
    FILTER_TYPES,
    ON_NACK_POLICIES,
    PULL_POLICIES,
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
    "ON_NACK_POLICIES",
    "PULL_POLICIES",
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
    "load_config",
    "parse_config",
    "parse_filter_spec",
]
