"""The controller: desired filter specs -> verified modules -> xDS resources in the cache.

The only place where wasm modules meet xDS. `Controller` composes one private module per
concern: `_model` (types), `_build` (build and delivery), `_changes` (deploy, delete,
rollback, promote), `_sync` (restore and replica sync), `_config` (config file and
pull-`Always` refresh), `_nack` (NACK auto-rollback), `_analysis` (health-gated
rollouts, runtime-failure rollback), `_debug` (time-boxed debug overrides), `_remote`
(remote re-push), and
the `delivery` package (one object per delivery mode).

May import: `cache`, `config`, `state`, `nodes`, and the module store (`wasm`, through
`_store`); never `xds`, `admin`, `runtime` or `cli`.
"""

from xds_server.controller._analysis import HealthNumbers, HealthReader
from xds_server.controller._controller import Controller
from xds_server.controller._extension import (
    HTTP_WASM_TYPE_URL,
    MODULE_CLUSTER,
    NETWORK_WASM_TYPE_URL,
    Code,
    build_extension_config,
)
from xds_server.controller._model import Deployed, FilterError, FilterEvent, FilterState, spec_key
from xds_server.controller._modules import ModuleProvider, ResolvedModule
from xds_server.controller._preflight import PreflightGate
from xds_server.controller._revisions import RevisionIndex
from xds_server.controller._store import StoreModules
from xds_server.controller._trusted import TrustedModules, policies_from_config
from xds_server.controller.delivery import MODES, Delivery, DeliveryMode, delivery_mode

__all__ = [
    "HTTP_WASM_TYPE_URL",
    "MODES",
    "MODULE_CLUSTER",
    "NETWORK_WASM_TYPE_URL",
    "Code",
    "Controller",
    "Delivery",
    "DeliveryMode",
    "Deployed",
    "FilterError",
    "FilterEvent",
    "FilterState",
    "HealthNumbers",
    "HealthReader",
    "ModuleProvider",
    "PreflightGate",
    "ResolvedModule",
    "RevisionIndex",
    "StoreModules",
    "TrustedModules",
    "build_extension_config",
    "delivery_mode",
    "policies_from_config",
    "spec_key",
]
