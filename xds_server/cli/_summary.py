"""``xds-server status`` without ``--proxies``: the fleet summary as text.

Per filter (those needing attention first): a head line, the NACK groups (``!``, one
line per Envoy message with how many proxies and the first node ids), health per
revision, then one row per xDS version with proxies by state and by cluster. Then the
standalone fleet's Envoy resources, compactly: one line per resource (``kind/name``,
revision, current version, proxies by state) and its NACK groups. Lines fit ``width``
columns.
"""

from __future__ import annotations

from typing import Any

from xds_server.cli._client import JSONObject
from xds_server.cli._table import RED, Column, render_table, truncate

__all__ = ["summary_report"]

_STATES = ("ACKED", "NACKED", "STALE", "REQUESTED")
_RESET = "\x1b[0m"


def _proxy_counts(t: JSONObject) -> list[str]:
    """``A/C connected ACKED``, then NACKED, waiting and disconnected when there are any."""
    parts = [f"{t.get('ACKED', 0)}/{t.get('connected', 0)} connected ACKED"]
    for key, label in (("NACKED", "NACKED"), ("STALE", "waiting"), ("disconnected", "disconnected")):
        if t.get(key):
            parts.append(f"{t[key]} {label}")
    return parts


def _head(f: JSONObject) -> str:
    parts = [f"{f.get('name')}:",
             f"revision {f.get('revision')}" if f.get("served") else "not served",
             *_proxy_counts(f.get("totals") or {})]
    if f.get("failing"):
        parts.append("FAILING AT RUNTIME")
    if f.get("canary"):
        parts.append("canary")
    if f.get("signed_by"):
        parts.append("signed by " + ", ".join(f["signed_by"]))
    if f.get("error"):
        parts.append(f"error: {f['error']}")
    return " ".join(parts[:2]) + ", " + ", ".join(parts[2:])


def _clusters(v: JSONObject) -> str:
    out = []
    for cluster, counts in sorted((v.get("clusters") or {}).items()):
        states = " ".join(f"{counts[s]} {s}" for s in _STATES if counts.get(s))
        out.append(f"{cluster or '-'}: {states}")
    return "; ".join(out) or "-"


def _nack_lines(f: JSONObject, *, width: int, color: bool) -> list[str]:
    red = (lambda s: f"{RED}{s}{_RESET}") if color else (lambda s: s)
    lines = []
    for g in f.get("nacks") or []:
        count = g.get("count", 0)
        nodes = ", ".join(g.get("nodes") or [])
        more = f" +{count - len(g.get('nodes') or [])}" if count > len(g.get("nodes") or []) else ""
        text = (f"! {count} {'proxy' if count == 1 else 'proxies'} NACKED "
                f"{','.join(v[:8] for v in g.get('versions') or [])}: {g.get('message')}")
        lines.append(red(truncate(text, width)))
        lines.append("    " + truncate(f"{nodes}{more}", width - 4))
    return lines


def _resource_line(r: JSONObject) -> str:
    t = r.get("totals") or {}
    current = ",".join(str(v)[:16] for v in r.get("current_versions") or []) or "-"
    head = (f"{r.get('kind')}/{r.get('name')}: "
            + (f"revision {r.get('revision')}, version {current}" if r.get("served") else "not served"))
    return head + ", " + ", ".join(_proxy_counts(t))


def _filter_lines(f: JSONObject, *, width: int, color: bool) -> list[str]:
    red = (lambda s: f"{RED}{s}{_RESET}") if color else (lambda s: s)
    lines = [truncate(_head(f), width), *_nack_lines(f, width=width, color=color)]
    for h in f.get("health") or []:
        mark = "! " if h.get("failing") else "  "
        text = (f"{mark}rev {h.get('revision')}{' canary' if h.get('canary') else ''}: "
                f"{'failing at runtime' if h.get('failing') else 'ok'}, {h.get('requests', 0)} requests, "
                f"{100 * float(h.get('error_rate') or 0):.1f}% 5xx, {h.get('vm_failures', 0)} VM failures")
        lines.append(red(truncate(text, width)) if h.get("failing") else truncate(text, width))
    columns = [Column("  XDS VERSION"), Column("CURRENT"), Column("RUNNING", align_right=True),
               *(Column(s, align_right=True) for s in _STATES), Column("BY CLUSTER", shrink=True, min_width=10)]
    rows: list[list[str]] = [
        ["  " + (str(v.get("version")) or "(none sent)"), "yes" if v.get("current") else "-",
         str(v.get("running", 0)), *(str(v.get(s, 0)) for s in _STATES), _clusters(v)]
        for v in f.get("versions") or []
    ]
    if rows:
        lines.append(render_table(columns, rows, max_width=width))
    return lines


def summary_report(summary: JSONObject, *, width: int = 100, color: bool = False) -> str:
    """The text of the fleet summary (``GET /api/v1/summary``)."""
    p: Any = summary.get("proxies") or {}
    out = [f"{p.get('connected', 0)} proxies connected, {p.get('known', 0)} known"]
    filters = summary.get("filters") or []
    if not filters:
        out.append("no filters are served and no proxy asks for one")
    for f in filters:
        out.append("")
        out.extend(_filter_lines(f, width=width, color=color))
    resources = summary.get("resources") or []
    if resources:
        out += ["", "resources:"]
        for r in resources:
            out.append(truncate(_resource_line(r), width))
            out.extend(_nack_lines(r, width=width, color=color))
    out.append("")
    out.append("proxies: xds-server status --proxies [--state NACKED] [--node GLOB] ...")
    return "\n".join(out)
