"""Snapshot consistency (go-control-plane's `Consistent()`): every resource a served
resource refers to exists in the same desired set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from xds_server.resources._model import ResourceSpec, WasmFilterRef
from xds_server.resources._refs import References, served_message

__all__ = ["Served", "check_consistent", "serve_all"]

Served = dict[tuple[str, str], list[tuple[ResourceSpec, Any, References]]]
"""(kind, name) -> per spec: the spec, its served message, what it refers to."""


def serve_all(specs: Iterable[ResourceSpec], filters: Mapping[str, WasmFilterRef]) -> Served:
    """The served form and references of every spec."""
    out: Served = {}
    for spec in specs:
        refs = References()
        message = served_message(spec, filters, refs)
        out.setdefault((spec.kind, spec.name), []).append((spec, message, refs))
    return out


def check_consistent(served: Served) -> list[str]:
    """Problems that make the set unservable, each naming the resource and what is
    missing: a listener's route configuration, a route's cluster, an EDS cluster's
    endpoints, a wasm filter. Names are checked regardless of selectors (a
    reference is satisfied by any variant of the name)."""
    problems: list[str] = []
    have = {key for key in served}
    singular = {"listeners": "listener", "routes": "route configuration",
                "clusters": "cluster", "endpoints": "endpoints"}
    for (kind, name), variants in sorted(served.items()):
        what = f"{singular[kind]} {name!r}"
        for _spec, _message, refs in variants:
            problems.extend(f"{what}: {p}" for p in refs.problems)
            for r in sorted(refs.routes):
                if ("routes", r) not in have:
                    problems.append(f"{what} refers to route configuration {r!r}, which does not exist")
            for c in sorted(refs.clusters):
                if ("clusters", c) not in have:
                    problems.append(f"{what} routes to cluster {c!r}, which does not exist")
            for e in sorted(refs.endpoints):
                if ("endpoints", e) not in have:
                    problems.append(f"{what} takes its endpoints from {e!r} (EDS), which does not exist")
    return sorted(set(problems))
