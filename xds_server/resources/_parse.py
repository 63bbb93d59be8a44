"""Envoy v3 resources written as YAML/JSON -> xds-protos messages, errors naming the field.

`google.protobuf.json_format.ParseDict` parses Envoy's own shape (snake_case or
camelCase, `@type` in `Any`s), so every field Envoy has works. Types named by `@type`
are imported on demand from their xds-protos package before parsing.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from xds_server.nodes import NodeSelector
from xds_server.resources._kinds import Kind
from xds_server.resources._model import ResourceError, ResourceSpec

__all__ = ["parse_resource"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-:|]{0,252}$")
_TYPE_PREFIX = "type.googleapis.com/"
_imported: set[str] = set()


def _type_urls(data: Any, out: set[str]) -> set[str]:
    """Every `@type` value anywhere in `data`."""
    if isinstance(data, Mapping):
        t = data.get("@type")
        if isinstance(t, str):
            out.add(t)
        for v in data.values():
            _type_urls(v, out)
    elif isinstance(data, list):
        for v in data:
            _type_urls(v, out)
    return out


def _import_package_of(type_url: str) -> None:
    """Import every `*_pb2` module of the package declaring `type_url` (once), so the
    default descriptor pool knows the message. Unknown packages are left to ParseDict,
    whose error then names the type."""
    package = type_url.removeprefix(_TYPE_PREFIX).rpartition(".")[0]
    if not package or package in _imported:
        return
    _imported.add(package)
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        if info.name.endswith("_pb2"):
            try:
                importlib.import_module(f"{package}.{info.name}")
            except Exception:  # a broken generated module: ParseDict reports the type
                continue


def _problem(exc: Exception) -> str:
    """ParseDict's message, first line, without the trailing list of fields."""
    text = str(exc).split("\n", 1)[0].rstrip(".")
    return text + "."


def parse_resource(kind: Kind, data: Any, *, where: str, path: str) -> ResourceSpec:
    """Validate one resource of `kind` in Envoy's v3 shape into a `ResourceSpec`.

    `data` may carry `selector` (which nodes get it; an xds-server key, not Envoy's),
    removed before parsing. Raises `ResourceError(where, path, problem)`; the problem
    is protobuf's, naming the field (`at "Listener.filter_chains[0]..."`).
    """
    if not isinstance(data, Mapping):
        raise ResourceError(where, path, f"must be a mapping (an Envoy {kind.message.DESCRIPTOR.name}), "
                            f"got {type(data).__name__}")
    body = dict(data)
    selector = _selector(body.pop("selector", None), where, f"{path}.selector")
    body.pop("@type", None)
    try:
        types = _type_urls(body, set())
    except RecursionError as exc:
        raise ResourceError(where, path, "nested too deeply") from exc
    for t in sorted(types):
        _import_package_of(t)
    message = kind.message()
    try:
        json_format.ParseDict(body, message)
    except json_format.ParseError as exc:
        raise ResourceError(where, path, _problem(exc)) from exc
    except RecursionError as exc:
        raise ResourceError(where, path, "nested too deeply") from exc
    except Exception as exc:  # anything else ParseDict raises on hostile input
        raise ResourceError(where, path, f"not a valid {kind.message.DESCRIPTOR.full_name}: {exc}") from exc
    name = getattr(message, kind.name_field)
    if not name:
        raise ResourceError(where, f"{path}.{kind.name_field}", "is required")
    if not _NAME.match(name):
        raise ResourceError(where, f"{path}.{kind.name_field}",
                            "must be 1-253 characters of letters, digits, '.', '_', '-', ':', '|' "
                            f"and start with a letter or digit (got {name!r})")
    return ResourceSpec(kind=kind.key, name=name, message=message, selector=selector)


def _selector(data: Any, where: str, path: str) -> NodeSelector:
    if data is None:
        return NodeSelector()
    if not isinstance(data, Mapping):
        raise ResourceError(where, path, "must be a mapping (node_id, cluster, metadata)")
    unknown = set(data) - {"node_id", "cluster", "metadata"}
    if unknown:
        raise ResourceError(where, f"{path}.{sorted(unknown)[0]}", "unknown field")
    meta = data.get("metadata") or {}
    if not isinstance(meta, Mapping) or any(isinstance(v, Mapping | list) or v is None
                                             for v in meta.values()):
        raise ResourceError(where, f"{path}.metadata", "must map keys to plain values")
    return NodeSelector(
        node_id=str(data.get("node_id") or "*"), cluster=str(data.get("cluster") or "*"),
        metadata={str(k): ("true" if v else "false") if isinstance(v, bool) else str(v)
                  for k, v in meta.items()},
    )
