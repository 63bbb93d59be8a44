"""The default module provider: the OCI-capable content-addressed module store."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from xds_server.config import Config, FilterSpec
from xds_server.controller._modules import ResolvedModule
from xds_server.wasm import Module, ModuleSource, ModuleStore, RegistrySettings


class StoreModules:
    """Adapts `xds_server.wasm.ModuleStore` to the controller's `ModuleProvider`."""

    def __init__(self, store: ModuleStore) -> None:
        self.store = store

    @classmethod
    def from_config(cls, config: Config) -> StoreModules:
        """A store under `<data_dir>/modules` with the config's registries and limits."""
        s = config.server
        registries = [
            RegistrySettings(host=r.host, plain_http=r.plain_http, ca_file=r.ca_file,
                             username=r.username, password=r.password)
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
        )
        return cls(store)

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
        """Download a module by digest from a peer replica, verified and stored."""
        return _resolved(await self.store.resolve(ModuleSource(kind="url", location=url, sha256=sha256)))

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
