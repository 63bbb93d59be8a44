"""Caps and timeouts on everything fetched from registries, token services and URLs.

A hostile or broken registry must not make the server hold unbounded memory or wait
forever: each response has a size cap checked on the announced length and again while
reading, each parsed document a cap on its entries, and each network call a connect, a
per-read and a total timeout. Defaults live here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

__all__ = ["ARCHIVE_OVERHEAD_BYTES", "DEFAULT_LIMITS", "MAX_MODULE_BYTES", "SMALL_MODULE_BYTES",
           "FetchLimits"]

MAX_MODULE_BYTES = 256 * 2**20
"""The default cap on one module."""

ARCHIVE_OVERHEAD_BYTES = 2**20
"""What a tar(.gz) layer may hold beyond the module cap (headers, padding, other files)."""

SMALL_MODULE_BYTES = 256 * 2**10
"""Modules up to this size are hashed, validated and copied on the event loop; larger ones
in a worker thread (for a small one the thread hop costs more than the work)."""


@dataclass(frozen=True, kw_only=True)
class FetchLimits:
    """Caps on fetched documents and timeouts on network calls. Immutable.

    Sizes are bytes; timeouts seconds. ``request_total`` bounds a whole small call
    (manifest, token, HEAD, upload start) including reading its body; ``download_total``
    bounds a whole blob or URL module download (or upload), so a registry that trickles
    one byte just inside ``read_timeout`` still ends.
    """

    max_manifest_bytes: int = 4 * 2**20
    """Manifest or index document."""
    max_layers: int = 64
    """Layers in one image manifest."""
    max_index_entries: int = 256
    """Entries (``manifests``) in one image index."""
    max_config_bytes: int = 1 * 2**20
    """Image config blob (wasme runtime config)."""
    max_token_bytes: int = 64 * 2**10
    """Token service response."""
    max_error_bytes: int = 16 * 2**10
    """Error body read to explain a failed call."""
    max_tar_members: int = 10_000
    """Members in a compat (tar) layer."""
    max_redirects: int = 5
    """Redirects followed by one call (blob GETs are redirected to storage)."""
    connect_timeout: float = 30.0
    """Connecting (DNS, TCP and TLS)."""
    read_timeout: float = 30.0
    """Between two reads of one response."""
    request_total: float = 120.0
    """Whole small call, body included."""
    download_total: float = 900.0
    """Whole blob or module download or upload."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"FetchLimits.{name} must be positive (got {value!r})")

    def timeout(self, *, download: bool = False) -> aiohttp.ClientTimeout:
        """The aiohttp timeout for one call (a small one, or a download)."""
        return aiohttp.ClientTimeout(
            total=self.download_total if download else self.request_total,
            sock_connect=self.connect_timeout,
            sock_read=self.read_timeout,
        )


DEFAULT_LIMITS = FetchLimits()
"""The limits used unless a client is given others."""
