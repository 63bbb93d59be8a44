"""The default module provider: the OCI-capable content-addressed module store.

The controller's one door to `xds_server.wasm`: what else of it the controller needs
(`SMALL_MODULE_BYTES`) is re-exported here."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import aiohttp

from xds_server.config import Config, FilterSpec
from xds_server.controller._modules import ResolvedModule
from xds_server.wasm import MAX_MODULE_BYTES, SMALL_MODULE_BYTES, Module, ModuleSource, ModuleStore, RegistrySettings
from xds_server.wasm.download import read_body

__all__ = ["SMALL_MODULE_BYTES", "StoreModules"]


class StoreModules:
    """Adapts `xds_server.wasm.ModuleStore` to the controller's `ModuleProvider`."""

    def __init__(self, store: ModuleStore, *, max_module_bytes: int = MAX_MODULE_BYTES) -> None:
        self.store = store
        self.store_limit = max_module_bytes

    @classmethod
    def from_config(cls, config: Config) -> StoreModules:
        """A store under `<data_dir>/modules` with the config's registries and limits."""
        s = config.server
        registries = [
            RegistrySettings(host=r.host, plain_http=r.plain_http, ca_file=r.ca_file,
                             username=r.username, password=r.password,
                             allow_private=r.allow_private, allow_loopback=r.allow_loopback)
            for r in config.registries
        ]
        store = ModuleStore(
            s.data_dir / "modules",
            max_module_bytes=s.max_module_bytes,
            max_store_bytes=s.max_store_bytes,
            registries=registries,
            docker_config=s.docker_config,
            # The controller re-checks `Always` tags every resolve_interval; entries a
            # little younger than that must count as stale, or every other round is skipped.
            resolve_interval=s.resolve_interval * 0.8,
            request_timeout=s.fetch_timeout,
            retries=s.fetch_retries,
        )
        return cls(store, max_module_bytes=s.max_module_bytes)

    async def start(self) -> None:
        """Open the store's HTTP session."""
        await self.store.start()

    async def close(self) -> None:
        """Close the store's HTTP session."""
        await self.store.close()

    async def module_for(self, spec: FilterSpec) -> ResolvedModule:
        """Resolve the spec's source through the store (verified, cached)."""
        src = spec.source
        pull: Literal["IfNotPresent", "Always"] = (
            "Always" if spec.pull_policy == "Always" else "IfNotPresent"
        )
        kind: Literal["image", "url", "file"]
        if src.kind == "image":
            kind = "image"
        elif src.kind == "url":
            kind = "url"
        else:
            kind = "file"
        module = await self.store.resolve(
            ModuleSource(kind=kind, location=src.location,
                         sha256=src.sha256 or spec.sha256, pull_policy=pull)
        )
        return _resolved(module)

    async def fetch_by_digest(self, sha256: str, url: str) -> ResolvedModule:
        """Download a module by digest from a peer replica, verified and stored.

        Peers' URLs come from the shared database (written by the replicas), so they
        are trusted destinations: the fetch guard that protects registry and URL
        fetches (which refuses private addresses such as pod IPs) is not applied. The
        bytes stream to a temp file in the store (removed at start-up if the process
        dies mid-download), are checked against the digest and validated like any module.
        """
        timeout = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=30)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            if resp.status != 200:
                raise RuntimeError(f"peer {url} answered {resp.status}")
            body = await read_body(
                resp, what=f"module from peer {url}", max_bytes=self.store_limit,
                expected=f"sha256:{sha256}", kind="module", reference=url,
                into=self.store.root,
            )
        assert body.path is not None  # streamed to a temp file in the store
        try:
            module = await self.store.resolve(
                ModuleSource(kind="file", location=str(body.path), sha256=sha256)
            )
        finally:
            body.path.unlink(missing_ok=True)
        return _resolved(module)

    def stored(self, sha256: str) -> ResolvedModule | None:
        """A module already in the store by digest (no network), or None."""
        module = self.store.get(sha256)
        return _resolved(module) if module is not None else None

    def pin(self, digests: list[str]) -> None:
        """Modules in use: never evicted."""
        self.store.pin(digests)

    def module_path(self, sha256: str) -> Path | None:
        """The stored file of a module by digest, or None."""
        module = self.store.get(sha256)
        return module.path if module is not None else None


def _resolved(module: Module) -> ResolvedModule:
    return ResolvedModule(
        sha256=module.sha256,
        size=module.size,
        path=module.path,
        layout=module.layout,
        reference=module.reference,
        root_ids=tuple(module.root_ids),
        manifest_digest=module.manifest_digest,
        annotations=dict(module.annotations),
    )
