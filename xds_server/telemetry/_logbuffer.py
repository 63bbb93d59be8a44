"""Recent access-log entries per filter, in memory, for `logs` and `logs --follow`."""

from __future__ import annotations

import asyncio
import fnmatch
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xds_server.telemetry._model import FilterRun, RequestRecord, StatRecord

__all__ = ["LogBuffer", "LogEntry", "LogFollower"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One access-log entry as seen by one filter: the request and the revision of
    that filter which served it."""

    record: RequestRecord
    run: FilterRun

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the logs API (one NDJSON line / SSE event)."""
        r, run = self.record, self.run
        return {
            "time": r.time, "node_id": r.node_id, "cluster": r.cluster,
            "filter": run.filter, "revision": run.revision, "version": run.version,
            "canary": run.canary, "status": r.status, "duration_ms": r.duration_ms,
            "method": r.method, "path": r.path, "authority": r.authority, "details": r.details,
            "flags": r.flags, "upstream_host": r.upstream_host,
            "metadata": dict(r.metadata), "filter_state": dict(r.filter_state),
        }


class LogFollower:
    """New entries of one filter (and node glob) as they arrive, for a follow stream.

    Bounded: when the reader falls behind by `maxsize` entries the oldest are dropped
    and counted in `lagged`. Close with `close()` (or the buffer's `unsubscribe`).
    """

    def __init__(self, filter_name: str, node_glob: str, maxsize: int,
                 close: Callable[[LogFollower], None]) -> None:
        self.filter = filter_name
        self.node_glob = node_glob
        self.lagged = 0
        self.closed = False
        self._queue: asyncio.Queue[LogEntry | None] = asyncio.Queue(maxsize)
        self._close = close

    def offer(self, entry: LogEntry) -> None:
        """Queue `entry`, dropping the oldest queued one when full."""
        if self._queue.full():
            self._queue.get_nowait()
            self.lagged += 1
        self._queue.put_nowait(entry)

    async def next(self, timeout: float) -> LogEntry | None:  # noqa: ASYNC109
        """The next entry, or None after `timeout` seconds or once closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving; a waiting `next()` returns None."""
        if not self.closed:
            self.closed = True
            self._close(self)
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)


class LogBuffer:
    """A `TelemetryConsumer` that keeps the last `per_filter` access-log entries of each
    filter (for at most `max_filters` filters) and feeds followers.

    An entry is kept under every filter the request ran through (its `runs`); requests
    that ran no known filter are not kept. Memory is bounded by
    `per_filter x max_filters` entries plus `max_followers x follower_queue`.
    Event-loop only; no locking.
    """

    def __init__(self, *, per_filter: int = 2_000, max_filters: int = 1_000,
                 max_followers: int = 100, follower_queue: int = 1_000) -> None:
        self.per_filter = per_filter
        self.max_filters = max_filters
        self.max_followers = max_followers
        self.follower_queue = follower_queue
        self._entries: dict[str, deque[LogEntry]] = {}
        self._followers: list[LogFollower] = []

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """Keep each record under each filter it ran through; wake followers."""
        for record in records:
            for run in record.runs:
                entries = self._entries.get(run.filter)
                if entries is None:
                    if len(self._entries) >= self.max_filters:
                        continue
                    entries = self._entries[run.filter] = deque(maxlen=self.per_filter)
                entry = LogEntry(record, run)
                entries.append(entry)
                for follower in self._followers:
                    if follower.filter == run.filter and _matches(follower.node_glob, record.node_id):
                        follower.offer(entry)

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """Stats are not logs: ignored."""

    def recent(self, filter_name: str, *, node_glob: str = "*", limit: int = 100) -> list[LogEntry]:
        """The newest `limit` entries of `filter_name` from nodes matching `node_glob`,
        oldest first."""
        out: list[LogEntry] = []
        for entry in reversed(self._entries.get(filter_name, ())):
            if len(out) >= limit:
                break
            if _matches(node_glob, entry.record.node_id):
                out.append(entry)
        out.reverse()
        return out

    def follow(self, filter_name: str, *, node_glob: str = "*") -> LogFollower:
        """A follower of new entries; `RuntimeError` when `max_followers` are open."""
        if len(self._followers) >= self.max_followers:
            raise RuntimeError(f"{len(self._followers)} log followers are open; the limit is "
                               f"{self.max_followers}")
        follower = LogFollower(filter_name, node_glob, self.follower_queue, self._unfollow)
        self._followers.append(follower)
        return follower

    def _unfollow(self, follower: LogFollower) -> None:
        if follower in self._followers:
            self._followers.remove(follower)

    def close_all(self) -> None:
        """End every follower (server shutdown)."""
        for follower in tuple(self._followers):
            follower.close()


def _matches(glob: str, node_id: str) -> bool:
    return glob == "*" or fnmatch.fnmatchcase(node_id, glob)
