"""The admin gRPC API's messages, projected from the JSON views both admin APIs share
(`AdminService`'s filter, revision and proxy views, and status and filter events), and
Struct input read back as the HTTP API would read JSON (`whole_numbers`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from xds_server.admin.v1 import admin_pb2
from xds_server.controller import FilterEvent
from xds_server.status import StatusEvent

__all__ = [
    "event_message", "filter_message", "proxy_message", "resource_message", "revision_message",
    "summary_message", "timestamp", "whole_numbers",
]


def whole_numbers(value: Any) -> Any:
    """Struct numbers are doubles: give whole ones back as ints (5.0 -> 5), recursively,
    so that e.g. a `configuration` mapping renders as the HTTP API would render it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def timestamp(at: float | None) -> timestamp_pb2.Timestamp | None:
    """A Timestamp from Unix seconds; None stays None (the field stays unset)."""
    if at is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def _struct(d: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(d))
    return s


def filter_message(view: Mapping[str, Any]) -> admin_pb2.Filter:
    """A `Filter` from the HTTP API's FilterView (`filter_to_dict`)."""
    msg = admin_pb2.Filter(
        name=view["name"], revision=view["revision"], author=view["author"],
        action=view["action"], summary=view["summary"], error=view["error"] or "",
        canary=view["canary"], base_versions=view["base_versions"],
        updated_at=timestamp(view["updated_at"]), error_at=timestamp(view["error_at"]),
        proxies=admin_pb2.ProxyCounts(**view["proxies"]), rollout=view["rollout"],
    )
    if view["good_revision"] is not None:
        msg.good_revision = view["good_revision"]
    for member in ("analysis", "debug"):
        if isinstance(view.get(member), Mapping):
            getattr(msg, member).CopyFrom(_struct(view[member]))
    for spec in view["specs"]:
        rest = {k: v for k, v in spec.items() if k not in ("version", "module")}
        msg.specs.append(admin_pb2.DeployedSpec(
            spec=_struct(rest), version=spec["version"], module=admin_pb2.Module(**spec["module"]),
        ))
    return msg


def resource_message(view: Mapping[str, Any]) -> admin_pb2.Resource:
    """A `Resource` from the HTTP API's resource view (`AdminService.resource`)."""
    msg = admin_pb2.Resource(kind=view["kind"], name=view["name"], specs=[_struct(s) for s in view["specs"]],
                             versions=view["versions"])
    if view["revision"] is not None:
        msg.revision = view["revision"]
    return msg


def revision_message(rev: Mapping[str, Any]) -> admin_pb2.Revision:
    """A `Revision` from `Revision.to_dict()`."""
    msg = admin_pb2.Revision(
        revision=rev["revision"], created_at=timestamp(rev["created_at"]), author=rev["author"],
        action=rev["action"], summary=rev["summary"], specs=[_struct(s) for s in rev["specs"]],
        digests=rev["digests"], versions=rev["versions"],
    )
    if rev["base_revision"] is not None:
        msg.base_revision = rev["base_revision"]
    return msg


def proxy_message(p: Mapping[str, Any]) -> admin_pb2.ProxyStatus:
    """A `ProxyStatus` from `ProxyStatus.to_dict()` (what GET /api/v1/proxies lists)."""
    msg = admin_pb2.ProxyStatus(
        node_id=p["node_id"], cluster=p["cluster"], metadata=_struct(p["metadata"]),
        envoy_version=p["envoy_version"], address=p["address"], connected=p["connected"],
        connected_since=timestamp(p["connected_since"]), disconnected_at=timestamp(p["disconnected_at"]),
        seq=p.get("seq", 0),
    )
    for name, r in p["resources"].items():
        nack = r["last_nack"]
        msg.resources.append(admin_pb2.ResourceStatus(
            name=name, type_url=r["type_url"],
            state="RESOURCE_STATE_" + r["state"],
            version_sent=r["version_sent"], sent_at=timestamp(r["sent_at"]),
            version_acked=r["version_acked"], acked_at=timestamp(r["acked_at"]),
            last_nack=None if nack is None else admin_pb2.Nack(
                version=nack["version"], code=nack["code"], message=nack["message"],
                at=timestamp(nack["at"])),
        ))
    return msg


def _states(counts: Mapping[str, Any]) -> admin_pb2.StateCounts:
    return admin_pb2.StateCounts(acked=counts["ACKED"], nacked=counts["NACKED"],
                                 requested=counts["REQUESTED"], stale=counts["STALE"])


def _version_rows(rows: list[Mapping[str, Any]]) -> list[admin_pb2.VersionSummary]:
    return [admin_pb2.VersionSummary(
        version=v["version"], current=v["current"], running=v["running"], states=_states(v),
        clusters={c: _states(n) for c, n in v["clusters"].items()}) for v in rows]


def _nack_groups(groups: list[Mapping[str, Any]]) -> list[admin_pb2.NackGroup]:
    return [admin_pb2.NackGroup(message=g["message"], count=g["count"], versions=g["versions"],
                                nodes=g["nodes"]) for g in groups]


def summary_message(view: Mapping[str, Any]) -> admin_pb2.Summary:
    """A `Summary` from the fleet summary view (`AdminService.summary`)."""
    msg = admin_pb2.Summary(seq=view["seq"], at=timestamp(view["at"]),
                            proxies_known=view["proxies"]["known"],
                            proxies_connected=view["proxies"]["connected"])
    for f in view["filters"]:
        t = f["totals"]
        msg.filters.append(admin_pb2.FilterSummary(
            name=f["name"], served=f["served"], revision=f["revision"], canary=f["canary"],
            error=f["error"] or "", current_versions=f["current_versions"], attention=f["attention"],
            failing=f["failing"], totals=_states(t), connected=t["connected"],
            disconnected=t["disconnected"], nacks=_nack_groups(f["nacks"]),
            versions=_version_rows(f["versions"]),
            health=[admin_pb2.RevisionHealthSummary(**h) for h in f["health"] or []],
        ))
    for r in view.get("resources") or []:
        t = r["totals"]
        msg.resources.append(admin_pb2.ResourceSummary(
            kind=r["kind"], name=r["name"], served=r["served"], revision=r["revision"],
            current_versions=r["current_versions"], attention=r["attention"], totals=_states(t),
            connected=t["connected"], disconnected=t["disconnected"],
            versions=_version_rows(r["versions"]), nacks=_nack_groups(r["nacks"])))
    return msg


_EVENT_KINDS: dict[str, Any] = {
    "connect": admin_pb2.StatusEvent.CONNECT,
    "disconnect": admin_pb2.StatusEvent.DISCONNECT,
    "ack": admin_pb2.StatusEvent.ACK,
    "nack": admin_pb2.StatusEvent.NACK,
    "deployed": admin_pb2.StatusEvent.FILTER_DEPLOYED,
    "deleted": admin_pb2.StatusEvent.FILTER_DELETED,
    "rejected": admin_pb2.StatusEvent.FILTER_REJECTED,
}


def event_message(event: StatusEvent | FilterEvent) -> admin_pb2.StatusEvent:
    """A `StatusEvent` message from a proxy event or a filter change."""
    kind = _EVENT_KINDS.get(event.kind, admin_pb2.StatusEvent.KIND_UNSPECIFIED)
    if isinstance(event, StatusEvent):
        return admin_pb2.StatusEvent(kind=kind, at=timestamp(event.at), node_id=event.node_id,
                                     resources=dict(event.resources), message=event.message)
    return admin_pb2.StatusEvent(
        kind=kind, at=timestamp(event.at), message=event.message,
        filter=admin_pb2.FilterChange(name=event.name, revision=event.revision,
                                      action=event.action, author=event.author),
    )
