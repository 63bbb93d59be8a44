"""Filter changes from API input: one parser for the HTTP and the gRPC admin APIs
(specs, PUT bodies, rollback and promote bodies).

The APIs take back what they give (a GET -> edit -> PUT round trip):

* in a spec, the members the server adds to what it shows (`SPEC_DERIVED`: `version`,
  `module`) are ignored: they follow from the spec and cannot be set;
* in a filter document (`{"specs": [...]}`, the shape `GET /api/v1/filters/{name}`
  answers), the status members (`FILTER_DERIVED`) are ignored; `name` must equal the
  filter's name; `revision` is a precondition: the change applies only while the
  filter's current revision is that one (409 otherwise), like Kubernetes'
  `resourceVersion`;
* any other member would have no effect, so it is refused (400) with its name;
* a redacted placeholder (what a read token is shown for `configuration` and `env`
  values) is refused, so a round trip through a read token cannot overwrite secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xds_server.admin._auth import redacted_members
from xds_server.config import (
    ConfigError,
    FilterSpec,
    check_overlaps,
    configuration_text,
    parse_duration,
    parse_filter_spec,
)
from xds_server.controller import FilterError

__all__ = [
    "FILTER_DERIVED",
    "SPEC_DERIVED",
    "FilterRequest",
    "parse_debug_body",
    "parse_filter_body",
    "parse_promote_body",
    "parse_rollback_body",
    "parse_specs",
]

SPEC_DERIVED = frozenset({"version", "module", "verdict"})
"""Members of a shown spec that the server derives: ignored on input."""

FILTER_DERIVED = frozenset({
    "author", "action", "updated_at", "summary", "error", "error_at", "canary",
    "good_revision", "base_versions", "proxies", "rollout", "analysis", "debug",
})
"""Members of a shown filter that describe its state: ignored on input."""

_FILTER_INPUT = frozenset({"name", "specs", "revision"})


@dataclass(frozen=True, slots=True)
class FilterRequest:
    """A validated change of one filter: its specs, and the revision the caller read
    (None: apply whatever the current revision is)."""

    specs: list[FilterSpec]
    expect_revision: int | None = None


def parse_specs(name: str, raw: Sequence[Any], *, where: str = "request body") -> list[FilterSpec]:
    """Filter specs from API input (the config file's schema; `name` may be omitted;
    `SPEC_DERIVED` members are ignored).

    Raises `FilterError` (400) naming the spec and field that is wrong, or when two
    selectors might match the same node.
    """
    if not raw:
        raise FilterError(name, "'specs' must be a non-empty list of filter specs", status=400)
    specs = []
    for i, item in enumerate(raw):
        hidden = redacted_members(item)
        if hidden:
            raise FilterError(name, f"{where}: specs[{i}].{hidden[0]} is the redacted placeholder a "
                              "read token is shown, not a value: GET the filter with a write "
                              "token, or set the value", status=400)
        if isinstance(item, Mapping):
            item = {"name": name, **{k: v for k, v in item.items() if k not in SPEC_DERIVED}}
        try:
            specs.append(parse_filter_spec(item, where=where, path=f"specs[{i}]"))
        except ConfigError as exc:
            raise FilterError(name, str(exc), status=400) from exc
    try:
        check_overlaps(specs, where)
    except ConfigError as exc:
        raise FilterError(name, str(exc), status=400) from exc
    return specs


def expect_revision(name: str, value: Any, *, where: str = "request body") -> int | None:
    """The `revision` precondition of a filter document (None when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FilterError(name, f"{where}: 'revision' must be the whole number of the revision "
                          f"the change was made from (got {value!r})", status=400)
    return value


def parse_filter_body(name: str, body: Any, *, where: str = "request body") -> FilterRequest:
    """A PUT body: one spec, or a filter document `{"specs": [...]}` (what GET shows).

    Raises `FilterError` (400) naming the member that is wrong or would have no effect.
    """
    if not isinstance(body, Mapping):
        raise FilterError(name, f"{where}: must be a JSON object: one filter spec, or "
                          "{\"specs\": [...]}", status=400)
    if "specs" not in body:
        if "revision" in body:
            raise FilterError(name, f"{where}: 'revision' belongs to a filter document "
                              "({\"specs\": [...], \"revision\": N}), not to a single spec",
                              status=400)
        return FilterRequest(parse_specs(name, [body], where=where))
    extra = sorted(set(map(str, body)) - _FILTER_INPUT - FILTER_DERIVED)
    if extra:
        raise FilterError(
            name, f"{where}: {extra[0]!r} has no effect beside 'specs' (a filter document "
            f"takes {', '.join(sorted(_FILTER_INPUT))}; settings belong in each spec)", status=400)
    if "name" in body and body["name"] != name:
        raise FilterError(name, f"{where}: 'name' is {body['name']!r} but the request is "
                          f"for filter {name!r}", status=400)
    raw = body["specs"]
    if not isinstance(raw, list):
        raise FilterError(name, "'specs' must be a non-empty list of filter specs", status=400)
    return FilterRequest(parse_specs(name, raw, where=where),
                         expect_revision(name, body.get("revision"), where=where))


def parse_rollback_body(name: str, body: Any, *, where: str = "request body") -> int | str | None:
    """The target of a rollback body (`{}` or `{"to": N | "<xDS version>"}`); None: the
    previous content. Any other member is refused (400), as it would have no effect."""
    if not isinstance(body, Mapping):
        raise FilterError(name, f"{where}: must be a JSON object: {{}} or {{\"to\": N}}", status=400)
    extra = sorted(set(map(str, body)) - {"to"})
    if extra:
        raise FilterError(name, f"{where}: {extra[0]!r} has no effect (a rollback takes only 'to')",
                          status=400)
    to = body.get("to")
    if to is not None and (isinstance(to, bool) or not isinstance(to, int | str) or to == ""):
        raise FilterError(name, "'to' must be a revision number or an xDS version", status=400)
    return to


def parse_promote_body(name: str, body: Any, *, where: str = "request body") -> None:
    """A promote body takes nothing: empty or `{}`; a member is refused (400)."""
    if not isinstance(body, Mapping):
        raise FilterError(name, f"{where}: must be empty or {{}}", status=400)
    if body:
        raise FilterError(name, f"{where}: {sorted(map(str, body))[0]!r} has no effect (a promote "
                          "takes no members)", status=400)


def parse_debug_body(name: str, body: Any, *, where: str = "request body") -> tuple[str, str, float]:
    """A debug body `{"node": GLOB, "configuration": JSON or string, "for": DURATION}`
    -> (node glob, configuration as Envoy gets it, seconds). `FilterError` 400 naming
    the member that is wrong or unknown."""
    if not isinstance(body, Mapping):
        raise FilterError(name, f"{where}: must be a JSON object: {{\"node\", \"configuration\", \"for\"}}",
                          status=400)
    extra = sorted(set(map(str, body)) - {"node", "configuration", "for"})
    if extra:
        raise FilterError(name, f"{where}: {extra[0]!r} has no effect (a debug override takes node, "
                          "configuration and for)", status=400)
    node = body.get("node")
    if not isinstance(node, str) or not node:
        raise FilterError(name, f"{where}: 'node' must be a node id glob (e.g. \"edge-1\" or \"edge-*\")",
                          status=400)
    if "for" not in body:
        raise FilterError(name, f"{where}: 'for' is required: how long the override lasts (e.g. \"10m\")",
                          status=400)
    try:
        seconds = parse_duration(body["for"])
    except ValueError as exc:
        raise FilterError(name, f"{where}: 'for' {exc}", status=400) from exc
    try:
        configuration = configuration_text(body.get("configuration"))
    except ValueError as exc:
        raise FilterError(name, f"{where}: 'configuration' {exc}", status=400) from exc
    return node, configuration, seconds
