"""Durable desired state: every filter's revisions (history), replicas and fleet status.

SQLite (`sqlite:///path`, the default, one process) or PostgreSQL (`postgresql://...`,
any number of replicas), behind one interface, with the same schema and migrations
(run under a lock, so replicas may start together on a fresh database).

May import: the standard library, `psycopg` and `structlog`; nothing of the server (the
controller, admin API and runtime use it, never the other way).
"""

from pathlib import Path

from xds_server.state._health import HealthRow
from xds_server.state._model import ANY_REVISION, ChangeListener, Conflict, Revision, StateError, StateStore
from xds_server.state._sqlite import SqliteStateStore

__all__ = [
    "ANY_REVISION",
    "ChangeListener",
    "Conflict",
    "HealthRow",
    "Revision",
    "SqliteStateStore",
    "StateError",
    "StateStore",
    "open_state_store",
]


def open_state_store(url: str | None, *, data_dir: Path) -> StateStore:
    """The store a database URL names (not yet opened): `sqlite:///PATH` (relative
    paths are under `data_dir`), `postgresql://...`; None means `<data_dir>/state.db`."""
    if not url:
        return SqliteStateStore(data_dir / "state.db")
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return SqliteStateStore(path if path.is_absolute() else data_dir / path)
    if url.startswith(("postgresql://", "postgres://")):
        from xds_server.state._postgres import PostgresStateStore

        return PostgresStateStore(url)
    raise StateError(f"database URL must start with sqlite:/// or postgresql:// (got {url.split(':')[0]}:...)")
