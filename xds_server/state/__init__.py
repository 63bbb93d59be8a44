"""Durable desired state: every filter's revisions (history), in an embedded SQLite file."""

from xds_server.state._model import Revision, StateError
from xds_server.state._sqlite import SqliteStateStore

__all__ = ["Revision", "SqliteStateStore", "StateError"]
