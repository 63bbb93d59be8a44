"""`GET /api/v1/logs?filter=NAME[&node=GLOB][&limit=N][&follow=1]`: access-log entries
of the proxies that run a filter, each with the filter revision that served it.

Without `follow`: JSON `{"filter": NAME, "entries": [...]}`, oldest first (the newest
`limit`, default 100). With `follow=1`: those entries, then new ones as they arrive, as
server-sent events (`Accept: text/event-stream`; one `data:` JSON entry per event, `:
heartbeat` comments) or else NDJSON (one JSON entry per line; an empty line is a
heartbeat). A follower that falls behind loses the oldest entries; the next line then
is `{"lagged": N}` (SSE: an event `lagged`). Entries are `LogEntry.to_dict()`.
Reading logs is a read: any admin token may, like the other read endpoints.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from xds_server.telemetry import LogBuffer, LogFollower

__all__ = ["HEARTBEAT_SECONDS", "get_logs"]

HEARTBEAT_SECONDS = 15.0
_POLL_SECONDS = 1.0  # how often an idle follow stream checks that its client is still there


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


async def get_logs(request: web.Request, logs: LogBuffer) -> web.StreamResponse:
    """The handler (bound to the server's log buffer by the admin app)."""
    q = request.query
    name = q.get("filter", "")
    if not name:
        return _error(400, "the 'filter' query parameter is required (a filter name)")
    node = q.get("node", "*") or "*"
    if len(node) > 256 or len(name) > 256:
        return _error(400, "filter and node must be at most 256 characters")
    try:
        limit = max(0, min(10_000, int(q.get("limit", "100"))))
    except ValueError:
        return _error(400, f"limit must be a whole number, got {q.get('limit')!r}")
    backlog = [e.to_dict() for e in logs.recent(name, node_glob=node, limit=limit)]
    if q.get("follow", "") not in ("1", "true", "yes"):
        return web.json_response({"filter": name, "node": node, "entries": backlog})
    try:
        follower = logs.follow(name, node_glob=node)
    except RuntimeError as exc:
        return _error(503, str(exc))
    sse = "text/event-stream" in request.headers.get("Accept", "")
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8" if sse else "application/x-ndjson",
        "Cache-Control": "no-cache, no-transform",
        "X-Accel-Buffering": "no",
    })
    try:
        await response.prepare(request)
        for entry in backlog:
            await response.write(_frame(entry, sse))
        await _pump(request, response, follower, sse)
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        follower.close()
    return response


def _frame(data: dict[str, Any], sse: bool, event: str = "") -> bytes:
    body = json.dumps(data, separators=(",", ":"))
    if not sse:
        return body.encode() + b"\n"
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {body}\n\n".encode()


async def _pump(request: web.Request, response: web.StreamResponse, follower: LogFollower,
                sse: bool) -> None:
    loop = asyncio.get_running_loop()
    next_heartbeat = loop.time() + HEARTBEAT_SECONDS
    lagged = 0
    while True:
        if request.transport is None or request.transport.is_closing():
            return
        entry = await follower.next(max(0.0, min(_POLL_SECONDS, next_heartbeat - loop.time())))
        if follower.lagged != lagged:
            await response.write(_frame({"lagged": follower.lagged - lagged}, sse, "lagged"))
            lagged = follower.lagged
        if entry is None:
            if follower.closed:
                return
            if loop.time() >= next_heartbeat:
                await response.write(b": heartbeat\n\n" if sse else b"\n")
                next_heartbeat = loop.time() + HEARTBEAT_SECONDS
            continue
        await response.write(_frame(entry.to_dict(), sse))
