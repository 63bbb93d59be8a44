"""Records of the state store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class StateError(Exception):
    """The state store cannot be opened or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One immutable version of a filter's desired state.

    `specs` are filter specs in their JSON form (the config/API schema); an empty list
    means the filter was deleted. `digests` and `versions` give, per spec, the module
    sha256 and the xDS resource version it produced. `base_revision` is the revision
    that nodes outside a canary keep while this revision is staged.
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
        }
