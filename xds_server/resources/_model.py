"""Resource specs and errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from xds_server.nodes import NodeSelector

__all__ = ["ResourceConflict", "ResourceError", "ResourceSpec", "RouteRule", "WasmFilterRef", "route_instance"]


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


class ResourceConflict(ResourceError):
    """A change lost a compare-and-set: another replica (or call) recorded a revision of
    the resource first (409)."""


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


@dataclass(frozen=True, slots=True)
class RouteRule:
    """Per-route activation of a wasm filter: on routes whose virtual host name and route
    name match the globs, the filter is `disabled`, or runs with its own `configuration`
    (a string as Envoy gets it). Exactly one of the two. The first matching rule wins."""

    virtual_host: str = "*"
    route: str = "*"
    disabled: bool = False
    configuration: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The config/API form."""
        out: dict[str, Any] = {"virtual_host": self.virtual_host, "route": self.route}
        if self.disabled:
            out["disabled"] = True
        if self.configuration is not None:
            out["configuration"] = self.configuration
        return out


@dataclass(frozen=True, slots=True)
class WasmFilterRef:
    """What listeners and routes need of one wasm filter of this server: its type
    (`http`/`network`) and its per-route rules."""

    type: str = "http"
    routes: tuple[RouteRule, ...] = ()


def route_instance(filter_name: str, configuration: str) -> str:
    """The ECDS resource name of a filter's instance with a per-route `configuration`:
    `<filter>@<first 12 hex of its sha256>` (no filter name contains `@`)."""
    return f"{filter_name}@{hashlib.sha256(configuration.encode()).hexdigest()[:12]}"
