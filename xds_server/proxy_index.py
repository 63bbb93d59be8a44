"""An index over the fleet's proxy records, kept up to date change by change, so that
fleet questions cost what their answer costs, not what the fleet costs.

`ProxyIndex` holds, for every known proxy, its *contribution*: one `Slot` per resource
(filter) it knows, with its connection, cluster, versions, state and NACK message. It
keeps counters of identical slots (a handful of distinct slots even at 10,000
proxies), the node ids in natural order (`natural_key`: `fleet-2` before `fleet-10`)
and a per-node change sequence number. `StatusTracker` calls `update(node_id, proxy)`
after every change of a proxy record and `update(node_id, None)` when it forgets one;
everything else reads.

Used from one thread (the event loop); not thread-safe. Reads never serialize proxy
records.
"""

from __future__ import annotations

import bisect
import fnmatch
import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from xds_server.status import ProxyStatus

__all__ = ["STATES", "ProxyIndex", "ProxyQuery", "QueryError", "Slot", "natural_key", "slots_of"]

STATES = ("ACKED", "NACKED", "REQUESTED", "STALE")
"""The per-resource states (`ResourceStatus.state`)."""

_DIGITS = re.compile(r"(\d+)")
_WILDCARDS = re.compile(r"[*?\[]")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key ordering digit runs by value: `fleet-2` < `fleet-10` < `fleet-10a`."""
    return tuple((1, int(p)) if p.isdecimal() else (0, p) for p in _DIGITS.split(text) if p)


class Slot(NamedTuple):
    """One resource on one proxy, as the counters see it. `message` is Envoy's NACK
    message while `state` is NACKED, else empty. (A tuple: built on every ACK.)"""

    name: str
    connected: bool
    cluster: str
    sent: str
    acked: str
    state: str
    message: str = ""


def slots_of(proxy: ProxyStatus) -> tuple[Slot, ...]:
    """The proxy's contribution to the counters (one slot per resource)."""
    connected, cluster = proxy.connected, proxy.node.cluster
    out = []
    for name, r in proxy.resources.items():
        sent, acked, nack = r.sent, r.acked, r.last_nack
        if nack is not None and nack.version == sent:  # ResourceStatus.state, inlined
            out.append(Slot(name, connected, cluster, sent, acked, "NACKED", nack.message))
        else:
            state = ("ACKED" if acked == sent else "STALE") if sent else "REQUESTED"
            out.append(Slot(name, connected, cluster, sent, acked, state, ""))
    return tuple(out)


class QueryError(ValueError):
    """A proxy query parameter is not acceptable (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class ProxyQuery:
    """Which proxies to list: every part given must match.

    `node`: a glob on the node id (shell syntax; without a wildcard it matches ids that
    contain it). `cluster`: a glob on the cluster. `filter`: the proxy knows this
    resource; `state` and `version` then apply to that resource, else to any of the
    proxy's resources. `version` matches the version sent or ACKed. `cursor`: the last
    node id of the previous page (pages follow natural node order). `limit`: at most this
    many (None: all).
    """

    node: str = ""
    cluster: str = ""
    filter: str = ""
    state: str = ""
    version: str = ""
    limit: int | None = None
    cursor: str = ""

    def __post_init__(self) -> None:
        if self.state and self.state not in STATES:
            raise QueryError(f"state must be one of {', '.join(STATES)}, got {self.state[:40]!r}")
        if self.limit is not None and not 1 <= self.limit <= 10_000:
            raise QueryError("limit must be between 1 and 10000")

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> ProxyQuery:
        """From query parameters (`node`, `cluster`, `filter`, `state`, `version`,
        `limit`, `cursor`; others are ignored); `QueryError` when one is unacceptable."""
        limit = params.get("limit") or None
        if limit is not None and not (limit.isascii() and limit.isdecimal()):
            raise QueryError(f"limit must be a whole number, got {limit[:40]!r}")
        return cls(node=params.get("node", ""), cluster=params.get("cluster", ""),
                   filter=params.get("filter", ""), state=params.get("state", "").upper(),
                   version=params.get("version", ""), limit=None if limit is None else int(limit),
                   cursor=params.get("cursor", ""))

    def matcher(self) -> Callable[[ProxyStatus], bool]:
        """A predicate for one proxy record."""
        node_re = _glob(self.node, contains=True)
        cluster_re = _glob(self.cluster, contains=False)
        name, state, version = self.filter, self.state, self.version

        def resource_ok(r: Any) -> bool:
            return (not state or r.state == state) and (not version or version in (r.sent, r.acked))

        def match(p: ProxyStatus) -> bool:
            if node_re is not None and not node_re.fullmatch(p.node.id):
                return False
            if cluster_re is not None and not cluster_re.fullmatch(p.node.cluster):
                return False
            if name:
                r = p.resources.get(name)
                return r is not None and resource_ok(r)
            if state or version:
                return any(resource_ok(r) for r in p.resources.values())
            return True

        return match


def _glob(pattern: str, *, contains: bool) -> re.Pattern[str] | None:
    if not pattern or pattern == "*":
        return None
    if contains and not _WILDCARDS.search(pattern):
        pattern = f"*{pattern}*"
    return re.compile(fnmatch.translate(pattern))


class ProxyIndex:
    """Counters, natural order and change sequence over the fleet's proxy records
    (see the module docstring). `on_change(node_id)` is called after a node's
    contribution changed (or it was added or forgotten)."""

    def __init__(self, on_change: Callable[[str], None] | None = None) -> None:
        self.slots: Counter[Slot] = Counter()
        self._contrib: dict[str, tuple[Slot, ...]] = {}
        self._order: list[tuple[tuple[tuple[int, int | str], ...], str]] = []
        self._seq: dict[str, int] = {}
        self.seq = 0
        """The newest change's sequence number (0: nothing yet)."""
        self.nack_nodes: dict[tuple[str, str], set[str]] = {}
        """(resource name, NACK message) -> connected nodes whose current version of it
        was NACKed with that message."""
        self._on_change = on_change

    def __len__(self) -> int:
        return len(self._contrib)

    def node_seq(self, node_id: str) -> int:
        """The sequence number of the node's last change (0: unknown)."""
        return self._seq.get(node_id, 0)

    def update(self, node_id: str, proxy: ProxyStatus | None) -> bool:
        """Record the node's current record (None: forgotten); True when its
        contribution changed."""
        new = slots_of(proxy) if proxy is not None else None
        old = self._contrib.get(node_id)
        if new == old and (proxy is None) == (old is None):
            return False
        if old is not None and new is not None and len(old) == len(new):
            # The usual change (one resource sent or ACKed): count only what differs.
            for o, n in zip(old, new, strict=True):
                if o != n:
                    self._count(node_id, (o,), -1)
                    self._count(node_id, (n,), 1)
            self._contrib[node_id] = new
        elif old is not None:
            self._count(node_id, old, -1)
        if new is None:
            self._contrib.pop(node_id, None)
            self._seq.pop(node_id, None)
            key = (natural_key(node_id), node_id)
            i = bisect.bisect_left(self._order, key)
            if i < len(self._order) and self._order[i] == key:
                del self._order[i]
        elif old is None or len(old) != len(new):
            if old is None:
                bisect.insort(self._order, (natural_key(node_id), node_id))
            self._contrib[node_id] = new
            self._count(node_id, new, 1)
        self.seq += 1
        if new is not None:
            self._seq[node_id] = self.seq
        if self._on_change is not None:
            self._on_change(node_id)
        return True

    def _count(self, node_id: str, slots: tuple[Slot, ...], delta: int) -> None:
        counts = self.slots
        for s in slots:
            n = counts.get(s, 0) + delta
            if n:
                counts[s] = n
            else:
                del counts[s]
            if s.state == "NACKED" and s.connected:
                key = (s.name, s.message)
                group = self.nack_nodes.setdefault(key, set())
                if delta > 0:
                    group.add(node_id)
                else:
                    group.discard(node_id)
                    if not group:
                        del self.nack_nodes[key]

    def ordered(self) -> Iterator[str]:
        """Node ids in natural order."""
        for _, node_id in self._order:
            yield node_id

    def position(self, after: str) -> int:
        """Where the nodes after node id `after` (need not be known) start in `ordered()`;
        "" -> 0."""
        return bisect.bisect_right(self._order, (natural_key(after), after)) if after else 0

    def sample(self, nodes: set[str], n: int) -> list[str]:
        """The first `n` of `nodes` in natural order."""
        return [node for _, node in heapq.nsmallest(n, ((natural_key(x), x) for x in nodes))]
