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


Entry = tuple[RequestRecord, FilterRun, int]  # the record, the run, its approximate size


def _size(r: RequestRecord) -> int:
    """Approximate bytes one entry holds (object overhead plus its strings)."""
    n = 240 + len(r.node_id) + len(r.cluster) + len(r.method) + len(r.path) + len(r.authority)
    n += len(r.details) + len(r.flags) + len(r.upstream_host)
    for extra in (r.filter_state, r.metadata):
        for k, v in extra.items():
            n += 100 + len(k) + len(v)
    return n


class LogBuffer:
    """A `TelemetryConsumer` that keeps the last `per_filter` access-log entries of each
    filter (for at most `max_filters` filters) and feeds followers.

    An entry is kept under every filter the request ran through (its `runs`); requests
    that ran no known filter are not kept. Memory is bounded by `max_bytes` (entries'
    approximate size; over it, the oldest entries of the filter holding the most go
    first, so a busy filter does not push out a quiet one's history) plus
    `max_followers x follower_queue` entries. Event-loop only; no locking.
    """

    def __init__(self, *, per_filter: int = 2_000, max_filters: int = 1_000,
                 max_bytes: int = 64 * 2**20, max_followers: int = 100,
                 follower_queue: int = 1_000) -> None:
        self.per_filter = per_filter
        self.max_filters = max_filters
        self.max_bytes = max_bytes
        self.max_followers = max_followers
        self.follower_queue = follower_queue
        self.total_bytes = 0
        self._entries: dict[str, deque[Entry]] = {}
        self._bytes: dict[str, int] = {}
        self._followers: list[LogFollower] = []

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """Keep each record under each filter it ran through; wake followers."""
        all_entries, followers = self._entries, self._followers
        for record in records:
            size = _size(record)
            for run in record.runs:
                f = run.filter
                entries = all_entries.get(f)
                if entries is None:
                    if len(all_entries) >= self.max_filters:
                        continue
                    entries = all_entries[f] = deque()
                    self._bytes[f] = 0
                if len(entries) >= self.per_filter:
                    self._drop_oldest(f)
                entries.append((record, run, size))
                self._bytes[f] += size
                self.total_bytes += size
                while self.total_bytes > self.max_bytes:
                    self._drop_oldest(self._victim(f))
                for follower in followers:
                    if follower.filter == f and _matches(follower.node_glob, record.node_id):
                        follower.offer(LogEntry(record, run))

    def _victim(self, current: str) -> str:
        """Whose oldest entry goes: `current` when it holds at least its fair share of
        the budget, else the filter holding the most."""
        if self._bytes[current] * len(self._bytes) >= self.total_bytes:
            return current
        return max(self._bytes, key=self._bytes.__getitem__)

    def _drop_oldest(self, filter_name: str) -> None:
        _, _, size = self._entries[filter_name].popleft()
        self._bytes[filter_name] -= size
        self.total_bytes -= size

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """Stats are not logs: ignored."""

    def recent(self, filter_name: str, *, node_glob: str = "*", limit: int = 100) -> list[LogEntry]:
        """The newest `limit` entries of `filter_name` from nodes matching `node_glob`,
        oldest first."""
        out: list[LogEntry] = []
        for record, run, _ in reversed(self._entries.get(filter_name, ())):
            if len(out) >= limit:
                break
            if _matches(node_glob, record.node_id):
                out.append(LogEntry(record, run))
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
