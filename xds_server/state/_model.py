"""Records and errors of the state store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from xds_server.state._health import HealthRow


class StateError(Exception):
    """The state store cannot be opened or written; the message says which and why."""


class Conflict(StateError):
    """A conditional write lost: the filter's current revision is not the expected one
    (another replica, or another call, changed it first)."""


ANY_REVISION = -1
"""`expect_current` value meaning: append whatever the current revision is."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One immutable version of a filter's desired state.

    `specs` are filter specs in their JSON form (the config/API schema); an empty list
    means the filter was deleted. `digests` and `versions` give, per spec, the module
    sha256 and the xDS resource version it produced. `base_revision` is the revision
    that nodes outside a canary keep while this revision is staged. `details` is
    structured data about the change (JSON-able; empty for most): an automatic decision's
    numbers (`analysis`), a debug override's node glob and expiry (`debug`). `verdicts`
    give, per spec, the signature verdict of its module (`{}` when no verify policy
    covered it).
    """

    filter: str
    revision: int
    created_at: float
    author: str
    action: str
    summary: str
    specs: list[dict[str, Any]] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    base_revision: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def deleted(self) -> bool:
        """True for the revision that records a delete."""
        return not self.specs

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the API."""
        return {
            "revision": self.revision,
            "created_at": self.created_at,
            "author": self.author,
            "action": self.action,
            "summary": self.summary,
            "specs": self.specs,
            "digests": self.digests,
            "versions": self.versions,
            "base_revision": self.base_revision,
            "details": self.details,
            "verdicts": self.verdicts,
        }


ChangeListener = Callable[[str, int], None]
"""Called as `listener(filter_name, revision)` when any replica records a revision."""


class StateStore(Protocol):
    """Durable desired state shared by every replica of the server.

    Revisions are append-only and immutable. `append` is atomic: the revision row and
    the filter's current pointer change together. With `expect_current` it is a
    compare-and-set, so a fleet-wide decision (an automatic rollback, a config-file
    change) is recorded once however many replicas attempt it.
    """

    url: str

    async def open(self) -> None:
        """Connect and migrate the schema (idempotent)."""

    async def close(self) -> None:
        """Release connections."""

    async def append(
        self, filter_name: str, *, author: str, action: str, summary: str,
        specs: list[dict[str, Any]], digests: list[str], versions: list[str],
        base_revision: int | None = None, config_hash: str | None = None,
        expect_current: int = ANY_REVISION, details: dict[str, Any] | None = None,
        verdicts: list[dict[str, Any]] | None = None,
    ) -> Revision:
        """Record a revision and make it current; `Conflict` if `expect_current` (0 = the
        filter has no revision yet) is not the current revision. `details`: see
        `Revision.details`; `verdicts`: per spec, its module's signature verdict."""
        ...

    async def config_heads(self) -> dict[str, tuple[int, str | None]]:
        """filter -> (current revision, hash of what the config file last said of it),
        read together: a config change decided from them is recorded with
        `expect_current` = that revision, so only one replica records it."""
        ...

    async def set_config_hash(self, filter_name: str, config_hash: str | None) -> None:
        """Remember the hash of what the config file last said of the filter."""

    async def current(self, filter_name: str) -> Revision | None:
        """The current revision (a delete revision when deleted), or None."""
        ...

    async def get(self, filter_name: str, revision: int) -> Revision | None:
        """One revision, or None."""
        ...

    async def history(self, filter_name: str, limit: int = 100) -> list[Revision]:
        """Revisions, newest first."""
        ...

    async def current_all(self) -> list[Revision]:
        """The current revision of every filter that is not deleted."""
        ...

    def listen(self, listener: ChangeListener) -> None:
        """Call `listener` for revisions recorded by any replica (best effort; a
        periodic reconcile covers lost notifications)."""

    async def heartbeat(self, replica_id: str, advertise_url: str) -> None:
        """Record that this replica is alive and where its admin API is."""

    async def replicas(self, max_age: float = 30.0) -> dict[str, str]:
        """Live replicas: id -> advertise URL."""
        ...

    async def publish_proxies(self, replica_id: str, proxies: dict[str, dict[str, Any]]) -> None:
        """Replace this replica's rows of per-proxy status (node id -> JSON view)."""

    async def fleet_proxies(self, max_age: float = 30.0) -> dict[str, dict[str, Any]]:
        """Per-proxy status of every live replica: node id -> JSON view (with `replica`)."""
        ...

    async def upsert_health(self, rows: Sequence[HealthRow], *, now: float) -> None:
        """Write health rows (one transaction), replacing rows with the same key
        (replica, filter, revision, canary, bucket start)."""

    async def health_rows(self, filter_name: str | None, *, since: float, until: float) -> list[HealthRow]:
        """Every replica's health rows of a filter (None: all) whose bucket starts in
        [since, until), oldest first."""
        ...

    async def prune_health(self, before: float) -> None:
        """Delete every replica's health rows whose bucket starts before `before`."""
