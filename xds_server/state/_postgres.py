"""The PostgreSQL state store: shared by any number of replicas.

Writes of one filter are serialized by a transaction-scoped advisory lock, and so are
schema migrations (replicas may start together on a fresh database); each new
revision is announced with NOTIFY on `xds_server_filters` (delivered at commit) to
every replica's LISTEN connection. Lost notifications only delay: replicas also
reconcile periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog

from xds_server.state._model import StateError
from xds_server.state._sql import SqlStore, Tx

log = structlog.get_logger("xds_server.state")

CHANNEL = "xds_server_filters"
SCHEMA_LOCK = 0x78647331  # "xds1": the advisory lock key migrations take
_PARAM = re.compile(r"\?")


def _redact_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


class _PgTx:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await self.conn.execute(_PARAM.sub("%s", sql), tuple(params))
        if cur.description is None:
            return []
        return list(await cur.fetchall())


class PostgresStateStore(SqlStore):
    """State in PostgreSQL. One connection for queries (serialized by a lock) and one
    for LISTEN."""

    real_type = "DOUBLE PRECISION"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = _redact_url(url)
        self._dsn = url
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._listen_conn: psycopg.AsyncConnection[Any] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect, migrate, and start listening for other replicas' changes."""
        try:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, connect_timeout=10)
            await self.migrate()
            self._listen_conn = await psycopg.AsyncConnection.connect(
                self._dsn, autocommit=True, connect_timeout=10)
            await self._listen_conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            raise StateError(f"cannot open state database {self.url}: {exc}") from exc
        self._listen_task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        assert self._listen_conn is not None
        try:
            async for note in self._listen_conn.notifies():
                name, _, rev = note.payload.rpartition(":")
                if name and rev.isdigit():
                    self._dispatch(name, int(rev))
        except (psycopg.Error, asyncio.CancelledError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("state_listen_lost", error=str(exc), url=self.url)

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening and disconnect, after the transaction in flight (if any) ends
        or `grace` seconds pass. Closing a connection under a running query would leave
        its socket registered with the event loop, and the next socket that reuses the
        descriptor would fail to register."""
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
        locked = False
        with contextlib.suppress(TimeoutError):
            locked = await asyncio.wait_for(self._lock.acquire(), grace)
        try:
            for conn in (self._listen_conn, self._conn):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            self._conn = self._listen_conn = None
        finally:
            if locked:
                self._lock.release()

    async def transaction(self, fn: Any) -> Any:
        """Run `fn(tx)` in one transaction."""
        if self._conn is None:
            raise StateError(f"state database {self.url} is not open: call open() first")
        async with self._lock:
            try:
                async with self._conn.transaction():
                    return await fn(_PgTx(self._conn))
            except psycopg.Error as exc:
                raise StateError(f"state database {self.url}: {exc}") from exc

    async def lock_filter(self, tx: Tx, filter_name: str) -> None:
        """Transaction-scoped advisory lock on the filter's name."""
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (filter_name,))

    async def lock_schema(self, tx: Tx) -> None:
        """Transaction-scoped advisory lock for migrations. The two-key form: PostgreSQL
        keeps it apart from the one-key locks `lock_filter` takes."""
        await tx.execute("SELECT pg_advisory_xact_lock(?, ?)", (SCHEMA_LOCK, 0))

    async def notify(self, tx: Tx, filter_name: str, revision: int) -> None:
        """NOTIFY the other replicas (delivered when the transaction commits)."""
        await tx.execute("SELECT pg_notify(?, ?)", (CHANNEL, f"{filter_name}:{revision}"))
