"""Recent access-log entries per filter, in memory, for `logs` and `logs --follow`."""

from __future__ import annotations

import asyncio
import fnmatch
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
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


class _Chunk:
    """Consecutive entries of one filter from one batch, all with the same run: the
    records (shared between the filters they ran), the bytes of those still kept (a
    partial drop frees its share), and how many of the oldest were dropped already
    (`first`)."""

    __slots__ = ("bytes", "first", "records", "run")

    def __init__(self, records: list[RequestRecord], size: int, run: FilterRun) -> None:
        self.records = records
        self.run = run
        self.first = 0
        self.bytes = size

    def __len__(self) -> int:
        return len(self.records) - self.first


class _FilterLog:
    """One filter's entries, oldest first: chunks, their count and bytes."""

    __slots__ = ("bytes", "chunks", "count")

    def __init__(self) -> None:
        self.chunks: deque[_Chunk] = deque()
        self.count = 0
        self.bytes = 0

    def drop(self, n: int) -> int:
        """Drop the `n` oldest entries (at most all); returns their bytes."""
        freed = 0
        chunks = self.chunks
        while n > 0 and chunks:
            chunk = chunks[0]
            left = len(chunk)
            if n >= left:
                chunks.popleft()
                freed += chunk.bytes
                self.count -= left
                n -= left
                continue
            size = chunk.bytes * n // left
            chunk.first += n
            chunk.bytes -= size
            freed += size
            self.count -= n
            n = 0
        self.bytes -= freed
        return freed


_STRINGS = tuple(attrgetter(f) for f in ("node_id", "cluster", "method", "path", "authority",
                                          "details", "flags", "upstream_host"))
_EXTRAS = (attrgetter("filter_state"), attrgetter("metadata"))


def _sizes(records: Sequence[RequestRecord]) -> int:
    """Approximate bytes `records` hold as entries (per entry: object overhead plus its
    strings), summed by columns (C loops, not a Python call per record)."""
    n = 240 * len(records)
    for field in _STRINGS:
        n += sum(map(len, map(field, records)))
    for extra in _EXTRAS:
        last: Mapping[str, str] | None = None
        size = 0
        for mapping in filter(None, map(extra, records)):
            if mapping is not last:  # records of one export often share them
                last = mapping
                size = 100 * len(mapping) + sum(map(len, mapping)) + sum(map(len, mapping.values()))
            n += size
    return n


class LogBuffer:
    """A `TelemetryConsumer` that keeps the last `per_filter` access-log entries of each
    filter (for at most `max_filters` filters) and feeds followers.

    An entry is kept under every filter the request ran through (its `runs`); requests
    that ran no known filter are not kept. Memory is bounded by `max_bytes` (entries'
    approximate size; over it, the oldest entries of the filter holding the most go
    first, so a busy filter does not push out a quiet one's history) plus
    `max_followers x follower_queue` entries. Event-loop only; no locking.

    Entries are stored per batch, not one by one: for each filter, a chunk of the
    batch's records that ran it with the same run (in one export from one node, all of
    them, between two ACKs), so a batch costs one append per filter; `LogEntry`s are
    made only when someone reads (`recent`) or follows.
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
        self._logs: dict[str, _FilterLog] = {}
        self._followers: list[LogFollower] = []

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        """Keep each record under each filter it ran through; wake followers.

        Per batch: records with the same runs (the same tuple, as the receiver hands
        them) are appended as one chunk per filter, then each filter touched is trimmed
        to `per_filter` and the buffer to `max_bytes`: what is kept is what keeping
        them one at a time would keep (bar the order of evictions under the byte budget
        within one batch)."""
        if not records:
            return
        logs = self._logs
        touched: dict[str, _FilterLog] = {}
        start, runs = 0, records[0].runs
        for i in range(1, len(records) + 1):
            if i < len(records) and records[i].runs == runs:
                continue
            group = list(records[start:i])
            size = _sizes(group)
            for run in runs:
                log = logs.get(run.filter)
                if log is None:
                    if len(logs) >= self.max_filters:
                        continue
                    log = logs[run.filter] = _FilterLog()
                chunk = _Chunk(group, size, run)
                log.chunks.append(chunk)
                log.count += len(group)
                log.bytes += chunk.bytes
                self.total_bytes += chunk.bytes
                touched[run.filter] = log
            if i < len(records):
                start, runs = i, records[i].runs
        for log in touched.values():
            if log.count > self.per_filter:
                self.total_bytes -= log.drop(log.count - self.per_filter)
        for f in touched:
            while self.total_bytes > self.max_bytes:
                self._drop_oldest(self._victim(f))
        if self._followers:
            self._offer(records)

    def _offer(self, records: Sequence[RequestRecord]) -> None:
        followers, kept = self._followers, self._logs
        for record in records:
            for run in record.runs:
                if run.filter not in kept:
                    continue
                for follower in followers:
                    if follower.filter == run.filter and _matches(follower.node_glob, record.node_id):
                        follower.offer(LogEntry(record, run))

    def _victim(self, current: str) -> str:
        """Whose oldest entry goes: `current` when it holds at least its fair share of
        the budget, else the filter holding the most."""
        logs = self._logs
        if logs[current].bytes * len(logs) >= self.total_bytes:
            return current
        return max(logs, key=lambda f: logs[f].bytes)

    def _drop_oldest(self, filter_name: str) -> None:
        self.total_bytes -= self._logs[filter_name].drop(1)

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        """Stats are not logs: ignored."""

    def recent(self, filter_name: str, *, node_glob: str = "*", limit: int = 100) -> list[LogEntry]:
        """The newest `limit` entries of `filter_name` from nodes matching `node_glob`,
        oldest first."""
        out: list[LogEntry] = []
        log = self._logs.get(filter_name)
        for chunk in reversed(log.chunks if log is not None else ()):
            run = chunk.run
            for record in reversed(chunk.records[chunk.first:]):
                if len(out) >= limit:
                    break
                if _matches(node_glob, record.node_id):
                    out.append(LogEntry(record, run))
            if len(out) >= limit:
                break
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
