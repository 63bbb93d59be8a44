"""WebAssembly modules from OCI registries, URLs and files: fetch, verify, store, push.

The server calls :class:`ModuleStore` (``resolve``, ``get``, ``pin``) with
:class:`ModuleSource` s; everything raised derives from :class:`WasmError`. This package
imports nothing else from ``xds_server``.
"""

from .errors import (
    AuthError,
    InvalidModule,
    InvalidReference,
    ModuleTooLarge,
    NotFound,
    RegistryError,
    RegistryUnavailable,
    UnsafeArchive,
    UnsupportedLayout,
    VerificationError,
    WasmError,
)
from .layouts import LAYOUTS, FetchedModule, fetch_image_module
from .push import PUSH_LAYOUTS, PushResult, push
from .reference import ImageReference, parse_reference
from .registry import RegistryClient, RegistrySettings
from .store import Module, ModuleSource, ModuleStore

__all__ = [
    "LAYOUTS",
    "PUSH_LAYOUTS",
    "AuthError",
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
    "UnsupportedLayout",
    "VerificationError",
    "WasmError",
    "fetch_image_module",
    "parse_reference",
    "push",
]
