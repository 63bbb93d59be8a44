"""`GET /api/v1/filters/{name}/health`: health per filter revision, fleet-wide.

The view (`filter_health_view`) is shared with the gRPC admin API's `GetFilterHealth`
and the `xds-server health` command. Its member names are a contract:

    {"name", "window", "bucket_seconds", "current_revision",
     "revisions": [{"revision", "version", "canary", "proxies", "requests", "errors_5xx",
                    "error_rate", "latency_ms": {"p50", "p99"}, "vm_failures", "vm_reloads",
                    "custom_metrics", "failing", "series": [{"t", "requests", "errors_5xx",
                    "vm_failures"}]}]}

`?window=` is in seconds (10..3600, default 300). `failing` follows
`HealthWindows.failing` (a wasm VM failure in the last minute).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from google.protobuf import timestamp_pb2

from xds_server.admin.v1 import admin_pb2
from xds_server.telemetry import HealthWindows

if TYPE_CHECKING:
    from xds_server.admin._service import AdminService

__all__ = [
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "WindowError",
    "add_filter_health_routes",
    "filter_health_message",
    "filter_health_view",
    "parse_window",
]

DEFAULT_WINDOW = 300.0
MAX_WINDOW = 3600.0
MIN_WINDOW = 10.0


class WindowError(ValueError):
    """The `window` asked for is not a number of seconds in range."""


def parse_window(text: str | None) -> float:
    """`?window=` -> seconds; None or "" -> the default; `WindowError` when out of range."""
    if text is None or text == "":
        return DEFAULT_WINDOW
    try:
        window = float(text)
    except ValueError:
        raise WindowError(f"window must be a number of seconds, got {text[:40]!r}") from None
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise WindowError(f"window must be between {MIN_WINDOW:g} and {MAX_WINDOW:g} seconds")
    return window


async def filter_health_view(service: AdminService, name: str, window: float) -> dict[str, Any] | None:
    """The health view of `name` over the last `window` seconds, or None when the server
    knows no such filter (never served, no history)."""
    health: HealthWindows | None = service.health
    if not await service.known(name):
        return None
    entries = [] if health is None else await health.report(name, window=window)
    return {
        "name": name,
        "window": window,
        "bucket_seconds": health.limits.bucket_seconds if health is not None else 10,
        "current_revision": service.current_revision(name),
        "telemetry": health is not None,
        "revisions": [e.to_dict() for e in entries],
    }


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"status": status, "message": message}}, status=status)


def add_filter_health_routes(app: web.Application, service: AdminService) -> None:
    """Add `GET /api/v1/filters/{name}/health` to the admin app (reads `service.health`)."""

    async def get_filter_health(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            window = parse_window(request.query.get("window"))
        except WindowError as exc:
            return _error(400, str(exc))
        view = await filter_health_view(service, name, window)
        if view is None:
            return _error(404, f"no filter named {name!r}")
        return web.json_response(view)

    app.router.add_get("/api/v1/filters/{name}/health", get_filter_health)


def filter_health_message(view: dict[str, Any]) -> admin_pb2.FilterHealth:
    """The gRPC `FilterHealth` for a `filter_health_view`."""
    msg = admin_pb2.FilterHealth(name=view["name"], window_seconds=view["window"],
                                 bucket_seconds=view["bucket_seconds"])
    if view["current_revision"] is not None:
        msg.current_revision = view["current_revision"]
    for e in view["revisions"]:
        rev = admin_pb2.RevisionHealth(
            revision=e["revision"], version=e["version"], canary=e["canary"], proxies=e["proxies"],
            requests=e["requests"], errors_5xx=e["errors_5xx"], error_rate=e["error_rate"],
            vm_failures=e["vm_failures"], vm_reloads=e["vm_reloads"], failing=e["failing"],
            custom_metrics=e["custom_metrics"],
        )
        if e["latency_ms"]["p50"] is not None:
            rev.latency_p50_ms = e["latency_ms"]["p50"]
            rev.latency_p99_ms = e["latency_ms"]["p99"]
        for p in e["series"]:
            rev.series.append(admin_pb2.HealthPoint(
                t=timestamp_pb2.Timestamp(seconds=int(p["t"])), requests=p["requests"],
                errors_5xx=p["errors_5xx"], vm_failures=p["vm_failures"]))
        msg.revisions.append(rev)
    return msg
