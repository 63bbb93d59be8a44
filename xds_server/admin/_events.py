"""Server-sent events: every status and filter change, as it happens, for browsers.

`GET /api/v1/events` answers `text/event-stream`. Each change is one SSE event whose
`data` is a JSON object (without `?feed=fleet`):

* status events (`"source": "status"`): `kind` connect, disconnect, ack or nack,
  `node_id`, `resources` ({name: version}), `message` (Envoy's, for a NACK), `at`;
* filter events (`"source": "filter"`): `kind` deployed, deleted or rejected, `name`,
  `revision`, `action`, `author`, `message`, `at`;
* `{"source": "server", "kind": "hello"}` first, and `{"source": "server", "kind":
  "resync", "dropped": N}` when the client fell behind and events were dropped: the
  client should refetch everything.

With `?feed=fleet` the stream carries, instead of one status event per ACK and NACK,
the coalesced fleet feed's ticks (`"source": "fleet"`, see `_fleet_feed`: per proxy
state changes at a bounded rate, with the fleet summary) and the filter events; the
status page uses this form.

A comment line (`: heartbeat`) goes out every `heartbeat` seconds so proxies and the
browser keep the connection open. Status and filter events carry no state: a client
refetches `/api/v1/filters` and `/api/v1/proxies` when told something changed (fleet
ticks carry the changed proxies' state and the summary).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from xds_server.controller import FilterEvent
from xds_server.status import StatusEvent

__all__ = ["HEARTBEAT_SECONDS", "EventStreams", "Subscribe", "event_to_dict"]

log = structlog.get_logger("xds_server.admin.events")

HEARTBEAT_SECONDS = 15.0
_POLL_SECONDS = 1.0  # how often an idle stream checks that its client is still there

Subscribe = Callable[[Callable[[StatusEvent | FilterEvent], None]], Callable[[], None]]
"""`StatusTracker.subscribe` or `Controller.subscribe`: takes a listener, returns unsubscribe."""


def event_to_dict(event: StatusEvent | FilterEvent | dict[str, Any]) -> dict[str, Any]:
    """The JSON form of one event as the stream sends it (a dict is already one)."""
    if isinstance(event, dict):
        return event
    if isinstance(event, StatusEvent):
        return {
            "source": "status",
            "kind": event.kind,
            "node_id": event.node_id,
            "resources": dict(event.resources),
            "message": event.message,
            "at": event.at,
        }
    return {
        "source": "filter",
        "kind": event.kind,
        "name": event.name,
        "revision": event.revision,
        "action": event.action,
        "author": event.author,
        "message": event.message,
        "at": event.at,
    }


@dataclass(slots=True)
class _Resync:
    dropped: int


_Item = dict[str, Any] | _Resync | None  # None: the server is shutting down


class _ClientQueue:
    """One client's bounded queue, fed by synchronous listeners; never blocks them.

    When the queue is full, everything pending is dropped and replaced by one resync
    marker (the client refetches the whole state anyway). Listeners called from another
    thread hand the event to the loop's thread first.
    """

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=size)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()

    def listener(self, event: StatusEvent | FilterEvent | dict[str, Any]) -> None:
        if threading.get_ident() == self._thread:
            self._put(event_to_dict(event))
        else:
            self._loop.call_soon_threadsafe(self._put, event_to_dict(event))

    def _put(self, item: _Item) -> None:
        if self.queue.full():
            dropped = 0
            while not self.queue.empty():
                old = self.queue.get_nowait()
                dropped += old.dropped if isinstance(old, _Resync) else 1
            self.queue.put_nowait(_Resync(dropped))
        self.queue.put_nowait(item)

    def close(self) -> None:
        """Tell the stream to end (server shutdown)."""
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def _frame(data: dict[str, Any], event_id: int) -> bytes:
    body = json.dumps(data, separators=(",", ":"), sort_keys=True)
    return f"id: {event_id}\ndata: {body}\n\n".encode()


class EventStreams:
    """The `GET /api/v1/events` handler and the set of its open streams.

    `sources` are the subscribe functions of the event sources (the status tracker's and
    the controller's). Register `handle` as the route and `close_all` in
    `app.on_shutdown`, so open streams end before the server waits for its handlers.
    Each stream subscribes on open and unsubscribes when its client goes away or the
    server shuts down. Not thread-safe: use from the admin app's event loop (listeners
    may be called from any thread).
    """

    def __init__(self, sources: Sequence[Subscribe], *, heartbeat: float = HEARTBEAT_SECONDS,
                 queue_size: int = 256, fleet_sources: Sequence[Any] = ()) -> None:
        if heartbeat <= 0 or queue_size < 2:
            raise ValueError("heartbeat must be positive and queue_size at least 2")
        self.sources = tuple(sources)
        self.fleet_sources = tuple(fleet_sources)
        """The subscribe functions `?feed=fleet` uses instead of `sources`."""
        self.heartbeat = heartbeat
        self.queue_size = queue_size
        self._open: set[_ClientQueue] = set()
        self._closing = False
        self._ids = itertools.count(1)

    @property
    def open_streams(self) -> int:
        """How many clients are connected now."""
        return len(self._open)

    async def close_all(self, _app: web.Application) -> None:
        """End every open stream (an `on_shutdown` handler); refuse new ones."""
        self._closing = True
        for client in tuple(self._open):
            client.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """GET /api/v1/events: the event stream until the client leaves."""
        if self._closing:
            raise web.HTTPServiceUnavailable(reason="shutting down")
        client = _ClientQueue(self.queue_size)
        fleet = request.query.get("feed") == "fleet" and bool(self.fleet_sources)
        sources = self.fleet_sources if fleet else self.sources
        unsubscribe = [subscribe(client.listener) for subscribe in sources]
        self._open.add(client)
        stream = next(self._ids)
        peer = request.remote or "unknown"
        log.debug("event_stream_opened", stream=stream, peer=peer)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache, no-transform",
            "X-Accel-Buffering": "no",
        })
        sent = 0
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            await response.write(_frame({"source": "server", "kind": "hello", "at": time.time()}, 0))
            sent = await self._pump(request, response, client)
        except ConnectionError:
            pass  # the client went away mid-write
        finally:
            for off in unsubscribe:
                off()
            self._open.discard(client)
            log.debug("event_stream_closed", stream=stream, peer=peer, events=sent)
        return response

    async def _pump(self, request: web.Request, response: web.StreamResponse,
                    client: _ClientQueue) -> int:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + self.heartbeat
        sent = 0
        while True:
            if request.transport is None or request.transport.is_closing():
                return sent
            wait = max(0.0, min(_POLL_SECONDS, next_heartbeat - loop.time()))
            try:
                item = await asyncio.wait_for(client.queue.get(), wait)
            except TimeoutError:
                if loop.time() >= next_heartbeat:
                    await response.write(b": heartbeat\n\n")
                    next_heartbeat = loop.time() + self.heartbeat
                continue
            if item is None:
                return sent
            sent += 1
            data = item if isinstance(item, dict) else {
                "source": "server", "kind": "resync", "dropped": item.dropped, "at": time.time()}
            await response.write(_frame(data, sent))
