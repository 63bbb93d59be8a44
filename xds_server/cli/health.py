"""``xds-server health NAME``: what the proxies running a filter report, per revision.

One row per revision and canary side over the last ``--window`` seconds (default 300):
proxies, requests, 5xx, error rate, latency p50/p99, wasm VM failures, and whether the
revision is failing at run time (a VM failure in the last minute; such rows are marked
``!`` and red on a terminal). ``--output json`` prints the server's answer
(``GET /api/v1/filters/{name}/health``) as it is.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xds_server.cli._client import AdminClient, JSONObject
from xds_server.cli._common import add_server_options, call, print_json, use_color
from xds_server.cli._table import RED, TABLE_WIDTH, Column, render_table

__all__ = ["health_table", "register"]


def _window(text: str) -> float:
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (e.g. 300 or 60s), got {text!r}") from None
    if not 10 <= seconds <= 3600:
        raise argparse.ArgumentTypeError("window must be between 10 and 3600 seconds")
    return seconds


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``health``."""
    p = subparsers.add_parser(
        "health", help="requests, 5xx, latency and wasm failures per filter revision",
        description="Health per revision of a filter, from the telemetry of every proxy "
        "that runs it, merged across replicas.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--window", metavar="SECONDS", type=_window, default=None,
                   help="how far back (10..3600 seconds; default 300)")
    add_server_options(p)
    p.set_defaults(func=run_health)


def run_health(args: argparse.Namespace) -> int:
    """``health NAME [--window S]``."""

    async def work(client: AdminClient) -> int:
        doc = await client.filter_health(args.name, window=args.window)
        if args.output == "json":
            print_json(doc)
            return 0
        print(health_table(doc, color=use_color(sys.stdout)))
        return 0

    return call(args, work)


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.3g}"


def health_table(doc: JSONObject, *, color: bool = False) -> str:
    """REVISION, SIDE, VERSION, PROXIES, REQUESTS, 5XX, ERROR %, P50 MS, P99 MS, VM FAILURES,
    STATE; failing revisions marked."""
    entries = doc.get("revisions") or []
    if not entries:
        return (f"{doc.get('name')}: no telemetry in the last {doc.get('window', 0):g}s "
                "(are the proxies bootstrapped with --telemetry?)")
    columns = [
        Column("REVISION", align_right=True), Column("SIDE"), Column("VERSION", shrink=True, min_width=8),
        Column("PROXIES", align_right=True), Column("REQUESTS", align_right=True),
        Column("5XX", align_right=True), Column("ERROR %", align_right=True),
        Column("P50 MS", align_right=True), Column("P99 MS", align_right=True),
        Column("VM FAILURES", align_right=True), Column("STATE"),
    ]
    rows = []
    for e in entries:
        latency = e.get("latency_ms") or {}
        rows.append([
            str(e["revision"]), "canary" if e.get("canary") else "base", str(e.get("version") or "-"),
            str(e["proxies"]), str(e["requests"]), str(e["errors_5xx"]), f"{100 * e['error_rate']:.1f}",
            _ms(latency.get("p50")), _ms(latency.get("p99")), str(e["vm_failures"]),
            "FAILING" if e.get("failing") else "ok",
        ])
    failing = [bool(e.get("failing")) for e in entries]
    table = render_table(columns, rows, max_width=TABLE_WIDTH, marks=["!" if f else " " for f in failing],
                         colors=[RED if f and color else None for f in failing])
    custom = [(e["revision"], e.get("canary"), e.get("custom_metrics") or {}) for e in entries]
    lines = [table]
    for revision, canary, metrics in custom:
        if metrics:
            shown = ", ".join(f"{k}={v:g}" for k, v in sorted(metrics.items()))
            lines.append(f"revision {revision}{' (canary)' if canary else ''} custom metrics: {shown}")
    return "\n".join(lines)
