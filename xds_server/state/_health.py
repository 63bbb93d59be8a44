"""Health buckets shared across replicas: the `filter_health` table.

Each replica upserts its own rows, keyed by (replica, filter, revision, canary,
bucket start); readers merge every replica's rows. Rows hold plain numbers and two
JSON columns (the latency histogram's sparse counts, the custom metrics); what they
mean is the telemetry package's business, this layer only stores them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HEALTH_MIGRATION", "HealthRow", "HealthTable"]

HEALTH_MIGRATION = """
    CREATE TABLE filter_health (
        replica_id   TEXT    NOT NULL,
        filter       TEXT    NOT NULL,
        revision     BIGINT  NOT NULL,
        canary       INTEGER NOT NULL,
        bucket_start BIGINT  NOT NULL,
        version      TEXT    NOT NULL,
        proxies      BIGINT  NOT NULL,
        requests     BIGINT  NOT NULL,
        errors_5xx   BIGINT  NOT NULL,
        vm_failures  BIGINT  NOT NULL,
        vm_reloads   BIGINT  NOT NULL,
        latency      TEXT    NOT NULL,
        custom       TEXT    NOT NULL,
        updated_at   {REAL}  NOT NULL,
        PRIMARY KEY (replica_id, filter, revision, canary, bucket_start)
    );
    CREATE INDEX filter_health_by_filter ON filter_health (filter, bucket_start)
"""
"""The migration that creates the table (appended to the store's migration list)."""


@dataclass(frozen=True, slots=True)
class HealthRow:
    """One replica's numbers for one filter revision (canary side or not) in one time
    bucket. `latency` maps histogram bucket index -> count; `custom` maps
    "counter:<name>" / "gauge:<name>" -> value. Immutable once built."""

    replica_id: str
    filter: str
    revision: int
    canary: bool
    bucket_start: int
    version: str = ""
    proxies: int = 0
    requests: int = 0
    errors_5xx: int = 0
    vm_failures: int = 0
    vm_reloads: int = 0
    latency: Mapping[int, int] = field(default_factory=dict)
    custom: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, int, bool, int]:
        """(replica, filter, revision, canary, bucket start): the primary key."""
        return (self.replica_id, self.filter, self.revision, self.canary, self.bucket_start)


_COLUMNS = ("replica_id, filter, revision, canary, bucket_start, version, proxies, requests, "
            "errors_5xx, vm_failures, vm_reloads, latency, custom, updated_at")
_UPSERT = (
    f"INSERT INTO filter_health ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (replica_id, filter, revision, canary, bucket_start) DO UPDATE SET "
    "version = excluded.version, proxies = excluded.proxies, requests = excluded.requests, "
    "errors_5xx = excluded.errors_5xx, vm_failures = excluded.vm_failures, "
    "vm_reloads = excluded.vm_reloads, latency = excluded.latency, custom = excluded.custom, "
    "updated_at = excluded.updated_at"
)


def _decode(row: Sequence[Any]) -> HealthRow:
    return HealthRow(
        replica_id=row[0], filter=row[1], revision=int(row[2]), canary=bool(row[3]),
        bucket_start=int(row[4]), version=row[5], proxies=int(row[6]), requests=int(row[7]),
        errors_5xx=int(row[8]), vm_failures=int(row[9]), vm_reloads=int(row[10]),
        latency={int(k): int(v) for k, v in json.loads(row[11]).items()},
        custom={str(k): float(v) for k, v in json.loads(row[12]).items()},
    )


class HealthTable:
    """The `filter_health` queries, mixed into the SQL state store (which provides
    `transaction`)."""

    async def transaction(self, fn: Any) -> Any:
        """Provided by the store."""
        raise NotImplementedError

    async def upsert_health(self, rows: Sequence[HealthRow], *, now: float) -> None:
        """Write rows (one transaction), replacing rows with the same key."""
        if not rows:
            return

        async def write(tx: Any) -> None:
            for r in rows:
                await tx.execute(_UPSERT, (
                    r.replica_id, r.filter, r.revision, int(r.canary), r.bucket_start, r.version,
                    r.proxies, r.requests, r.errors_5xx, r.vm_failures, r.vm_reloads,
                    json.dumps({str(k): v for k, v in sorted(r.latency.items())}),
                    json.dumps(dict(sorted(r.custom.items()))), now))

        await self.transaction(write)

    async def health_rows(self, filter_name: str | None, *, since: float, until: float) -> list[HealthRow]:
        """Every replica's rows of `filter_name` (None: all filters) whose bucket starts
        in [since, until)."""
        where = "bucket_start >= ? AND bucket_start < ?"
        params: list[Any] = [int(since), int(until)]
        if filter_name is not None:
            where = "filter = ? AND " + where
            params.insert(0, filter_name)
        rows = await self.transaction(lambda tx: tx.execute(
            f"SELECT {_COLUMNS} FROM filter_health WHERE {where} ORDER BY bucket_start", params))
        return [_decode(r) for r in rows]

    async def prune_health(self, before: float) -> None:
        """Delete rows whose bucket starts before `before` (every replica's)."""
        await self.transaction(lambda tx: tx.execute(
            "DELETE FROM filter_health WHERE bucket_start < ?", (int(before),)))
