"""`ResourceManager`: desired listeners, routes, clusters and endpoints -> revisions in
the state store -> consistent, ordered updates of the cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog

from xds_server.cache import Resource, ResourceCache, Variant
from xds_server.nodes import NodeIdSet, selectors_overlap
from xds_server.resources._consistency import Served, check_consistent, serve_all
from xds_server.resources._kinds import KINDS, PUBLISH_ORDER, Kind
from xds_server.resources._metrics import RESOURCE_CHANGES, RESOURCE_PINS
from xds_server.resources._model import ResourceConflict, ResourceError, ResourceSpec, WasmFilterRef
from xds_server.resources._parse import parse_resource
from xds_server.state import ANY_REVISION, Conflict, Revision, StateError, StateStore

__all__ = ["KEY_PREFIX", "ResourceManager", "is_resource_key", "resource_key"]

log = structlog.get_logger("xds_server.resources")

KEY_PREFIX = "@"
"""Resource revisions share the state store with filters under `@<kind>/<name>`
(no filter name starts with `@`)."""

Key = tuple[str, str]


def resource_key(kind: str, name: str) -> str:
    """The state store name of resource `kind`/`name`."""
    return f"{KEY_PREFIX}{kind}/{name}"


def is_resource_key(name: str) -> bool:
    """Whether a state store name is a resource's (not a filter's)."""
    return name.startswith(KEY_PREFIX)


def _split_key(store_name: str) -> Key:
    kind, _, name = store_name.removeprefix(KEY_PREFIX).partition("/")
    return kind, name


def _hash(specs: Sequence[ResourceSpec]) -> str:
    data = json.dumps([s.to_dict() for s in specs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


class ResourceManager:
    """Keeps the cache's LDS/RDS/CDS/EDS resources equal to the current revisions.

    Every change is checked against the whole desired set (a listener's route
    configuration, a route's clusters, an EDS cluster's endpoints and the wasm filters
    it names must exist: refused with 409 otherwise), recorded as a revision, then
    published in Envoy's warming order. `filters()` gives this server's wasm filters
    by name (type and per-route rules); call `refresh()` when they change.

    Concurrency: one event loop; changes are serialized by one lock (a change is
    decided against the whole set). Raises `ResourceError` with an HTTP status.
    """

    def __init__(self, cache: ResourceCache, state: StateStore,
                 filters: Callable[[], Mapping[str, WasmFilterRef]]) -> None:
        self.cache = cache
        self.state = state
        self.filters = filters
        self.specs: dict[Key, tuple[ResourceSpec, ...]] = {}
        self.revisions: dict[Key, Revision] = {}
        self.served: Served = {}
        self.problems: list[str] = []
        self.removal_delay = 1.0
        """Seconds between a change's updates and its removals (see `_publish`)."""
        self._kept: set[Key] = set()
        self.pins: dict[Key, dict[str, Resource]] = {}
        """Per resource, node id -> the last good version that node keeps after it NACKed
        the current one (until the resource changes again)."""
        self._recent: dict[Key, dict[str, Resource]] = {}  # versions served lately, by version
        self._lock = asyncio.Lock()

    # -- reads ------------------------------------------------------------------------

    def view(self, kind: str, name: str) -> dict[str, Any]:
        """GET form of one resource: its specs as written, revision, served versions."""
        key = (self._kind(kind).key, name)
        specs = self.specs.get(key)
        if specs is None:
            raise ResourceError(f"{kind}/{name}", "", "no such resource", status=404)
        rev = self.revisions.get(key)
        versions = [v.resource.version for v in self.cache.variants(self._kind(kind).type_url, name)]
        return {"kind": kind, "name": name, "revision": rev.revision if rev else None,
                "specs": [s.to_dict() for s in specs], "versions": versions}

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of `kind`, by name."""
        k = self._kind(kind).key
        return [self.view(k, n) for (kk, n) in sorted(self.specs) if kk == k]

    def heads(self) -> dict[str, tuple[int, list[str]]]:
        """Per resource, by proxy status key `kind/name`: its current revision and the
        xDS versions served to the nodes its specs select (a NACKing node's kept version
        aside)."""
        out: dict[str, tuple[int, list[str]]] = {}
        for (kind, name) in sorted(self.specs):
            rev = self.revisions.get((kind, name))
            kept = {r.version for r in self.pins.get((kind, name), {}).values()}
            versions = [v.resource.version for v in self.cache.variants(KINDS[kind].type_url, name)
                        if v.resource.version not in kept]
            out[f"{kind}/{name}"] = (rev.revision if rev else 0, versions)
        return out

    async def history(self, kind: str, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Revisions of one resource, newest first."""
        revs = await self.state.history(resource_key(self._kind(kind).key, name), limit)
        if not revs:
            raise ResourceError(f"{kind}/{name}", "", "no such resource", status=404)
        return [r.to_dict() for r in revs]

    def filter_users(self, filter_name: str) -> str | None:
        """Which served listeners name wasm filter `filter_name`, or None: a delete
        guard for filters (a filter is removed after its users are gone)."""
        users = sorted(name for (kind, name), variants in self.served.items()
                       if kind == "listeners" and any(filter_name in r.filters for _s, _m, r in variants))
        return f"listener {', '.join(map(repr, users))} names it" if users else None

    def on_nack(self, node_id: str, refused: Mapping[str, str], acked: Callable[[str], str]) -> None:
        """A proxy refused versions (`refused`: status key `kind/name` -> version): it keeps
        the version it ACKed before (`acked(key)`), and so does what the server sends it,
        so a full-state response (LDS, CDS) never carries the refused one again. The pin
        holds until the resource changes."""
        changed: set[Key] = set()
        for status_key, version in refused.items():
            kind, _, name = status_key.partition("/")
            key = (kind, name)
            good = self._recent.get(key, {}).get(acked(status_key))
            if kind not in KINDS or good is None or good.version == version:
                continue
            self.pins.setdefault(key, {})[node_id] = good
            RESOURCE_PINS.labels(kind).inc()
            changed.add(key)
            log.warning("resource_nacked", kind=kind, name=name, node_id=node_id, refused=version,
                        keeps=good.version)
        if changed:
            self._publish(self.served, keep=self._kept)

    # -- changes ----------------------------------------------------------------------

    def parse(self, kind: str, name: str, items: Sequence[Any], *, where: str) -> list[ResourceSpec]:
        """Parse an API body's specs for `kind`/`name` (each must carry that name)."""
        k = self._kind(kind)
        specs = [parse_resource(k, d, where=where, path=f"specs[{i}]") for i, d in enumerate(items)]
        for i, s in enumerate(specs):
            if s.name != name:
                raise ResourceError(where, f"specs[{i}].{k.name_field}",
                                    f"names {s.name!r}, not {name!r}")
        check_selectors(specs, where=where, path="specs")
        return specs

    async def put(self, kind: str, name: str, specs: Sequence[ResourceSpec], *, author: str,
                  action: str = "deploy", summary: str = "", expect_revision: int | None = None,
                  config_hash: str | None = None) -> dict[str, Any]:
        """Make `specs` (one per disjoint selector) the resource's new revision."""
        k = self._kind(kind).key
        if not specs:
            raise ResourceError(f"{k}/{name}", "", "no specs given")
        async with self._lock:
            await self._change({(k, name): tuple(specs)}, author=author, action=action,
                               summary=summary, expect={(k, name): expect_revision},
                               hashes={(k, name): config_hash})
        return self.view(k, name)

    async def delete(self, kind: str, name: str, *, author: str) -> int:
        """Stop serving a resource; refused (409) while another resource refers to it."""
        key = (self._kind(kind).key, name)
        async with self._lock:
            if key not in self.specs:
                raise ResourceError(f"{kind}/{name}", "", "no such resource", status=404)
            revs = await self._change({key: ()}, author=author, action="delete", summary="deleted",
                                      expect={key: None}, hashes={key: None})
            return revs[key].revision

    async def rollback(self, kind: str, name: str, *, author: str,
                       to: int | None = None) -> dict[str, Any]:
        """Serve an earlier revision's content again as a new revision (default: the
        newest earlier one whose content differs)."""
        k = self._kind(kind)
        store_name = resource_key(k.key, name)
        current = self.revisions.get((k.key, name))
        history = await self.state.history(store_name, limit=1000)
        if to is not None:
            target = next((r for r in history if r.revision == to and not r.deleted), None)
        else:
            target = next((r for r in history if not r.deleted and current is not None
                           and r.revision < current.revision and r.specs != current.specs), None)
        if target is None:
            raise ResourceError(f"{k.key}/{name}", "",
                                f"no revision {to} with content" if to is not None
                                else "no earlier revision to roll back to", status=404)
        specs = [parse_resource(k, d, where=f"revision {target.revision}", path=f"specs[{i}]")
                 for i, d in enumerate(target.specs)]
        return await self.put(k.key, name, specs, author=author, action="rollback",
                              summary=f"rollback to revision {target.revision}")

    async def apply_config(self, specs: Iterable[ResourceSpec], *, author: str) -> list[str]:
        """Apply the config file's `resources` where they changed since the file last
        said something of them (API changes survive a restart); names the file no
        longer lists are removed if they came from it. All or nothing: an inconsistent
        result changes nothing. Returns the problems (empty when applied)."""
        by_key: dict[Key, list[ResourceSpec]] = {}
        for s in specs:
            by_key.setdefault((s.kind, s.name), []).append(s)
        async with self._lock:
            heads = {_split_key(n): v for n, v in (await self.state.config_heads()).items()
                     if is_resource_key(n)}
            changes: dict[Key, tuple[ResourceSpec, ...]] = {}
            hashes: dict[Key, str | None] = {}
            for key, group in by_key.items():
                h = _hash(group)
                if heads.get(key, (0, None))[1] != h:
                    changes[key], hashes[key] = tuple(group), h
            for key, (_, old) in heads.items():
                if old is not None and key not in by_key and key in self.specs:
                    changes[key], hashes[key] = (), None
            if not changes:
                return []
            try:
                # Decided from the store's heads: a compare-and-set on them, so replicas
                # applying the same file record it once.
                await self._change(changes, author=author, action="config",
                                   summary="from the configuration file",
                                   expect={k: heads.get(k, (0, None))[0] for k in changes}, hashes=hashes)
                return []
            except ResourceConflict as exc:
                await self._load()  # another replica applied it first: serve what it recorded
                heads = {_split_key(n): v for n, v in (await self.state.config_heads()).items()
                         if is_resource_key(n)}
                if all(heads.get(k, (0, None))[1] == h for k, h in hashes.items()):
                    return []
                log.error("resources_rejected", error=str(exc), author=author)
                return [str(exc)]
            except ResourceError as exc:
                log.error("resources_rejected", error=str(exc), author=author)
                return [str(exc)]

    async def _change(self, changes: Mapping[Key, tuple[ResourceSpec, ...]], *, author: str,
                      action: str, summary: str, expect: Mapping[Key, int | None],
                      hashes: Mapping[Key, str | None]) -> dict[Key, Revision]:
        """Check the whole set with `changes` applied, record, publish (lock held);
        returns the revisions recorded."""
        desired = dict(self.specs)
        for key, specs in changes.items():
            if specs:
                desired[key] = specs
            else:
                desired.pop(key, None)
        served = serve_all((s for group in desired.values() for s in group), self.filters())
        problems = check_consistent(served)
        if problems:
            for kind, _name in changes:
                RESOURCE_CHANGES.labels(kind, action, "inconsistent").inc()
            raise ResourceError(", ".join(f"{k}/{n}" for k, n in sorted(changes)), "",
                                "inconsistent: " + "; ".join(problems), status=409)
        recorded: dict[Key, Revision] = {}
        for key, specs in sorted(changes.items()):
            if specs and key in self.specs and _hash(specs) == _hash(self.specs[key]):
                if hashes.get(key) is not None:
                    await self.state.set_config_hash(resource_key(*key), hashes[key])
                RESOURCE_CHANGES.labels(key[0], action, "unchanged").inc()
                continue  # same content: nothing to record
            try:
                recorded[key] = await self._record(
                    key, specs, served, author=author, action=action, summary=summary,
                    expect=expect.get(key), config_hash=hashes.get(key))
            except ResourceError:
                if recorded:  # part of the change is recorded: serve what the store holds
                    await self._load()
                raise
            if not specs and action == "config":
                await self.state.set_config_hash(resource_key(*key), None)
        self.specs = desired
        for key in changes:
            self.pins.pop(key, None)  # a new version: proxies that refused the old one get it
        self._publish(served)
        return recorded

    async def _record(self, key: Key, specs: tuple[ResourceSpec, ...], served: Served, *,
                      author: str, action: str, summary: str, expect: int | None,
                      config_hash: str | None) -> Revision:
        current = self.revisions.get(key)
        expect_current = expect if expect is not None else (
            current.revision if current is not None else ANY_REVISION)
        versions = [Resource.from_message(key[1], m).version for _s, m, _r in served.get(key, [])]
        try:
            rev = await self.state.append(
                resource_key(*key), author=author, action=action,
                summary=summary or ("deleted" if not specs else f"{len(specs)} spec(s)"),
                specs=[s.to_dict() for s in specs], digests=[], versions=versions,
                config_hash=config_hash, expect_current=expect_current)
        except Conflict as exc:
            RESOURCE_CHANGES.labels(key[0], action, "conflict").inc()
            raise ResourceConflict(f"{key[0]}/{key[1]}", "", f"{exc}; retry the change", status=409) from exc
        except StateError as exc:
            RESOURCE_CHANGES.labels(key[0], action, "error").inc()
            raise ResourceError(f"{key[0]}/{key[1]}", "", str(exc), status=503) from exc
        RESOURCE_CHANGES.labels(key[0], action, "applied").inc()
        if specs:
            self.revisions[key] = rev
        else:
            self.revisions.pop(key, None)
        log.info("resource_version", kind=key[0], name=key[1], revision=rev.revision, action=action,
                 versions=versions, author=author)
        return rev

    # -- serving ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-derive what is served (the wasm filters changed). A resource that became
        inconsistent keeps serving what it served (logged as `resource_inconsistent`)."""
        served = serve_all((s for g in self.specs.values() for s in g), self.filters())
        self.problems = check_consistent(served)
        for p in self.problems:
            log.warning("resource_inconsistent", problem=p)
        bad = {key for key, variants in served.items() if any(r.problems for _s, _m, r in variants)}
        self._publish({k: v for k, v in served.items() if k not in bad}, keep=bad)

    def _publish(self, served: Served, keep: Iterable[Key] = ()) -> None:
        """Set the cache in warming order (clusters, endpoints, listeners, routes), then
        remove what is gone, users before what they use. When the same change also
        updated resources (e.g. a route moved off the cluster being removed), the
        removals follow `removal_delay` seconds later, so Envoy takes the users' update
        first and no route points at a cluster it no longer has. Nodes with a pin get
        their pinned version first."""
        self.served = served
        self._kept = kept = set(keep)
        updated = False
        for kind in PUBLISH_ORDER:
            for (k, name), variants in sorted(served.items()):
                if k == kind.key:
                    updated |= self.cache.set(kind.type_url, name, self._variants((k, name), variants))
        gone = [(kind, name) for kind in reversed(PUBLISH_ORDER) for name in self.cache.names(kind.type_url)
                if (kind.key, name) not in served and (kind.key, name) not in kept]
        if gone and updated and self.removal_delay > 0:
            asyncio.get_running_loop().call_later(self.removal_delay, self._remove, gone)
        else:
            self._remove(gone)

    def _variants(self, key: Key, served: list[tuple[ResourceSpec, Any, Any]]) -> list[Variant]:
        """The cache variants of one resource: pinned nodes first, then one per spec."""
        resources = [(spec, Resource.from_message(key[1], message)) for spec, message, _refs in served]
        recent = self._recent.setdefault(key, {})
        for _spec, r in resources:
            recent.pop(r.version, None)
            recent[r.version] = r
        while len(recent) > 8:
            recent.pop(next(iter(recent)))
        by_resource: dict[str, tuple[Resource, set[str]]] = {}
        for node_id, r in self.pins.get(key, {}).items():
            by_resource.setdefault(r.version, (r, set()))[1].add(node_id)
        return [*(Variant(NodeIdSet(frozenset(nodes)), r) for r, nodes in by_resource.values()),
                *(Variant(spec.selector, r) for spec, r in resources)]

    def _remove(self, gone: list[tuple[Kind, str]]) -> None:
        for kind, name in gone:
            if (kind.key, name) not in self.served:  # not brought back meanwhile
                self.cache.delete(kind.type_url, name)

    async def restore(self) -> list[str]:
        """Serve every resource's current revision from the state store (a restart, or
        another replica's change); returns the consistency problems (logged)."""
        async with self._lock:
            await self._load()
            return self.problems

    async def reconcile(self) -> None:
        """Catch up with the store when another replica changed a resource (covers lost
        notifications): reloads when a current revision differs from the one served."""
        current = {_split_key(r.filter): r.revision for r in await self.state.current_all()
                   if is_resource_key(r.filter)}
        if current != {k: r.revision for k, r in self.revisions.items()}:
            await self.restore()

    async def _load(self) -> None:
        """Read every current revision and serve it (lock held)."""
        desired: dict[Key, tuple[ResourceSpec, ...]] = {}
        revisions: dict[Key, Revision] = {}
        for rev in await self.state.current_all():
            if not is_resource_key(rev.filter):
                continue
            key = _split_key(rev.filter)
            kind = KINDS.get(key[0])
            if kind is None:
                continue
            desired[key] = tuple(parse_resource(kind, d, where=f"stored {rev.filter}", path=f"specs[{i}]")
                                 for i, d in enumerate(rev.specs))
            revisions[key] = rev
        self.specs, self.revisions = desired, revisions
        self.refresh()

    def _kind(self, kind: str) -> Kind:
        k = KINDS.get(kind)
        if k is None:
            raise ResourceError(kind, "", "unknown kind: one of " + ", ".join(KINDS), status=404)
        return k


def check_selectors(specs: Sequence[ResourceSpec], *, where: str, path: str) -> None:
    """Refuse two specs of one kind and name whose selectors may match the same node."""
    for i, a in enumerate(specs):
        for j in range(i + 1, len(specs)):
            b = specs[j]
            if (a.kind, a.name) == (b.kind, b.name) and selectors_overlap(a.selector, b.selector):
                raise ResourceError(where, f"{path}[{j}].selector",
                                    f"overlaps {path}[{i}].selector for {a.kind} {a.name!r}; a node "
                                    "must match at most one spec of a name")
