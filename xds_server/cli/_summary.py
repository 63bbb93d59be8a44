"""``xds-server status`` without ``--proxies``: the fleet summary as text.

Per filter (those needing attention first): a head line, the NACK groups (``!``, one
line per Envoy message with how many proxies and the first node ids), health per
revision, then one row per xDS version with proxies by state and by cluster. Lines fit
``width`` columns.
"""

from __future__ import annotations

from typing import Any

from xds_server.cli._client import JSONObject
from xds_server.cli._table import RED, Column, render_table, truncate

__all__ = ["summary_report"]

_STATES = ("ACKED", "NACKED", "STALE", "REQUESTED")
_RESET = "\x1b[0m"


def _head(f: JSONObject) -> str:
    t = f.get("totals") or {}
    parts = [f"{f.get('name')}:",
             f"revision {f.get('revision')}" if f.get("served") else "not served",
             f"{t.get('ACKED', 0)}/{t.get('connected', 0)} connected ACKED"]
    if t.get("NACKED"):
        parts.append(f"{t['NACKED']} NACKED")
    if t.get("STALE"):
        parts.append(f"{t['STALE']} waiting")
    if t.get("disconnected"):
        parts.append(f"{t['disconnected']} disconnected")
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


def _filter_lines(f: JSONObject, *, width: int, color: bool) -> list[str]:
    red = (lambda s: f"{RED}{s}{_RESET}") if color else (lambda s: s)
    lines = [truncate(_head(f), width)]
    for g in f.get("nacks") or []:
        count = g.get("count", 0)
        nodes = ", ".join(g.get("nodes") or [])
        more = f" +{count - len(g.get('nodes') or [])}" if count > len(g.get("nodes") or []) else ""
        text = (f"! {count} {'proxy' if count == 1 else 'proxies'} NACKED "
                f"{','.join(v[:8] for v in g.get('versions') or [])}: {g.get('message')}")
        lines.append(red(truncate(text, width)))
        lines.append("    " + truncate(f"{nodes}{more}", width - 4))
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
    out.append("")
    out.append("proxies: xds-server status --proxies [--state NACKED] [--node GLOB] ...")
    return "\n".join(out)
