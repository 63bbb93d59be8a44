"""The SQLite state store: one file in the data directory (one process)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xds_server.state._model import StateError
from xds_server.state._sql import SqlStore


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, tuple(params)).fetchall()


class SqliteStateStore(SqlStore):
    """State in SQLite (WAL mode, synchronous=FULL): the default for one process.

    Statements are small and run on the event loop's thread; an asyncio lock keeps
    transactions apart. Change notifications reach listeners of this process only.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.url = f"sqlite:///{path}"
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._pending: list[tuple[str, int]] = []

    async def open(self) -> None:
        """Open (creating) the file and migrate."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            await self.migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the file."""
        if self._db is not None:
            self._db.close()
            self._db = None

    async def transaction(self, fn: Any) -> Any:
        """Run `fn(tx)` in one IMMEDIATE transaction."""
        if self._db is None:
            raise StateError(f"state database {self.path} is not open: call open() first")
        db = self._db
        async with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = await fn(_SqliteTx(db))
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    self._pending.clear()
                    raise
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path}: {exc}") from exc
            pending, self._pending = self._pending, []
        for name, revision in pending:
            self._dispatch(name, revision)
        return result

    async def notify(self, tx: Any, filter_name: str, revision: int) -> None:
        """Queue a local notification, dispatched after commit."""
        self._pending.append((filter_name, revision))
