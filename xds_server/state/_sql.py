"""What the SQLite and PostgreSQL stores share: schema migrations and every query."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from xds_server.state._health import HEALTH_MIGRATION, HealthTable
from xds_server.state._model import ANY_REVISION, ChangeListener, Conflict, Revision

# Each migration runs once, in order, in one transaction with its version row.
# `{REAL}` is the dialect's double type. Never edit a released migration: add one.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE filter_revisions (
            filter        TEXT    NOT NULL,
            revision      INTEGER NOT NULL,
            created_at    {REAL}  NOT NULL,
            author        TEXT    NOT NULL,
            action        TEXT    NOT NULL,
            summary       TEXT    NOT NULL,
            specs         TEXT    NOT NULL,
            digests       TEXT    NOT NULL,
            versions      TEXT    NOT NULL,
            base_revision INTEGER,
            PRIMARY KEY (filter, revision)
        );
        CREATE TABLE filters (
            filter      TEXT PRIMARY KEY,
            current     INTEGER NOT NULL,
            config_hash TEXT
        )
    """),
    (2, """
        CREATE TABLE replicas (
            replica_id    TEXT PRIMARY KEY,
            advertise_url TEXT NOT NULL,
            seen_at       {REAL} NOT NULL
        );
        CREATE TABLE proxy_status (
            node_id    TEXT PRIMARY KEY,
            replica_id TEXT NOT NULL,
            data       TEXT NOT NULL,
            updated_at {REAL} NOT NULL
        )
    """),
    (3, HEALTH_MIGRATION),
    (4, "ALTER TABLE filter_revisions ADD COLUMN details TEXT"),
    (5, """
        ALTER TABLE filter_revisions ADD COLUMN verdicts TEXT NOT NULL DEFAULT '[]'
    """),
]

_REVISION_COLUMNS = ("filter, revision, created_at, author, action, summary, specs, digests, "
                     "versions, base_revision, details, verdicts")


class Tx(Protocol):
    """One transaction. `?` placeholders; rows as tuples."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement."""
        ...


def row_to_revision(row: Sequence[Any]) -> Revision:
    """Decode a `filter_revisions` row."""
    return Revision(
        filter=row[0], revision=int(row[1]), created_at=float(row[2]), author=row[3], action=row[4],
        summary=row[5], specs=json.loads(row[6]), digests=json.loads(row[7]),
        versions=json.loads(row[8]), base_revision=row[9], details=json.loads(row[10] or "{}"),
        verdicts=json.loads(row[11] or "[]"),
    )


class SqlStore(HealthTable):
    """The state store's logic over any SQL dialect; subclasses provide `transaction`
    (run a coroutine function in one transaction), `lock_filter`, `lock_schema` and
    `notify`."""

    url: str
    real_type = "REAL"

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[ChangeListener] = []

    async def transaction(self, fn: Any) -> Any:
        """Run `await fn(tx)` in one transaction and return its result."""
        raise NotImplementedError

    async def lock_filter(self, tx: Tx, filter_name: str) -> None:
        """Serialize writers of one filter until the transaction ends."""

    async def notify(self, tx: Tx, filter_name: str, revision: int) -> None:
        """Tell other replicas (after commit) that the filter has a new revision."""

    def listen(self, listener: ChangeListener) -> None:
        """Call `listener(filter, revision)` on changes recorded by any replica."""
        self._listeners.append(listener)

    def _dispatch(self, filter_name: str, revision: int) -> None:
        for listener in tuple(self._listeners):
            listener(filter_name, revision)

    async def lock_schema(self, tx: Tx) -> None:
        """Serialize schema migrations across processes until the transaction ends."""

    async def migrate(self) -> None:
        """Apply the migrations not applied yet.

        Safe when several processes start at once on a fresh database: each migration
        runs in one transaction that first takes the schema lock (`lock_schema`), then
        creates the `schema_migrations` table if needed and checks its version row, so
        no two processes run the same DDL concurrently.
        """
        for version, sql in MIGRATIONS:
            async def apply(tx: Tx, version: int = version, sql: str = sql) -> None:
                await self.lock_schema(tx)
                await tx.execute(
                    f"CREATE TABLE IF NOT EXISTS schema_migrations "
                    f"(version INTEGER PRIMARY KEY, applied_at {self.real_type})")
                done = await tx.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,))
                if done:
                    return
                for statement in filter(str.strip, sql.replace("{REAL}", self.real_type).split(";")):
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))

            await self.transaction(apply)

    async def schema_version(self) -> int:
        """The highest migration applied."""
        rows = await self.transaction(lambda tx: tx.execute("SELECT MAX(version) FROM schema_migrations"))
        return int(rows[0][0] or 0)

    async def append(
        self, filter_name: str, *, author: str, action: str, summary: str,
        specs: list[dict[str, Any]], digests: list[str], versions: list[str],
        base_revision: int | None = None, config_hash: str | None = None,
        expect_current: int = ANY_REVISION, details: dict[str, Any] | None = None,
        verdicts: list[dict[str, Any]] | None = None,
    ) -> Revision:
        """See `StateStore.append`."""

        async def write(tx: Tx) -> Revision:
            await self.lock_filter(tx, filter_name)
            cur = await tx.execute("SELECT current FROM filters WHERE filter = ?", (filter_name,))
            current = int(cur[0][0]) if cur else 0
            if expect_current != ANY_REVISION and current != expect_current:
                raise Conflict(f"filter {filter_name!r} is at revision {current}, not {expect_current}: "
                               "it was changed concurrently")
            top = await tx.execute("SELECT MAX(revision) FROM filter_revisions WHERE filter = ?", (filter_name,))
            rev = Revision(
                filter=filter_name, revision=int(top[0][0] or 0) + 1, created_at=time.time(),
                author=author, action=action, summary=summary, specs=specs, digests=digests,
                versions=versions, base_revision=base_revision, details=dict(details or {}),
                verdicts=list(verdicts or []),
            )
            await tx.execute(
                f"INSERT INTO filter_revisions ({_REVISION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (rev.filter, rev.revision, rev.created_at, rev.author, rev.action, rev.summary,
                 json.dumps(specs, sort_keys=True), json.dumps(digests), json.dumps(versions), base_revision,
                 json.dumps(rev.details, sort_keys=True) if rev.details else None,
                 json.dumps(rev.verdicts, sort_keys=True)),
            )
            if config_hash is None:
                await tx.execute(
                    "INSERT INTO filters (filter, current) VALUES (?, ?) "
                    "ON CONFLICT(filter) DO UPDATE SET current = excluded.current",
                    (filter_name, rev.revision))
            else:
                await tx.execute(
                    "INSERT INTO filters (filter, current, config_hash) VALUES (?, ?, ?) "
                    "ON CONFLICT(filter) DO UPDATE SET current = excluded.current, "
                    "config_hash = excluded.config_hash",
                    (filter_name, rev.revision, config_hash))
            await self.notify(tx, filter_name, rev.revision)
            return rev

        result: Revision = await self.transaction(write)
        return result

    async def config_heads(self) -> dict[str, tuple[int, str | None]]:
        """See `StateStore.config_heads`."""
        rows = await self.transaction(lambda tx: tx.execute(
            "SELECT filter, current, config_hash FROM filters"))
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    async def set_config_hash(self, filter_name: str, config_hash: str | None) -> None:
        """See `StateStore.set_config_hash`."""
        await self.transaction(lambda tx: tx.execute(
            "UPDATE filters SET config_hash = ? WHERE filter = ?", (config_hash, filter_name)))

    async def current(self, filter_name: str) -> Revision | None:
        """See `StateStore.current`."""
        rows = await self.transaction(lambda tx: tx.execute(
            f"SELECT {_cols('r')} FROM filter_revisions r JOIN filters f "
            "ON r.filter = f.filter AND r.revision = f.current WHERE f.filter = ?", (filter_name,)))
        return row_to_revision(rows[0]) if rows else None

    async def get(self, filter_name: str, revision: int) -> Revision | None:
        """See `StateStore.get`."""
        rows = await self.transaction(lambda tx: tx.execute(
            f"SELECT {_REVISION_COLUMNS} FROM filter_revisions WHERE filter = ? AND revision = ?",
            (filter_name, revision)))
        return row_to_revision(rows[0]) if rows else None

    async def history(self, filter_name: str, limit: int = 100) -> list[Revision]:
        """See `StateStore.history`."""
        rows = await self.transaction(lambda tx: tx.execute(
            f"SELECT {_REVISION_COLUMNS} FROM filter_revisions WHERE filter = ? "
            "ORDER BY revision DESC LIMIT ?", (filter_name, limit)))
        return [row_to_revision(r) for r in rows]

    async def current_all(self) -> list[Revision]:
        """See `StateStore.current_all`."""
        rows = await self.transaction(lambda tx: tx.execute(
            f"SELECT {_cols('r')} FROM filter_revisions r JOIN filters f "
            "ON r.filter = f.filter AND r.revision = f.current ORDER BY r.filter"))
        return [rev for rev in map(row_to_revision, rows) if not rev.deleted]

    async def heartbeat(self, replica_id: str, advertise_url: str) -> None:
        """See `StateStore.heartbeat`."""
        await self.transaction(lambda tx: tx.execute(
            "INSERT INTO replicas (replica_id, advertise_url, seen_at) VALUES (?, ?, ?) "
            "ON CONFLICT(replica_id) DO UPDATE SET advertise_url = excluded.advertise_url, "
            "seen_at = excluded.seen_at", (replica_id, advertise_url, time.time())))

    async def replicas(self, max_age: float = 30.0) -> dict[str, str]:
        """See `StateStore.replicas`."""
        rows = await self.transaction(lambda tx: tx.execute(
            "SELECT replica_id, advertise_url FROM replicas WHERE seen_at > ?", (time.time() - max_age,)))
        return {r[0]: r[1] for r in rows}

    async def publish_proxies(self, replica_id: str, proxies: dict[str, dict[str, Any]]) -> None:
        """See `StateStore.publish_proxies`."""

        async def write(tx: Tx) -> None:
            now = time.time()
            await tx.execute("DELETE FROM proxy_status WHERE replica_id = ?", (replica_id,))
            for node_id, view in proxies.items():
                await tx.execute(
                    "INSERT INTO proxy_status (node_id, replica_id, data, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(node_id) DO UPDATE SET replica_id = excluded.replica_id, "
                    "data = excluded.data, updated_at = excluded.updated_at",
                    (node_id, replica_id, json.dumps(view), now))

        await self.transaction(write)

    async def fleet_proxies(self, max_age: float = 30.0) -> dict[str, dict[str, Any]]:
        """See `StateStore.fleet_proxies`."""
        rows = await self.transaction(lambda tx: tx.execute(
            "SELECT p.node_id, p.replica_id, p.data FROM proxy_status p JOIN replicas r "
            "ON p.replica_id = r.replica_id WHERE r.seen_at > ?", (time.time() - max_age,)))
        out = {}
        for node_id, replica_id, data in rows:
            view = json.loads(data)
            view["replica"] = replica_id
            out[node_id] = view
        return out


def _cols(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _REVISION_COLUMNS.split(","))
