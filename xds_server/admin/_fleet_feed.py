"""The coalesced fleet feed: proxy state changes, at most `rate` times a second.

`FleetFeed` watches the status tracker's change notifications (one per proxy whose
connection, versions, state or NACK message changed) and, while anyone listens, sends
one `tick` every `interval` seconds in which something changed:

    {"source": "fleet", "kind": "tick", "seq", "at",
     "summary": <the fleet summary without health (see `_fleet`)>,
     "changes": [[node_id, seq, connected, {name: [state, version_acked
                  (, version_sent if different (, nack message))]}], ...],
     "events": [<status events as `event_to_dict` renders them, newest last>],
     "events_dropped": N}

A proxy that changed several times within one interval appears once, as it is at the
tick (coalesced per proxy); `seq` orders a proxy's records across ticks and the proxy
API (`ProxyStatus` views carry the same `seq`), so a client applies a change only when it
is newer than what it shows. `events` keeps the last `MAX_EVENTS` status events of the
interval for a human-readable log. Listeners are called on the event loop and must not
block or raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from xds_server.admin._fleet import proxy_row
from xds_server.status import StatusEvent, StatusTracker

__all__ = ["DEFAULT_INTERVAL", "MAX_EVENTS", "FleetFeed"]

log = structlog.get_logger("xds_server.admin.fleet_feed")

DEFAULT_INTERVAL = 0.25
"""Seconds between ticks: at most 4 a second, however many proxies change."""
MAX_EVENTS = 20

Listener = Callable[[dict[str, Any]], None]


class FleetFeed:
    """Coalesces proxy changes into ticks (see the module docstring). The flush task
    runs only while there are listeners; `close()` stops it."""

    def __init__(self, tracker: StatusTracker, summary: Callable[[], dict[str, Any]], *,
                 interval: float = DEFAULT_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.tracker = tracker
        self.summary = summary
        """The fleet summary without health (`AdminService.summary_now`)."""
        self.interval = interval
        self.ticks = 0
        self._listeners: list[Listener] = []
        self._dirty: set[str] = set()
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._events_seen = 0
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    @property
    def listening(self) -> bool:
        """True while someone listens (and the flush task runs)."""
        return self._task is not None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Send every tick to `listener` from now on; returns a function that unsubscribes."""
        self._listeners.append(listener)
        if self._task is None:
            self._unsubscribe = [self.tracker.subscribe_changes(self._on_change),
                                 self.tracker.subscribe(self._on_event)]
            self._task = asyncio.get_running_loop().create_task(self._run())

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if not self._listeners:
                self._stop()

        return unsubscribe

    def _on_change(self, node_id: str) -> None:
        self._dirty.add(node_id)

    def _on_event(self, event: StatusEvent) -> None:
        from xds_server.admin._events import event_to_dict

        self._events_seen += 1
        self._events.append(event_to_dict(event))

    def _stop(self) -> None:
        for off in self._unsubscribe:
            off()
        self._unsubscribe = []
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._dirty.clear()
        self._events.clear()
        self._events_seen = 0

    async def close(self) -> None:
        """Stop the flush task and forget the listeners."""
        task = self._task
        self._listeners.clear()
        self._stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def tick(self) -> dict[str, Any] | None:
        """Build the next tick from what changed since the last one (None: nothing)."""
        if not self._dirty and not self._events:
            return None
        dirty, self._dirty = self._dirty, set()
        events = list(self._events)
        dropped = max(0, self._events_seen - len(events))
        self._events.clear()
        self._events_seen = 0
        self.ticks += 1
        return {
            "source": "fleet", "kind": "tick", "seq": self.tracker.index.seq, "at": time.time(),
            "summary": self.summary(),
            "changes": [proxy_row(self.tracker, node_id) for node_id in dirty],
            "events": events, "events_dropped": dropped,
        }

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                data = self.tick()
            except Exception:  # a bug here must not end the feed for everyone
                log.exception("fleet_tick_failed")
                continue
            if data is None:
                continue
            for listener in tuple(self._listeners):
                listener(data)
