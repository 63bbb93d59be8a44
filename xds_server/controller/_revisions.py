"""xDS version -> filter revision (and canary side), for attributing telemetry."""

from __future__ import annotations

from collections import OrderedDict

from xds_server.controller._controller import Controller
from xds_server.controller._model import FilterEvent

__all__ = ["RevisionIndex"]


class RevisionIndex:
    """Which revision of a filter an xDS version belongs to, and whether it is the
    canary side of a rollout.

    Keeps what every served revision mapped (up to `max_entries` versions, least
    recently used forgotten), so telemetry that arrives after a swap, or from a proxy
    still on an older revision, is attributed to the revision that served it. Reads
    the controller's state only; `lookup` is a dict lookup in the common case.
    """

    def __init__(self, controller: Controller, *, max_entries: int = 10_000) -> None:
        self.controller = controller
        self.max_entries = max_entries
        self._memo: OrderedDict[tuple[str, str], tuple[int, bool]] = OrderedDict()
        self._names: set[str] = set()
        self.unsubscribe = controller.subscribe(self._on_event)
        for name in list(controller.filters):
            self._snapshot(name)

    def _on_event(self, event: FilterEvent) -> None:
        if event.kind == "deployed":
            self._snapshot(event.name)

    def _snapshot(self, name: str) -> None:
        state = self.controller.filters.get(name)
        if state is None or state.revision is None:
            return
        self._names.add(name)
        rev = state.revision
        for b in state.base:
            for v in b.versions:
                self._put((name, v), (rev.base_revision or 0, False))
        for d in state.deployed:
            for v in d.versions:
                self._put((name, v), (rev.revision, d.spec.canary is not None))

    def _put(self, key: tuple[str, str], value: tuple[int, bool]) -> None:
        self._memo.pop(key, None)
        self._memo[key] = value
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)

    def lookup(self, name: str, version: str) -> tuple[int, bool] | None:
        """`(revision, canary)` of `version` of filter `name`; `(0, False)` for a filter
        whose version is unknown; None when `name` is not a filter (a `RevisionLookup`)."""
        found = self._memo.get((name, version))
        if found is not None:
            return found
        if name in self.controller.filters:
            self._snapshot(name)
            return self._memo.get((name, version), (0, False))
        return (0, False) if name in self._names else None
