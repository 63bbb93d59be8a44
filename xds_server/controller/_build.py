"""Build and delivery: a spec and its verified module -> the resources served, and the
cache variants that serve them to the right nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from xds_server.cache import TYPED_EXTENSION_CONFIG, Resource, Variant
from xds_server.config import FilterSpec
from xds_server.controller._context import Context
from xds_server.controller._extension import Code, build_extension_config
from xds_server.controller._model import Deployed, FilterError
from xds_server.controller._modules import ResolvedModule
from xds_server.controller._store import SMALL_MODULE_BYTES
from xds_server.controller.delivery import DeliveryError, delivery_mode
from xds_server.nodes import AllOf, NodeIdSet, Selector
from xds_server.resources import route_instance
from xds_server.state import StateError

log = structlog.get_logger("xds_server.controller")


class Builder:
    """Resolves modules (store, peers, source), builds resources, publishes them.

    `build` changes nothing; `publish` replaces what the cache serves for a name (the
    caller holds the name's lock).
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._instances: dict[str, set[str]] = {}  # filter -> per-route instance names served

    async def build(self, spec: FilterSpec, *, digest: str | None = None) -> Deployed:
        """Resolve and verify the module of `spec` (by `digest` from the store when
        given and present) and build its resource."""
        module = await self._resolve(spec, digest)
        root_id = spec.root_id or (module.root_ids[0] if module.root_ids else "")
        # Reading, copying and hashing a large module happen off the event loop; for a
        # small one the thread hop would cost more than the work.
        offload = module.size > SMALL_MODULE_BYTES
        forms = await asyncio.to_thread(self._forms, spec, module) if offload else self._forms(spec, module)
        resources = []
        for i, code in enumerate(forms):
            message = build_extension_config(spec, code, root_id)
            resources.append(await asyncio.to_thread(Resource.from_message, spec.name, message)
                             if offload or i > 0 else Resource.from_message(spec.name, message))
        if len(resources) == 1:
            return Deployed(spec=spec, module=module, resource=resources[0])
        # Both forms run the same module: a proxy holding either one is current.
        first, alt = resources[0], resources[1]
        return Deployed(spec=spec, module=module, resource=replace(first, aliases=frozenset({alt.version})),
                        alt=replace(alt, aliases=frozenset({first.version})))

    async def _resolve(self, spec: FilterSpec, digest: str | None) -> ResolvedModule:
        module = None
        if digest is not None:
            module = self.ctx.modules.stored(digest) or await self.from_peers(spec, digest)
        if module is None:
            try:
                module = await self.ctx.modules.module_for(spec)
            except Exception as exc:
                raise FilterError(spec.name, f"module {spec.source.location}: {exc}") from exc
        pin = digest or spec.sha256
        if pin and module.sha256 != pin:
            raise FilterError(
                spec.name,
                f"module sha256 {module.sha256} does not match the expected sha256 {pin} "
                f"(source {module.reference})",
            )
        return module

    def _forms(self, spec: FilterSpec, module: ResolvedModule) -> tuple[Code, ...]:
        try:
            forms = delivery_mode(spec.delivery).forms(spec, module, self.ctx.delivery)
        except DeliveryError as exc:
            raise FilterError(spec.name, str(exc), status=400) from exc
        if not 1 <= len(forms) <= 2:
            raise FilterError(spec.name, f"delivery {spec.delivery!r} gave {len(forms)} forms, not 1 or 2",
                              status=500)
        return forms

    async def build_all(self, specs: Sequence[FilterSpec],
                        digests: Sequence[str | None] = ()) -> tuple[Deployed, ...]:
        """`build` every spec (concurrently), pinned by `digests` where given."""
        pins = list(digests) + [None] * (len(specs) - len(digests))
        return tuple(await asyncio.gather(*(self.build(s, digest=d) for s, d in zip(specs, pins, strict=True))))

    async def module_path(self, digest: str) -> Path | None:
        """The stored file of a module by digest; with replicas, fetched from a peer when
        this replica does not hold it (so any replica can answer Envoy's remote fetch)."""
        path = self.ctx.modules.module_path(digest)
        if path is None and digest in self.ctx.digests_in_use():
            module = await self.from_peers(None, digest)
            path = module.path if module is not None else None
        return path

    async def from_peers(self, spec: FilterSpec | None, digest: str) -> ResolvedModule | None:
        """Fetch a module by digest from another replica's store (verified by digest),
        so a replica that starts while the registry is down serves what peers hold."""
        try:
            peers = await self.ctx.state.replicas()
        except StateError:
            return None
        for replica_id, url in sorted(peers.items()):
            if replica_id == self.ctx.replica_id or not url:
                continue
            try:
                module = await self.ctx.modules.fetch_by_digest(
                    digest, f"{url.rstrip('/')}/modules/sha256/{digest}")
            except Exception as exc:
                log.info("peer_fetch_failed", filter=spec.name if spec else None, digest=digest,
                         replica=replica_id, error=str(exc))
                continue
            log.info("peer_fetch", filter=spec.name if spec else None, digest=digest, replica=replica_id)
            return module
        return None

    def publish(self, name: str, deployed: Sequence[Deployed], base: Sequence[Deployed],
                remote_forms: dict[str, int] | None = None) -> None:
        """Serve `deployed` (canary specs to their canary nodes first), `base` to the
        nodes outside a canary, and the other form to nodes in `remote_forms`."""
        variants: list[Variant] = []
        flipped = frozenset(n for n, form in (remote_forms or {}).items() if form == 1)
        if flipped:
            for d in deployed:
                if d.alt is not None:
                    sel = d.spec.selector if d.spec.canary is None else AllOf((d.spec.canary, d.spec.selector))
                    variants.append(Variant(AllOf((NodeIdSet(flipped), sel)), d.alt))
        for d in deployed:
            if d.spec.canary is not None:
                variants.append(Variant(AllOf((d.spec.canary, d.spec.selector)), d.resource))
        variants += [Variant(b.spec.selector, b.resource) for b in base]
        variants += [Variant(d.spec.selector, d.resource) for d in deployed if d.spec.canary is None]
        self.ctx.cache.set(TYPED_EXTENSION_CONFIG, name, variants)
        self._publish_instances(name, deployed, base)
        self.ctx.modules.pin(self.ctx.digests_in_use())

    def _publish_instances(self, name: str, deployed: Sequence[Deployed], base: Sequence[Deployed]) -> None:
        """Serve one ECDS resource per distinct per-route `configuration` of the specs
        (`route_instance(name, configuration)`: the same module, that configuration);
        the route configurations enable each where its rule matches. Instances no spec
        asks for any more are removed."""
        instances: dict[str, list[Variant]] = {}
        ordered: list[tuple[Deployed, Selector]] = [
                   *((d, AllOf((d.spec.canary, d.spec.selector))) for d in deployed if d.spec.canary),
                   *((b, b.spec.selector) for b in base),
                   *((d, d.spec.selector) for d in deployed if d.spec.canary is None)]
        for d, selector in ordered:
            for config in sorted({r.configuration for r in d.spec.routes if r.configuration is not None}):
                instance = route_instance(name, config)
                spec = replace(d.spec, name=instance, configuration=config)
                root_id = spec.root_id or (d.module.root_ids[0] if d.module.root_ids else "")
                message = build_extension_config(spec, self._forms(spec, d.module)[0], root_id)
                instances.setdefault(instance, []).append(
                    Variant(selector, Resource.from_message(instance, message)))
        for instance, variants in instances.items():
            self.ctx.cache.set(TYPED_EXTENSION_CONFIG, instance, variants)
        for gone in self._instances.get(name, set()) - set(instances):
            self.ctx.cache.delete(TYPED_EXTENSION_CONFIG, gone)
        self._instances[name] = set(instances)

    def unpublish(self, name: str) -> None:
        """Stop serving filter `name` and its per-route instances."""
        self.ctx.cache.delete(TYPED_EXTENSION_CONFIG, name)
        for instance in self._instances.pop(name, set()):
            self.ctx.cache.delete(TYPED_EXTENSION_CONFIG, instance)

    async def flip_form(self, name: str, node_id: str) -> None:
        """Serve node `node_id` the other form of `name` (a re-push after a NACK the
        delivery mode treats as transient)."""
        async with self.ctx.lock(name):
            state = self.ctx.filters.get(name)
            if state is None:
                return
            state.remote_forms[node_id] = 1 - state.remote_forms.get(node_id, 0)
            self.publish(name, state.deployed, state.base, state.remote_forms)
            log.info("remote_repush", filter=name, node_id=node_id, form=state.remote_forms[node_id])
