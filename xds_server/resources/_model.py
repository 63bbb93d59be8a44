"""Resource specs and errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from xds_server.nodes import NodeSelector

__all__ = ["ResourceError", "ResourceSpec"]


class ResourceError(ValueError):
    """A resource that cannot be served; the message names where, the field and why.

    `status` is the HTTP status the admin API answers with (400 invalid, 404 unknown,
    409 inconsistent or conflicting, 503 state store unavailable).
    """

    def __init__(self, where: str, path: str, problem: str, *, status: int = 400) -> None:
        self.where = where
        self.path = path
        self.problem = problem
        self.status = status
        location = f"{where}: {path}" if path else where
        super().__init__(f"{location}: {problem}")


@dataclass(frozen=True, slots=True, eq=False)
class ResourceSpec:
    """One desired Envoy resource, as the user wrote it, for the nodes `selector` matches.

    `kind` is `listeners`, `routes`, `clusters` or `endpoints`; `message` the parsed
    xds-protos message (must not be modified once the spec exists: the server derives
    what it serves from a copy).
    """

    kind: str
    name: str
    message: Any
    selector: NodeSelector = field(default_factory=NodeSelector)

    def to_dict(self) -> dict[str, Any]:
        """The config/API form: Envoy's v3 JSON (field names as in proto files) with
        `selector` when it is not the match-all one."""
        out: dict[str, Any] = json_format.MessageToDict(self.message, preserving_proto_field_name=True)
        if self.selector != NodeSelector():
            out["selector"] = self.selector.to_dict()
        return out
