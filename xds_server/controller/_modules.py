"""What the controller needs from a module source: verified bytes for a filter spec."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from xds_server.config import FilterSpec


@dataclass(frozen=True, slots=True)
class ResolvedModule:
    """A verified wasm module for a spec: its digest, where its bytes are, what it says.

    `verdict` is the signature verdict (`xds_server.trust.Verdict.to_dict()`) when a
    verify policy covered the image, else None.
    """

    sha256: str
    size: int
    path: Path
    layout: str
    reference: str
    root_ids: tuple[str, ...] = ()
    manifest_digest: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    verdict: Mapping[str, Any] | None = None

    def read_bytes(self) -> bytes:
        """The module bytes (read from the content-addressed store)."""
        return self.path.read_bytes()


class ModuleProvider(Protocol):
    """Turns a spec's source into a verified module. Raises with a clear message.

    Lifecycle: `start()` before the first `module_for`, `close()` at the end.
    """

    async def start(self) -> None:
        """Open sessions and the store."""
        ...

    async def close(self) -> None:
        """Release sessions."""
        ...

    async def module_for(self, spec: FilterSpec) -> ResolvedModule:
        """Fetch (or find cached) and verify the module `spec` names."""
        ...

    async def fetch_by_digest(self, sha256: str, url: str) -> ResolvedModule:
        """Download a module by digest from `url` (a peer replica), verify and store it."""
        ...

    def stored(self, sha256: str) -> ResolvedModule | None:
        """A module already in the store by digest (no network), or None."""
        ...

    def pin(self, digests: list[str]) -> None:
        """Modules in use: never evicted."""
        ...

    def module_path(self, sha256: str) -> Path | None:
        """The stored file of a module by digest, or None."""
        ...
