"""The fleet summary: per filter, what the proxies run and who refused it, from the
proxy index's counters (`StatusTracker.index`), never from a pass over the proxies.

The view (`GET /api/v1/summary`, gRPC `GetSummary`, `xds-server status`, the status
page) is a contract:

    {"seq", "at", "proxies": {"known", "connected"},
     "filters": [{"name", "served", "revision", "canary", "error", "current_versions",
                  "attention", "failing", "signed_by", "totals": {"ACKED", "NACKED", "REQUESTED", "STALE",
                  "connected", "disconnected"},
                  "versions": [{"version", "current", "running", "ACKED", "NACKED",
                                "REQUESTED", "STALE", "clusters": {cluster: {state: n}}}],
                  "nacks": [{"message", "count", "versions", "nodes"}],
                  "health": [{"revision", "version", "canary", "failing", "proxies",
                              "requests", "errors_5xx", "error_rate", "vm_failures"}] | null}],
     "resources": [{"kind", "name", "served", "revision", "current_versions", "attention",
                    "totals", "versions", "nacks"}]}

Counts are of connected proxies (`disconnected` aside). A version row counts the proxies
that were *sent* that version by their state; `running` counts those that ACKed it.
`REQUESTED` proxies (nothing sent) have the row with version "". `nacks` groups the
NACKing proxies by Envoy's message, largest group first, with the first five node ids
in natural order. `signed_by` names who signed the current modules (a key file's name or
a keyless identity; "unverified" under a policy that is not required; empty when no
verify policy covers them). `attention` is true when some proxy NACKed the filter or a revision
fails at run time; such filters come first, then by name. `health` is None when the
summary was taken without telemetry reads (the event feed's summaries). `resources`
are the standalone fleet's listeners, routes, clusters and endpoints (proxy status key
`kind/name`), counted the same way, NACKed ones first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from xds_server.controller import FilterState
from xds_server.proxy_index import STATES
from xds_server.resources import KINDS
from xds_server.status import StatusTracker
from xds_server.telemetry import HealthWindows

__all__ = ["NACK_SAMPLE", "ResourceHead", "add_health", "fleet_summary", "is_resource_status_key", "proxy_row"]

NACK_SAMPLE = 5
"""Node ids named per NACK group."""

ResourceHead = tuple[int, Sequence[str]]
"""An Envoy resource's current revision and the xDS versions it serves."""


def _states() -> dict[str, int]:
    return dict.fromkeys(STATES, 0)


def _counts(name: str, current: list[str], tracker: StatusTracker) -> dict[str, Any]:
    """`current_versions`, `attention`, `totals`, `versions` and `nacks` of one status key."""
    versions: dict[str, dict[str, Any]] = {}
    totals: dict[str, int] = {**_states(), "connected": 0, "disconnected": 0}
    nack_versions: dict[str, set[str]] = {}

    def row(version: str) -> dict[str, Any]:
        r = versions.get(version)
        if r is None:
            r = versions[version] = {"version": version, "current": version in current, "running": 0,
                                     **_states(), "clusters": {}}
        return r

    for v in current:
        row(v)
    for slot, n in tracker.index.slots.items():
        if slot.name != name:
            continue
        if not slot.connected:
            totals["disconnected"] += n
            continue
        totals["connected"] += n
        totals[slot.state] += n
        r = row(slot.sent)
        r[slot.state] += n
        by_state = r["clusters"].setdefault(slot.cluster, _states())
        by_state[slot.state] += n
        if slot.acked:
            row(slot.acked)["running"] += n
        if slot.state == "NACKED":
            nack_versions.setdefault(slot.message, set()).add(slot.sent)
    nacks: list[dict[str, Any]] = [
        {"message": message, "count": len(nodes), "versions": sorted(nack_versions.get(message, ())),
         "nodes": tracker.index.sample(nodes, NACK_SAMPLE)}
        for (n_name, message), nodes in tracker.index.nack_nodes.items() if n_name == name
    ]
    nacks.sort(key=lambda g: (-int(g["count"]), str(g["message"])))
    ordered = sorted(versions.values(), key=lambda r: (not r["current"], -int(r["running"]), str(r["version"])))
    return {"current_versions": current, "attention": bool(nacks), "totals": totals, "versions": ordered,
            "nacks": nacks}


def _filter_counts(name: str, state: FilterState | None, tracker: StatusTracker) -> dict[str, Any]:
    current = [d.resource.version for d in state.deployed] if state is not None else []
    rev = state.revision if state is not None else None
    return {
        "name": name, "served": state is not None, "revision": rev.revision if rev else 0,
        "canary": bool(state.canary) if state is not None else False,
        "error": state.error if state is not None else None,
        **_counts(name, current, tracker), "failing": False, "signed_by": _signers(state), "health": None,
    }


def _resource_counts(key: str, head: ResourceHead | None, tracker: StatusTracker) -> dict[str, Any]:
    kind, _, name = key.partition("/")
    revision, current = head if head is not None else (0, [])
    return {"kind": kind, "name": name, "served": head is not None, "revision": revision,
            **_counts(key, list(current), tracker)}


def _signers(state: FilterState | None) -> list[str]:
    """Who signed the current modules, short (see the module docstring)."""
    if state is None:
        return []
    rev = state.revision
    recorded = rev.verdicts if rev is not None else []
    names: list[str] = []
    for i, d in enumerate(state.deployed):
        v = d.module.verdict or (recorded[i] if i < len(recorded) else None)
        if not v:
            continue
        if not v.get("verified"):
            names.append("unverified")
        else:
            names.append(str(v.get("key") or "").rsplit("/", 1)[-1] or str(v.get("identity") or "?"))
    return list(dict.fromkeys(names))


def is_resource_status_key(key: str, filters: Mapping[str, Any]) -> bool:
    """Whether a proxy's status key is an Envoy resource's (`listeners/main`) rather
    than a wasm filter's (a filter's own name, which may contain '/' too)."""
    return key.partition("/")[0] in KINDS and "/" in key and key not in filters


def fleet_summary(filters: Mapping[str, FilterState], tracker: StatusTracker,
                  resources: Mapping[str, ResourceHead] | None = None) -> dict[str, Any]:
    """The summary without health (see the module docstring): counters only, no I/O.
    Filters are the served ones plus every filter name a proxy asked for; resources
    (`resources`: status key `kind/name` -> (revision, current versions)) the served
    ones plus every resource a proxy asked for."""
    heads = resources or {}
    asked = {slot.name for slot in tracker.index.slots}
    resource_keys = set(heads) | {n for n in asked if is_resource_status_key(n, filters)}
    names = (set(filters) | asked) - resource_keys
    views = [_filter_counts(n, filters.get(n), tracker) for n in names]
    resource_views = [_resource_counts(k, heads.get(k), tracker) for k in resource_keys]
    return {
        "seq": tracker.index.seq, "at": time.time(),
        "proxies": {"known": len(tracker.index), "connected": _connected_nodes(tracker)},
        "filters": _ordered(views),
        "resources": sorted(resource_views, key=lambda v: (not v["attention"], v["kind"], v["name"])),
    }


def _connected_nodes(tracker: StatusTracker) -> int:
    """This replica's connected proxies plus the other replicas' (not also here)."""
    return tracker.stats.proxies + sum(1 for p in tracker.remote.values()
                                       if p.connected and p.node.id not in tracker.local)


def _ordered(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(views, key=lambda v: (not (v["attention"] or v["failing"]), v["name"]))


async def add_health(summary: dict[str, Any], health: HealthWindows | None, *,
                     window: float = 300.0) -> dict[str, Any]:
    """Fill each filter's `health` (per revision over `window` seconds, failing first)
    and `failing`, and reorder; returns `summary`. Without telemetry `health` is []."""
    for view in summary["filters"]:
        entries = [] if health is None else await health.report(view["name"], window=window)
        rows: list[dict[str, Any]] = [{
            "revision": e.revision, "version": e.version, "canary": e.canary, "failing": e.failing,
            "proxies": e.totals.proxies, "requests": e.totals.requests,
            "errors_5xx": e.totals.errors_5xx, "error_rate": e.totals.error_rate,
            "vm_failures": e.totals.vm_failures,
        } for e in entries]
        rows.sort(key=lambda r: (not r["failing"], -int(r["revision"]), bool(r["canary"])))
        view["health"] = rows
        view["failing"] = any(r["failing"] for r in rows)
        view["attention"] = view["attention"] or view["failing"]
    summary["filters"] = _ordered(summary["filters"])
    return summary


def proxy_row(tracker: StatusTracker, node_id: str) -> list[Any]:
    """One proxy's compact change record for the event feed:
    `[node_id, seq, connected, {name: [state, version_acked, version_sent, nack
    message]}]`, where a resource's list stops early: `version_sent` is left out when it
    equals `version_acked`, the message when there is none. A forgotten proxy is
    `[node_id, seq, null, {}]`."""
    proxy = tracker.proxy(node_id)
    seq = tracker.index.node_seq(node_id) or tracker.index.seq
    if proxy is None:
        return [node_id, seq, None, {}]
    resources: dict[str, list[str]] = {}
    for name, r in proxy.resources.items():
        entry = [r.state, r.acked]
        message = r.last_nack.message if r.last_nack is not None and r.state == "NACKED" else ""
        if message or r.sent != r.acked:
            entry.append(r.sent)
        if message:
            entry.append(message)
        resources[name] = entry
    return [node_id, seq, proxy.connected, resources]
