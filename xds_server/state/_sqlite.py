"""The SQLite state store: one file in the data directory, migrated, written atomically."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xds_server.state._model import Revision, StateError

# Each migration runs once, in order, inside one transaction with its version row.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE filter_revisions (
            filter        TEXT    NOT NULL,
            revision      INTEGER NOT NULL,
            created_at    REAL    NOT NULL,
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
        );
    """),
]


class SqliteStateStore:
    """Filter revisions in SQLite (WAL mode, synchronous=FULL).

    Every `append` is one transaction: the revision row and the filter's current pointer
    change together or not at all. Methods are synchronous and fast (small rows); they
    may be called from the event loop. Thread-safe through one lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StateError(f"cannot open state database {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
        )
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The highest migration applied."""
        row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StateError(f"state database {self.path}: {exc}") from exc
            return result

    def append(
        self,
        filter_name: str,
        *,
        author: str,
        action: str,
        summary: str,
        specs: list[dict[str, Any]],
        digests: list[str],
        versions: list[str],
        base_revision: int | None = None,
        config_hash: str | None = None,
    ) -> Revision:
        """Record a new revision and make it the filter's current one (atomically)."""

        def write(db: sqlite3.Connection) -> Revision:
            row = db.execute(
                "SELECT MAX(revision) FROM filter_revisions WHERE filter = ?", (filter_name,)
            ).fetchone()
            rev = Revision(
                filter=filter_name, revision=int(row[0] or 0) + 1, created_at=time.time(),
                author=author, action=action, summary=summary, specs=specs, digests=digests,
                versions=versions, base_revision=base_revision,
            )
            db.execute(
                "INSERT INTO filter_revisions VALUES (?,?,?,?,?,?,?,?,?,?)",
                (rev.filter, rev.revision, rev.created_at, rev.author, rev.action, rev.summary,
                 json.dumps(specs, sort_keys=True), json.dumps(digests), json.dumps(versions),
                 base_revision),
            )
            if config_hash is None:
                db.execute(
                    "INSERT INTO filters (filter, current) VALUES (?, ?) "
                    "ON CONFLICT(filter) DO UPDATE SET current = excluded.current",
                    (filter_name, rev.revision),
                )
            else:
                db.execute(
                    "INSERT INTO filters (filter, current, config_hash) VALUES (?, ?, ?) "
                    "ON CONFLICT(filter) DO UPDATE SET current = excluded.current, "
                    "config_hash = excluded.config_hash",
                    (filter_name, rev.revision, config_hash),
                )
            return rev

        result: Revision = self._tx(write)
        return result

    def set_config_hash(self, filter_name: str, config_hash: str | None) -> None:
        """Remember the hash of what the config file last said of `filter_name`."""
        self._tx(lambda db: db.execute(
            "UPDATE filters SET config_hash = ? WHERE filter = ?", (config_hash, filter_name)
        ))

    def config_hashes(self) -> dict[str, str | None]:
        """filter -> hash of what the config file last said of it."""
        with self._lock:
            return dict(self._db.execute("SELECT filter, config_hash FROM filters").fetchall())

    @staticmethod
    def _row(row: Any) -> Revision:
        return Revision(
            filter=row[0], revision=row[1], created_at=row[2], author=row[3], action=row[4],
            summary=row[5], specs=json.loads(row[6]), digests=json.loads(row[7]),
            versions=json.loads(row[8]), base_revision=row[9],
        )

    def current(self, filter_name: str) -> Revision | None:
        """The filter's current revision (a delete revision when it was deleted)."""
        with self._lock:
            row = self._db.execute(
                "SELECT r.* FROM filter_revisions r JOIN filters f "
                "ON r.filter = f.filter AND r.revision = f.current WHERE f.filter = ?",
                (filter_name,),
            ).fetchone()
        return self._row(row) if row else None

    def get(self, filter_name: str, revision: int) -> Revision | None:
        """One revision, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM filter_revisions WHERE filter = ? AND revision = ?",
                (filter_name, revision),
            ).fetchone()
        return self._row(row) if row else None

    def history(self, filter_name: str, limit: int = 100) -> list[Revision]:
        """Newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM filter_revisions WHERE filter = ? ORDER BY revision DESC LIMIT ?",
                (filter_name, limit),
            ).fetchall()
        return [self._row(r) for r in rows]

    def current_all(self) -> list[Revision]:
        """The current revision of every filter that is not deleted, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.* FROM filter_revisions r JOIN filters f "
                "ON r.filter = f.filter AND r.revision = f.current ORDER BY r.filter"
            ).fetchall()
        return [rev for rev in map(self._row, rows) if not rev.deleted]
