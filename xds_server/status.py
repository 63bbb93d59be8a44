"""Per-proxy status: which Envoy is connected, what it was sent, ACKed and refused.

Implements `xds_server.xds.StreamCallbacks`, so the protocol loop reports into it
without knowing what is done with the reports.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from xds_server.nodes import NodeInfo
from xds_server.proxy_index import ProxyIndex, ProxyQuery
from xds_server.xds import StreamInfo

__all__ = ["Nack", "ProxyStatus", "ResourceStatus", "StatusEvent", "StatusTracker"]


@dataclass(slots=True)
class Nack:
    """One rejection: which version, Envoy's message, when."""

    version: str
    code: int
    message: str
    at: float


@dataclass(slots=True)
class ResourceStatus:
    """One resource on one proxy."""

    name: str
    type_url: str
    sent: str = ""
    sent_at: float | None = None
    acked: str = ""
    acked_at: float | None = None
    last_nack: Nack | None = None

    @property
    def state(self) -> str:
        """CSDS-like: ACKED, NACKED (current version refused), REQUESTED or STALE."""
        if self.last_nack is not None and self.last_nack.version == self.sent:
            return "NACKED"
        if self.sent and self.acked == self.sent:
            return "ACKED"
        if not self.sent:
            return "REQUESTED"
        return "STALE"


@dataclass(slots=True)
class ProxyStatus:
    """One Envoy (by node id): where it connects from and each resource's state."""

    node: NodeInfo
    address: str
    connected_since: float
    streams: set[int] = field(default_factory=set)
    disconnected_at: float | None = None
    resources: dict[str, ResourceStatus] = field(default_factory=dict)
    replica: str = ""
    remote_connected: bool = False  # for proxies of other replicas: as they reported

    @property
    def connected(self) -> bool:
        """True while at least one stream of the node is open."""
        return bool(self.streams) or self.remote_connected

    @classmethod
    def from_dict(cls, view: Mapping[str, Any]) -> ProxyStatus:
        """Rebuild from `to_dict()` output (another replica's report)."""
        node = NodeInfo(id=view["node_id"], cluster=view.get("cluster", ""),
                        metadata=view.get("metadata") or {},
                        user_agent_version=view.get("envoy_version", ""))
        resources = {}
        for name, r in (view.get("resources") or {}).items():
            nack = r.get("last_nack")
            resources[name] = ResourceStatus(
                name=name, type_url=r.get("type_url", ""), sent=r.get("version_sent", ""),
                sent_at=r.get("sent_at"), acked=r.get("version_acked", ""), acked_at=r.get("acked_at"),
                last_nack=None if not nack else Nack(nack["version"], nack["code"], nack["message"], nack["at"]),
            )
        return cls(node=node, address=view.get("address", ""),
                   connected_since=view.get("connected_since") or 0.0,
                   disconnected_at=view.get("disconnected_at"), resources=resources,
                   replica=view.get("replica", ""), remote_connected=bool(view.get("connected")))

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the admin API."""
        return {
            "node_id": self.node.id,
            "cluster": self.node.cluster,
            "metadata": dict(self.node.metadata),
            "envoy_version": self.node.user_agent_version,
            "address": self.address,
            "replica": self.replica,
            "connected": self.connected,
            "connected_since": self.connected_since,
            "disconnected_at": self.disconnected_at,
            "resources": {
                name: {
                    "type_url": r.type_url,
                    "state": r.state,
                    "version_sent": r.sent,
                    "sent_at": r.sent_at,
                    "version_acked": r.acked,
                    "acked_at": r.acked_at,
                    "last_nack": None if r.last_nack is None else {
                        "version": r.last_nack.version,
                        "code": r.last_nack.code,
                        "message": r.last_nack.message,
                        "at": r.last_nack.at,
                    },
                }
                for name, r in sorted(self.resources.items())
            },
        }


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A change worth telling watchers: connect, disconnect, ack, nack."""

    kind: str
    node_id: str
    resources: Mapping[str, str] = field(default_factory=dict)
    message: str = ""
    at: float = field(default_factory=time.time)


Listener = Callable[[StatusEvent], None]

_KIND_OF_TYPE = {
    "type.googleapis.com/envoy.config.listener.v3.Listener": "listeners",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "routes",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "clusters",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": "endpoints",
}


def status_key(type_url: str, name: str) -> str:
    """The key of a resource in a proxy's `resources`: a wasm filter by its name, an
    Envoy resource as `<kind>/<name>` (`clusters/web`, `endpoints/web`: a cluster and
    its endpoints share a name)."""
    kind = _KIND_OF_TYPE.get(type_url)
    return f"{kind}/{name}" if kind else name


def resource_name(type_url: str, key: str) -> str:
    """The xDS resource name of status key `key` (the inverse of `status_key`)."""
    kind = _KIND_OF_TYPE.get(type_url)
    return key.removeprefix(f"{kind}/") if kind else key


def _keyed(type_url: str, resources: Mapping[str, str]) -> Mapping[str, str]:
    if type_url not in _KIND_OF_TYPE:
        return resources
    return {status_key(type_url, n): v for n, v in resources.items()}


def _resource(proxy: ProxyStatus, name: str, type_url: str) -> ResourceStatus:
    """The proxy's status record of `name`, created on first use."""
    r = proxy.resources.get(name)
    if r is None:
        r = proxy.resources[name] = ResourceStatus(name=name, type_url=type_url)
    return r


def _mark_sent(r: ResourceStatus, version: str, now: float) -> None:
    r.sent, r.sent_at = version, now


def _mark_acked(r: ResourceStatus, version: str, now: float) -> None:
    r.acked, r.acked_at = version, now


class _XdsStats:
    """One tracker's protocol counters as plain integers, read by Prometheus at scrape
    time.

    prometheus_client takes a lock on every `inc()`; at fleet scale (one ACK per proxy
    per push) that lock cost more than the ACK itself, so the hot path only adds to
    ints owned by the event loop, and a collector turns them into metrics.
    """

    def __init__(self) -> None:
        self.streams: Counter[tuple[str, str]] = Counter()
        self.proxies = 0
        self.responses = 0
        self.acks = 0
        self.nacks: Counter[str] = Counter()


class _StatsCollector:
    """The `xds_server_*` protocol metrics of one Prometheus registry: the sum over the
    live trackers registered on it (one per server; several when a process runs
    several, as tests do). A tracker that is garbage-collected drops out."""

    def __init__(self) -> None:
        self.members: weakref.WeakSet[_XdsStats] = weakref.WeakSet()

    def collect(self) -> Iterator[Any]:
        total = _XdsStats()
        for m in tuple(self.members):
            total.streams.update(m.streams)
            total.nacks.update(m.nacks)
            total.proxies += m.proxies
            total.responses += m.responses
            total.acks += m.acks
        streams = GaugeMetricFamily("xds_server_streams", "Open xDS streams", labels=["service", "mode"])
        for (service, mode), n in sorted(total.streams.items()):
            streams.add_metric([service, mode], n)
        yield streams
        yield GaugeMetricFamily("xds_server_proxies_connected",
                                "Envoys with at least one open stream (this replica)", value=total.proxies)
        yield CounterMetricFamily("xds_server_responses", "xDS responses written", value=total.responses)
        yield CounterMetricFamily("xds_server_acks", "Responses ACKed by Envoys", value=total.acks)
        nacks = CounterMetricFamily("xds_server_nacks", "Responses NACKed by Envoys, by resource",
                                    labels=["resource"])
        for name, n in sorted(total.nacks.items()):
            nacks.add_metric([name], n)
        yield nacks


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, _StatsCollector] = weakref.WeakKeyDictionary()


def _register(stats: _XdsStats, registry: CollectorRegistry) -> None:
    """Export `stats` through `registry` (its collector is registered on first use)."""
    collector = _COLLECTORS.get(registry)
    if collector is None:
        collector = _COLLECTORS[registry] = _StatsCollector()
        registry.register(collector)
    collector.members.add(stats)


class StatusTracker:
    """Collects per-proxy status from stream callbacks.

    Disconnected proxies are kept for `retention` seconds so an operator sees that a
    proxy left. Listeners are called synchronously with each `StatusEvent`; they must
    not block or raise. Its protocol counters are exported through `registry`
    (default: prometheus_client's; None: not exported), summed with those of the other
    trackers on the same registry.
    """

    def __init__(
        self, *, retention: float = 3600.0, replica_id: str = "",
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.stats = _XdsStats()
        if registry is not None:
            _register(self.stats, registry)
        self.retention = retention
        self.replica_id = replica_id
        self.local: dict[str, ProxyStatus] = {}
        self.remote: dict[str, ProxyStatus] = {}
        self._expired_at = 0.0
        self._listeners: list[Listener] = []
        self._change_listeners: list[Callable[[str], None]] = []
        self.index = ProxyIndex(self._changed)
        """Counters and natural order over `proxies`, kept current by every change."""

    @property
    def proxies(self) -> dict[str, ProxyStatus]:
        """Every known proxy of the fleet: this replica's, and (with a shared database)
        the other replicas'. A connected entry wins over a disconnected one; this
        replica's own view wins a tie."""
        if not self.remote:
            return self.local
        merged = dict(self.remote)
        for node_id, proxy in self.local.items():
            other = merged.get(node_id)
            if other is None or proxy.connected or not other.connected:
                merged[node_id] = proxy
        return merged

    def local_views(self) -> dict[str, dict[str, Any]]:
        """This replica's proxies as JSON views (what it publishes to the others)."""
        return {k: p.to_dict() for k, p in self.local.items()}

    def set_remote(self, views: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the other replicas' proxies (JSON views with `replica`)."""
        before = self.remote
        self.remote = {
            k: ProxyStatus.from_dict(v) for k, v in views.items() if v.get("replica") != self.replica_id
        }
        for node_id in before.keys() | self.remote.keys():
            self._touch(node_id)

    def proxy(self, node_id: str) -> ProxyStatus | None:
        """The record `proxies` shows for `node_id` (the merge rule, for one node),
        without building the merged mapping."""
        local, remote = self.local.get(node_id), self.remote.get(node_id)
        if local is None or remote is None:
            return local or remote
        return local if local.connected or not remote.connected else remote

    def _touch(self, node_id: str) -> None:
        """Bring the index up to date for `node_id` after its record changed."""
        self.index.update(node_id, self.proxy(node_id))

    def subscribe_changes(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call `listener(node_id)` after a proxy's state changed in a way the index
        sees (connection, versions, state, NACK message; added or forgotten). Must not
        block or raise. Returns a function that unsubscribes."""
        self._change_listeners.append(listener)
        return lambda: self._change_listeners.remove(listener) if listener in self._change_listeners else None

    def _changed(self, node_id: str) -> None:
        for listener in tuple(self._change_listeners):
            listener(node_id)

    def query(self, q: ProxyQuery) -> tuple[list[ProxyStatus], int, str]:
        """Proxies matching `q` in natural node order: (one page, how many match in
        all, the cursor of the next page or "" when this is the last). One pass over the
        records with a cheap predicate; nothing is serialized."""
        proxies = self.proxies
        match = q.matcher()
        start = self.index.position(q.cursor)
        page: list[ProxyStatus] = []
        total = before = 0
        for i, node_id in enumerate(self.index.ordered()):
            p = proxies.get(node_id)
            if p is None or not match(p):
                continue
            total += 1
            if i < start:
                before += 1
            elif q.limit is None or len(page) < q.limit:
                page.append(p)
        more = bool(page) and before + len(page) < total
        return page, total, page[-1].node.id if more else ""

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every event; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: StatusEvent) -> None:
        for listener in tuple(self._listeners):
            listener(event)

    def _proxy(self, stream: StreamInfo) -> ProxyStatus | None:
        return self.local.get(stream.node.id) if stream.node is not None else None

    def _expire(self, now: float) -> None:
        """Forget proxies gone longer than `retention`; a scan at most every 10 s, so a
        reconnect storm of N proxies costs O(N), not O(N^2)."""
        if now - self._expired_at < 10.0:
            return
        self._expired_at = now
        gone = [
            k for k, p in self.local.items()
            if not p.connected and p.disconnected_at and now - p.disconnected_at > self.retention
        ]
        for k in gone:
            del self.local[k]
            self._touch(k)

    def all_acked(self, name: str, versions: Sequence[str]) -> bool:
        """True when every connected proxy that was sent one of `versions` of `name`
        has ACKed what it was sent (and at least one proxy was sent it)."""
        seen = False
        for proxy in self.proxies.values():
            r = proxy.resources.get(name)
            if not proxy.connected or r is None or r.sent not in versions:
                continue
            seen = True
            if r.acked != r.sent:
                return False
        return seen

    def rollout(self, name: str) -> dict[str, int]:
        """xDS version -> number of connected proxies that ACKed it, for `name` (from
        the index: costs the number of distinct states, not of proxies)."""
        out: dict[str, int] = {}
        for slot, n in self.index.slots.items():
            if slot.name == name and slot.connected and slot.acked:
                out[slot.acked] = out.get(slot.acked, 0) + n
        return out

    def counts(self, name: str) -> dict[str, int]:
        """How many connected proxies were sent `name`, ACKed their version, NACKed it
        (from the index)."""
        total = acked = nacked = 0
        for slot, n in self.index.slots.items():
            if slot.name != name or not slot.connected or not slot.sent:
                continue
            total += n
            acked += n if slot.state == "ACKED" else 0
            nacked += n if slot.state == "NACKED" else 0
        return {"total": total, "acked": acked, "nacked": nacked}

    # -- StreamCallbacks ------------------------------------------------------------

    def on_stream_open(self, stream: StreamInfo) -> None:
        """Count the stream; the proxy is recorded once its node is known."""
        self.stats.streams[(stream.service, "delta" if stream.delta else "sotw")] += 1

    def on_stream_node(self, stream: StreamInfo) -> None:
        """Register (or revive) the proxy of the stream's node."""
        assert stream.node is not None
        now = time.time()
        self._expire(now)
        proxy = self.local.get(stream.node.id)
        if proxy is None or not proxy.connected:
            prior = proxy.resources if proxy is not None else {}
            proxy = ProxyStatus(node=stream.node, address=stream.peer, connected_since=now,
                                resources=prior, replica=self.replica_id)
            self.local[stream.node.id] = proxy
            self.stats.proxies += 1
            self._emit(StatusEvent("connect", stream.node.id))
        proxy.streams.add(stream.stream_id)
        proxy.disconnected_at = None
        self._touch(stream.node.id)

    def on_response(
        self, stream: StreamInfo, type_url: str, nonce: str,
        resources: Mapping[str, str], removed: Sequence[str],
    ) -> None:
        """Record the versions sent."""
        self.stats.responses += 1
        resources = _keyed(type_url, resources)
        proxy = self._record(stream, type_url, resources, _mark_sent)
        if proxy is None:
            return
        for name in removed:
            proxy.resources.pop(status_key(type_url, name), None)
        self._touch(proxy.node.id)

    def on_ack(
        self, stream: StreamInfo, type_url: str, nonce: str, resources: Mapping[str, str]
    ) -> None:
        """Record the versions the proxy accepted."""
        self.stats.acks += 1
        resources = _keyed(type_url, resources)
        proxy = self._record(stream, type_url, resources, _mark_acked)
        if proxy is None:
            return
        self._touch(proxy.node.id)
        self._emit(StatusEvent("ack", proxy.node.id, dict(resources)))

    def on_nack(
        self, stream: StreamInfo, type_url: str, nonce: str,
        resources: Mapping[str, str], code: int, message: str,
    ) -> None:
        """Record the rejection with Envoy's message."""
        resources = _keyed(type_url, resources)
        for name in resources:
            self.stats.nacks[name] += 1

        def mark(r: ResourceStatus, version: str, now: float) -> None:
            r.last_nack = Nack(version=version, code=code, message=message, at=now)

        proxy = self._record(stream, type_url, resources, mark)
        if proxy is None:
            return
        self._touch(proxy.node.id)
        self._emit(StatusEvent("nack", proxy.node.id, dict(resources), message))

    def on_stream_closed(self, stream: StreamInfo) -> None:
        """Mark the proxy gone when its last stream ends."""
        self.stats.streams[(stream.service, "delta" if stream.delta else "sotw")] -= 1
        proxy = self._proxy(stream)
        if proxy is None:
            return
        proxy.streams.discard(stream.stream_id)
        if not proxy.streams:
            self.stats.proxies -= 1
            proxy.disconnected_at = time.time()
            self._touch(proxy.node.id)
            self._emit(StatusEvent("disconnect", proxy.node.id))

    def _record(
        self, stream: StreamInfo, type_url: str, resources: Mapping[str, str],
        mark: Callable[[ResourceStatus, str, float], None],
    ) -> ProxyStatus | None:
        """The stream's proxy (None before its node is known), after `mark(status,
        version, now)` on its status record of each of `resources` (status keys; a
        record is created on first use). The caller touches the index once it has
        changed all it changes."""
        proxy = self._proxy(stream)
        if proxy is None:
            return None
        now = time.time()
        for name, version in resources.items():
            mark(_resource(proxy, name, type_url), version, now)
        return proxy
