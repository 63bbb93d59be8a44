"""The controller's model: what it serves per filter, its events and its errors."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xds_server.cache import Resource
from xds_server.config import ConfigError, FilterSpec, parse_filter_spec
from xds_server.controller._modules import ResolvedModule
from xds_server.state import Revision


class FilterError(Exception):
    """A filter change that cannot be applied; the running version stays.

    `name` is the filter, `message` says what was wrong and where, `status` the HTTP
    status that fits (400 invalid, 404 unknown, 409 conflict, 422 module unusable).
    """

    def __init__(self, name: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"filter {name!r}: {message}")
        self.name = name
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class Deployed:
    """One spec as it is served: the spec, its module and the resource built from both."""

    spec: FilterSpec
    module: ResolvedModule
    resource: Resource
    alt: Resource | None = None  # a delivery mode's other, equivalent form (remote re-push)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every xDS version this spec may be served as."""
        return (self.resource.version,) if self.alt is None else (self.resource.version, self.alt.version)


KEEP_PREVIOUS = 2


def remember_previous(kept: tuple[tuple[str, ...], ...], digests: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """`kept` with `digests` first (once), at most `KEEP_PREVIOUS` entries."""
    return ((digests, *(k for k in kept if k != digests)))[:KEEP_PREVIOUS]


@dataclass(slots=True)
class FilterState:
    """What the controller serves for one filter name, and its last failure."""

    name: str
    revision: Revision | None = None
    deployed: tuple[Deployed, ...] = ()
    base: tuple[Deployed, ...] = ()
    error: str | None = None
    error_at: float | None = None
    good_revision: int | None = None
    remote_forms: dict[str, int] = field(default_factory=dict)  # node id -> form 1
    pending: tuple[FilterSpec, ...] = ()  # config specs not applied yet (retried)
    pending_key: str | None = None
    acks_unchecked: bool = False
    previous_digests: tuple[tuple[str, ...], ...] = ()
    """Modules of the last `KEEP_PREVIOUS` contents served before this one, newest first
    (rollback targets: never evicted from the module store)."""
    good_digests: tuple[str, ...] = ()  # modules of `good_revision`

    def refresh_good(self, acked_everywhere: Callable[[str, list[str]], bool]) -> int | None:
        """Update and return `good_revision`: the current revision once every connected
        proxy sent it has ACKed it. Checked lazily (ACKs only mark it due), so a push to
        N proxies costs O(N), not O(N^2)."""
        if self.acks_unchecked and self.revision is not None:
            self.acks_unchecked = False
            if acked_everywhere(self.name, self.all_versions):
                self.good_revision = self.revision.revision
                self.good_digests = tuple(self.revision.digests)
        return self.good_revision

    @property
    def versions(self) -> list[str]:
        """xDS versions of the current revision, one per spec."""
        return [d.resource.version for d in self.deployed]

    @property
    def all_versions(self) -> list[str]:
        """Every xDS version the current revision may be served as (remote forms too)."""
        return [v for d in self.deployed for v in d.versions]

    @property
    def canary(self) -> bool:
        """True while a staged rollout waits for `promote`."""
        return any(d.spec.canary is not None for d in self.deployed)


@dataclass(frozen=True, slots=True)
class FilterEvent:
    """A change of a filter's served state: `kind` is deployed, deleted or rejected."""

    kind: str
    name: str
    revision: int
    action: str
    author: str
    message: str = ""
    at: float = field(default_factory=time.time)


def spec_key(specs: Iterable[FilterSpec]) -> str:
    """A stable hash of specs' JSON form (what the config file said)."""
    doc = json.dumps([s.to_dict() for s in specs], sort_keys=True)
    return hashlib.sha256(doc.encode()).hexdigest()[:32]


def specs_of(revision: Revision) -> list[FilterSpec]:
    """The filter specs a stored revision records; `FilterError` (500) if unreadable."""
    try:
        return [parse_filter_spec(s, where=f"revision {revision.revision} of {revision.filter}")
                for s in revision.specs]
    except ConfigError as exc:
        raise FilterError(revision.filter, str(exc), status=500) from exc
