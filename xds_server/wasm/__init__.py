"""WebAssembly modules from OCI registries, URLs and files: fetch, verify, store, push.

The server calls :class:`ModuleStore` (``resolve``, ``get``, ``pin``) with
:class:`ModuleSource` s; everything raised derives from :class:`WasmError`. Every network
connection goes through the fetch guard (:class:`FetchGuard`, per-host
:class:`AddressPolicy`) and every response is read under :class:`FetchLimits`. This package
imports nothing else from ``xds_server``.
"""

from ._validate import validate_module
from .errors import (
    AuthError,
    InvalidModule,
    InvalidReference,
    ModuleTooLarge,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    UnsafeArchive,
    UnsafeDestination,
    UnsupportedLayout,
    VerificationError,
    WasmError,
)
from .guard import DEFAULT_POLICY, AddressPolicy, FetchGuard
from .layouts import LAYOUTS, FetchedModule, fetch_image_module
from .limits import DEFAULT_LIMITS, FetchLimits
from .push import PUSH_LAYOUTS, PushResult, push
from .reference import ImageReference, parse_reference
from .registry import RegistryClient, RegistrySettings
from .store import Module, ModuleSource, ModuleStore

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "LAYOUTS",
    "PUSH_LAYOUTS",
    "AddressPolicy",
    "AuthError",
    "FetchGuard",
    "FetchLimits",
    "FetchedModule",
    "ImageReference",
    "InvalidModule",
    "InvalidReference",
    "Module",
    "ModuleSource",
    "ModuleStore",
    "ModuleTooLarge",
    "NotFound",
    "PushResult",
    "RegistryClient",
    "RegistryError",
    "RegistrySettings",
    "RegistryUnavailable",
    "UnsafeArchive",
    "UnsafeDestination",
    "UnsupportedLayout",
    "VerificationError",
    "WasmError",
    "fetch_image_module",
    "parse_reference",
    "push",
    "validate_module",
]
