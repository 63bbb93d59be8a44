"""`xds-server logs NAME [--node GLOB] [--follow] [--output json]`: access-log entries of
the proxies that run a filter, each with the filter revision that served it.

Table output: one line per entry (time, node, revision, status, duration, method, path,
response code details, then the filter state and dynamic metadata the module set).
JSON output: one JSON object per line (NDJSON), as the API sends them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from xds_server.cli._client import AdminError, JSONObject
from xds_server.cli._common import add_server_options, client_for
from xds_server.cli._table import truncate

__all__ = ["entry_line", "register"]

HEADER = f"{'TIME':<23}  {'NODE':<16}  {'REV':>4}  {'CODE':>4}  {'MS':>7}  {'METHOD':<6}  {'PATH':<24}  DETAILS"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `logs` subcommand."""
    p = subparsers.add_parser(
        "logs", help="access logs of the proxies that run a filter, with its revision",
        description="Entries arrive when Envoys run with `bootstrap --telemetry` (or the "
        "README's snippets). The server keeps the most recent entries per filter in memory.")
    p.add_argument("name", metavar="NAME", help="filter name")
    p.add_argument("--node", metavar="GLOB", default="*", help="only nodes whose id matches GLOB")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    p.add_argument("--limit", metavar="N", type=int, default=None,
                   help="how many recent entries first (default 100; 10 with --follow)")
    add_server_options(p, output_help="table for people (default), json (one object per line) for scripts")
    p.set_defaults(func=run)


def entry_line(e: JSONObject) -> str:
    """One entry as a table line (see `HEADER`)."""
    t = e.get("time")
    when = "-"
    if isinstance(t, int | float):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"
    rev = f"r{e.get('revision', 0)}" + ("*" if e.get("canary") else "")
    extra = [f"{k}={v}" for k, v in sorted((e.get("filter_state") or {}).items())]
    extra += [f"{k}={v}" for k, v in sorted((e.get("metadata") or {}).items())]
    ms = e.get("duration_ms", 0)
    return (f"{when:<23}  {truncate(str(e.get('node_id', '')), 16):<16}  {rev:>4}  "
            f"{e.get('status', 0):>4}  {ms if isinstance(ms, int | float) else 0:>7g}  "
            f"{truncate(str(e.get('method', '')), 6):<6}  {truncate(str(e.get('path', '')), 24):<24}  "
            + " ".join(x for x in [str(e.get("details", "") or "-"), *extra] if x))


def _print(item: JSONObject, as_json: bool) -> None:
    if as_json:
        print(json.dumps(item, separators=(",", ":")), flush=True)
    elif "lagged" in item:
        print(f"... {item['lagged']} entries skipped (this client fell behind)", flush=True)
    else:
        print(entry_line(item), flush=True)


def run(args: argparse.Namespace) -> int:
    """Print the entries (and follow); exit 1 with one line on stderr on an API error."""
    as_json = args.output == "json"

    async def main() -> int:
        async with client_for(args) as client:
            if not as_json:
                print(HEADER, flush=True)
            if args.follow:
                async for item in client.follow_logs(args.name, node=args.node,
                                                     limit=10 if args.limit is None else args.limit):
                    _print(item, as_json)
                return 0
            doc: Any = await client.logs(args.name, node=args.node,
                                         limit=100 if args.limit is None else args.limit)
            for entry in doc.get("entries", []):
                _print(entry, as_json)
            return 0

    try:
        return asyncio.run(main())
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
