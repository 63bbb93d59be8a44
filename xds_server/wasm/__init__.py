"""WebAssembly modules from OCI registries, URLs and files: fetch, verify, store, push.

The server calls :class:`ModuleStore` (``resolve``, ``get``, ``pin``) with
:class:`ModuleSource` s; everything raised derives from :class:`WasmError`. Every network
connection goes through the fetch guard (:class:`FetchGuard`, per-host
:class:`AddressPolicy`) and every response is read under :class:`FetchLimits`. This package
imports nothing else from ``xds_server``.

One module per concern: ``registry`` (OCI distribution client), ``retry`` (the one retry
policy), ``download`` (the one verified download: stream, hash, cap; memory or temp file),
``image_layout`` (each image layout as one object) and ``layouts`` (detection, fetching a
module from an image), ``push``, ``store`` (content-addressed store, resolve), ``guard``,
``limits`` (caps, timeouts and size defaults), ``reference``, ``errors``, ``metrics``.
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
    StoreError,
    UnsafeArchive,
    UnsafeDestination,
    UnsupportedLayout,
    VerificationError,
    WasmError,
)
from .guard import DEFAULT_POLICY, AddressPolicy, FetchGuard
from .layouts import LAYOUTS, FetchedModule, fetch_image_module
from .limits import DEFAULT_LIMITS, MAX_MODULE_BYTES, SMALL_MODULE_BYTES, FetchLimits
from .push import PUSH_LAYOUTS, PushResult, push
from .reference import ImageReference, parse_reference
from .registry import RegistryClient, RegistrySettings
from .store import Module, ModuleSource, ModuleStore

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POLICY",
    "LAYOUTS",
    "MAX_MODULE_BYTES",
    "PUSH_LAYOUTS",
    "SMALL_MODULE_BYTES",
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
    "StoreError",
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
