"""Attribution: which node sent telemetry, and which filter revisions it was running.

The receivers know nodes and filters only through the `Attribution` protocol. The
implementation here reads the status tracker (what each proxy ACKed, and when) and asks
a `RevisionLookup` that the runtime provides (the controller knows which revision and
which side of a canary an xDS version belongs to; telemetry does not import it).
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Protocol

from xds_server.nodes import NodeInfo
from xds_server.status import StatusEvent, StatusTracker
from xds_server.telemetry._model import FilterRun

__all__ = ["AckAttribution", "Attribution", "RevisionLookup", "RunTimeline"]

RevisionLookup = Callable[[str, str], "tuple[int, bool] | None"]
"""`lookup(resource_name, version)`: `(revision, canary)` when `resource_name` is a wasm
filter this server serves (revision 0 when the version maps to no known revision), or
None when the resource is not a filter (e.g. a listener over ADS). Must be cheap and
must not block: it is called on the event loop for every export."""


class RunTimeline:
    """What one node ran over time: `at(t)` gives the `FilterRun`s in effect at Unix
    time `t` (the versions it had ACKed by then; before its first known ACK, the
    earliest known versions). Immutable; cheap to query (a bisect)."""

    __slots__ = ("_last", "_latest", "_runs", "_starts")

    def __init__(self, starts: list[float], runs: list[tuple[FilterRun, ...]]) -> None:
        self._starts = starts
        self._runs = runs
        self._last = starts[-1] if starts else float("inf")
        self._latest = runs[-1] if runs else ()

    def at(self, t: float) -> tuple[FilterRun, ...]:
        """The filter runs in effect at `t`."""
        if t >= self._last:  # the common case: after the node's latest ACK
            return self._latest
        if not self._runs:
            return ()
        i = bisect.bisect_right(self._starts, t) - 1
        return self._runs[max(i, 0)]


_EMPTY = RunTimeline([], [])


class Attribution(Protocol):
    """Tells the receivers who a node is and what it ran. Called on the event loop;
    must not block."""

    def node(self, node_id: str) -> NodeInfo | None:
        """The node if it has or had an xDS stream (to this replica or, with a shared
        database, another one); None for a node id the server does not know."""
        ...

    def timeline(self, node_id: str) -> RunTimeline:
        """The node's filter runs over the recent past."""
        ...


class AckAttribution:
    """`Attribution` from the status tracker's ACKs.

    Subscribes to the tracker's events and keeps, per node and resource, the last
    `depth` versions the node ACKed with the time of each change (so entries that
    arrive after a swap but were served before it keep the old revision). Nodes seen
    only through another replica's report fall back to the version they ACKed last.
    Memory: at most `max_nodes` nodes x resources x `depth` entries.
    """

    def __init__(self, status: StatusTracker, lookup: RevisionLookup, *,
                 depth: int = 4, max_nodes: int = 100_000) -> None:
        self.status = status
        self.lookup = lookup
        self.depth = depth
        self.max_nodes = max_nodes
        self._acks: OrderedDict[str, dict[str, deque[tuple[float, str]]]] = OrderedDict()
        self._timelines: dict[str, tuple[float, RunTimeline]] = {}
        self.unsubscribe = status.subscribe(self._on_event)

    def _on_event(self, event: StatusEvent) -> None:
        if event.kind != "ack":
            return
        self._timelines.pop(event.node_id, None)
        per_node = self._acks.pop(event.node_id, None) or {}
        self._acks[event.node_id] = per_node
        for name, version in event.resources.items():
            changes = per_node.get(name)
            if changes is None:
                changes = per_node[name] = deque(maxlen=self.depth)
            if not changes or changes[-1][1] != version:
                changes.append((event.at, version))
        while len(self._acks) > self.max_nodes:
            self._acks.popitem(last=False)

    def node(self, node_id: str) -> NodeInfo | None:
        """The node as the status tracker knows it, or None."""
        proxy = self.status.proxies.get(node_id)
        return proxy.node if proxy is not None else None

    def timeline(self, node_id: str) -> RunTimeline:
        """The node's runs: from its ACK history here, else its last reported ACKs.
        Cached per node until its next ACK, for at most `TIMELINE_TTL` seconds (so a
        revision's canary flag, changed by a promote, shows within that time)."""
        now = time.monotonic()
        cached = self._timelines.get(node_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        timeline = self._timeline(node_id)
        if len(self._timelines) >= self.max_nodes:
            self._timelines.clear()
        self._timelines[node_id] = (now + self.TIMELINE_TTL, timeline)
        return timeline

    TIMELINE_TTL = 1.0

    def _timeline(self, node_id: str) -> RunTimeline:
        history: Mapping[str, deque[tuple[float, str]]] | None = self._acks.get(node_id)
        if not history:
            proxy = self.status.proxies.get(node_id)
            if proxy is None:
                return _EMPTY
            history = {name: deque([(0.0, r.acked)]) for name, r in proxy.resources.items() if r.acked}
        return self._build(history)

    def _build(self, history: Mapping[str, deque[tuple[float, str]]]) -> RunTimeline:
        starts = sorted({at for changes in history.values() for at, _ in changes})
        runs: list[tuple[FilterRun, ...]] = []
        for start in starts:
            current: list[FilterRun] = []
            for name in sorted(history):
                changes = history[name]
                version = changes[0][1]
                for at, v in changes:
                    if at <= start:
                        version = v
                found = self.lookup(name, version)
                if found is not None:
                    current.append(FilterRun(name, found[0], version, found[1]))
            runs.append(tuple(current))
        return RunTimeline(starts, runs)
