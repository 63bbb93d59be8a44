"""Filter specs from API input: one parser for the HTTP and the gRPC admin APIs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xds_server.config import ConfigError, FilterSpec, check_overlaps, parse_filter_spec
from xds_server.controller import FilterError

__all__ = ["parse_specs"]


def parse_specs(name: str, raw: Sequence[Any], *, where: str = "request body") -> list[FilterSpec]:
    """Filter specs from API input (the config file's schema; `name` may be omitted).

    Raises `FilterError` (400) naming the spec and field that is wrong, or when two
    selectors might match the same node.
    """
    if not raw:
        raise FilterError(name, "'specs' must be a non-empty list of filter specs", status=400)
    specs = []
    for i, item in enumerate(raw):
        if isinstance(item, Mapping):
            item = {"name": name, **item}
        try:
            specs.append(parse_filter_spec(item, where=where, path=f"specs[{i}]"))
        except ConfigError as exc:
            raise FilterError(name, str(exc), status=400) from exc
    try:
        check_overlaps(specs, where)
    except ConfigError as exc:
        raise FilterError(name, str(exc), status=400) from exc
    return specs
