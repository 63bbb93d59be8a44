"""The resource cache: named resources per type, each with per-node variants, and watches."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from xds_server.cache._resource import Resource, collection_version
from xds_server.nodes import NodeInfo, NodeSelector, Selector

__all__ = ["ResourceCache", "Snapshot", "Variant", "Watch"]

WatchCallback = Callable[[str, str], None]
"""Called as `callback(type_url, name)` when a watched resource may have changed."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One resource version served to the nodes `selector` matches.

    Variants of a name are tried in order; the first whose selector matches a node is
    the one that node gets. A name with no matching variant does not exist for it.
    """

    selector: Selector
    resource: Resource


class Watch:
    """A registration for change notifications; `cancel()` is idempotent."""

    __slots__ = ("_cache", "_callback", "_names", "_type_url", "_wildcard", "cancelled")

    def __init__(
        self,
        cache: ResourceCache,
        type_url: str,
        names: frozenset[str],
        wildcard: bool,
        callback: WatchCallback,
    ) -> None:
        self._cache = cache
        self._type_url = type_url
        self._names = names
        self._wildcard = wildcard
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop notifications. Safe to call more than once."""
        if not self.cancelled:
            self.cancelled = True
            self._cache._remove_watch(self)


class Snapshot:
    """What one subscription resolves to at one point: the resources (sorted by name),
    their versions (name -> version) and the SotW `version_info` of that set.

    Shared by every stream with the same subscription while the type does not change
    (when no variant of its names depends on the node), so it must not be modified:
    `versions` is handed to stream callbacks as is.
    """

    __slots__ = ("key", "resources", "version_info", "versions")

    def __init__(self, resources: tuple[Resource, ...]) -> None:
        self.resources = resources
        self.versions: dict[str, str] = {r.name: r.version for r in resources}
        self.version_info = collection_version(self.versions)
        self.key: tuple[str, ...] = (self.version_info, *(r.version for r in resources))


_MATCH_ALL = NodeSelector()
_SNAPSHOT_MEMO = 4096


@dataclass(slots=True)
class _TypeEntry:
    variants: dict[str, tuple[Variant, ...]] = field(default_factory=dict)
    by_name: dict[str, set[Watch]] = field(default_factory=dict)
    wildcard: set[Watch] = field(default_factory=set)
    # Names whose resolution depends on the node (the first variant does not match all).
    per_node: set[str] = field(default_factory=set)
    # (names, wildcard) -> Snapshot, valid until the type next changes.
    snapshots: dict[tuple[frozenset[str], bool], Snapshot] = field(default_factory=dict)


class ResourceCache:
    """Holds the resources the server serves, per type URL and resource name.

    Concurrency: used from one event loop; no method awaits. Resources are immutable,
    so a `Resource` handed out stays valid after the cache moves on to a new version.
    Watch callbacks run synchronously inside `set`/`delete` and must only record that
    something changed (e.g. set a flag and wake a task), never block or raise.
    """

    def __init__(self) -> None:
        self._types: dict[str, _TypeEntry] = {}

    def _entry(self, type_url: str) -> _TypeEntry:
        entry = self._types.get(type_url)
        if entry is None:
            entry = self._types[type_url] = _TypeEntry()
        return entry

    def set(self, type_url: str, name: str, variants: Sequence[Variant]) -> bool:
        """Replace all variants of `name`; notify its watchers if anything changed.

        An empty `variants` deletes the name. Returns True when the stored variants
        changed (same selectors and versions in the same order count as unchanged).
        """
        entry = self._entry(type_url)
        new = tuple(variants)
        old = entry.variants.get(name, ())
        if _same(old, new):
            return False
        if new:
            entry.variants[name] = new
        else:
            entry.variants.pop(name, None)
        if new and new[0].selector != _MATCH_ALL:
            entry.per_node.add(name)
        else:
            entry.per_node.discard(name)
        entry.snapshots.clear()
        self._notify(entry, type_url, name)
        return True

    def delete(self, type_url: str, name: str) -> bool:
        """Remove `name`; returns True if it existed."""
        return self.set(type_url, name, ())

    def resolve(self, type_url: str, name: str, node: NodeInfo) -> Resource | None:
        """The resource `node` gets for `name`, or None if none of its variants match."""
        entry = self._types.get(type_url)
        if entry is None:
            return None
        for variant in entry.variants.get(name, ()):
            if variant.selector.matches(node):
                return variant.resource
        return None

    def snapshot(
        self, type_url: str, names: frozenset[str], wildcard: bool, node: NodeInfo
    ) -> Snapshot:
        """What `node` gets for a subscription to `names` (or, with `wildcard`, to every
        name as well): the resources that resolve, sorted by name.

        Computed once per subscription and cache change, and shared between nodes,
        unless a variant of a name in scope depends on the node.
        """
        entry = self._types.get(type_url)
        if entry is None:
            return _EMPTY
        key = (names, wildcard)
        snap = entry.snapshots.get(key)
        if snap is not None:
            return snap
        scope = set(names)
        if wildcard:
            scope.update(entry.variants)
        found = []
        for name in sorted(scope):
            resource = self.resolve(type_url, name, node)
            if resource is not None:
                found.append(resource)
        snap = Snapshot(tuple(found))
        if entry.per_node.isdisjoint(scope):
            if len(entry.snapshots) >= _SNAPSHOT_MEMO:
                entry.snapshots.pop(next(iter(entry.snapshots)))
            entry.snapshots[key] = snap
        return snap

    def variants(self, type_url: str, name: str) -> tuple[Variant, ...]:
        """All variants of `name`, in resolution order."""
        entry = self._types.get(type_url)
        return entry.variants.get(name, ()) if entry else ()

    def names(self, type_url: str) -> list[str]:
        """Every resource name of the type, sorted."""
        entry = self._types.get(type_url)
        return sorted(entry.variants) if entry else []

    def watch(
        self,
        type_url: str,
        names: Iterable[str],
        callback: WatchCallback,
        *,
        wildcard: bool = False,
    ) -> Watch:
        """Call `callback` whenever one of `names` (or, with `wildcard`, any name) changes."""
        entry = self._entry(type_url)
        w = Watch(self, type_url, frozenset(names), wildcard, callback)
        if wildcard:
            entry.wildcard.add(w)
        for name in w._names:
            entry.by_name.setdefault(name, set()).add(w)
        return w

    def watcher_count(self, type_url: str) -> int:
        """How many watches exist for the type (for metrics and tests)."""
        entry = self._types.get(type_url)
        if entry is None:
            return 0
        watches: set[Watch] = set(entry.wildcard)
        for ws in entry.by_name.values():
            watches |= ws
        return len(watches)

    def _remove_watch(self, w: Watch) -> None:
        entry = self._types.get(w._type_url)
        if entry is None:
            return
        entry.wildcard.discard(w)
        for name in w._names:
            ws = entry.by_name.get(name)
            if ws is not None:
                ws.discard(w)
                if not ws:
                    del entry.by_name[name]

    def _notify(self, entry: _TypeEntry, type_url: str, name: str) -> None:
        for w in tuple(entry.by_name.get(name, ())):
            w._callback(type_url, name)
        for w in tuple(entry.wildcard):
            if name not in w._names:
                w._callback(type_url, name)


_EMPTY = Snapshot(())


def _same(a: tuple[Variant, ...], b: tuple[Variant, ...]) -> bool:
    return len(a) == len(b) and all(
        x.selector == y.selector and x.resource.version == y.resource.version
        for x, y in zip(a, b, strict=True)
    )
