"""The controller: desired filter specs -> verified modules -> xDS resources in the cache."""

from xds_server.controller._controller import (
    Controller,
    Delivery,
    Deployed,
    FilterError,
    FilterEvent,
    FilterState,
    spec_key,
)
from xds_server.controller._extension import (
    HTTP_WASM_TYPE_URL,
    MODULE_CLUSTER,
    NETWORK_WASM_TYPE_URL,
    Code,
    build_extension_config,
)
from xds_server.controller._modules import ModuleProvider, ResolvedModule
from xds_server.controller._preflight import PreflightGate
from xds_server.controller._revisions import RevisionIndex
from xds_server.controller._store import StoreModules
from xds_server.controller._trusted import TrustedModules, policies_from_config

__all__ = [
    "HTTP_WASM_TYPE_URL",
    "MODULE_CLUSTER",
    "NETWORK_WASM_TYPE_URL",
    "Code",
    "Controller",
    "Delivery",
    "Deployed",
    "FilterError",
    "FilterEvent",
    "FilterState",
    "ModuleProvider",
    "PreflightGate",
    "ResolvedModule",
    "RevisionIndex",
    "StoreModules",
    "TrustedModules",
    "build_extension_config",
    "policies_from_config",
    "spec_key",
]
