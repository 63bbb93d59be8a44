"""aiohttp application for the admin port: thin handlers over `AdminService`.

Routes are listed in the README. A handler refuses by raising `FilterError`; the error
middleware answers `{"error": {"status", "message", "filter"}}` with its status.
Another admin concern (its own module in `admin/`)
adds its routes through `build_admin_app(..., extensions=[...])`: each extension is
called with the application before it starts and may add routes and app keys.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import prometheus_client
from aiohttp import web

from xds_server.admin._auth import LOCAL, auth_middleware, caller_of
from xds_server.admin._events import EventStreams
from xds_server.admin._filter_health import WindowError, add_filter_health_routes, parse_window
from xds_server.admin._logs import get_logs
from xds_server.admin._page import static_file, status_page
from xds_server.admin._resources import add_resource_routes
from xds_server.admin._service import AdminService
from xds_server.admin._specs import (
    parse_debug_body,
    parse_filter_body,
    parse_promote_body,
    parse_rollback_body,
)
from xds_server.controller import FilterError
from xds_server.proxy_index import ProxyQuery, QueryError

__all__ = ["SERVICE", "AppExtension", "build_admin_app", "json_error"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


SERVICE = web.AppKey("service", AdminService)
AppExtension = Callable[[web.Application], None]
"""Adds one concern's routes (and app keys) to the admin application."""


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body a person can act on: `{"error": {"status", "message", ...}}`."""
    return web.json_response({"error": {"status": status, "message": message, **extra}},
                             status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FilterError as exc:  # what every handler refuses with: the status that fits
        return json_error(exc.status, exc.message, filter=exc.name)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason or "error", path=request.path)


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness (`AdminService.problems`): config loaded, every filter has a module,
    not draining."""
    problems = request.app[SERVICE].problems()
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(_request: web.Request) -> web.Response:
    """Prometheus exposition of the process's metrics."""
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def list_filters(request: web.Request) -> web.Response:
    """GET /api/v1/filters: every served filter."""
    return web.json_response({"filters": request.app[SERVICE].filters(redact=_redact(request))})


async def get_filter(request: web.Request) -> web.Response:
    """GET /api/v1/filters/{name}."""
    name = request.match_info["name"]
    return web.json_response(request.app[SERVICE].filter(name, redact=_redact(request)))


def _redact(request: web.Request) -> bool:
    return not caller_of(request).can_write


def _actor(request: web.Request) -> str:
    """Who made a change: the token's name (when tokens are configured), plus the
    `X-Actor` the client claims, plus its address."""
    caller = caller_of(request)
    actor = "".join(c for c in request.headers.get("X-Actor", "").strip()[:200] if c.isprintable())
    peer = request.remote or "unknown"
    who = actor if caller is LOCAL else f"{caller.name}" + (f" ({actor})" if actor else "")
    return f"{who} (api {peer})" if who else f"api {peer}"


async def _json_body(request: web.Request, *, allow_empty: bool = False) -> Any:
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FilterError(request.match_info.get("name", ""),
                          f"request body is not UTF-8 JSON (byte {exc.start})", status=400) from exc
    if not text.strip():
        if allow_empty:
            return {}
        raise FilterError(request.match_info.get("name", ""), "request body is empty: send JSON",
                          status=400)
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise FilterError(request.match_info.get("name", ""), "request body is nested too deeply",
                          status=400) from exc
    except json.JSONDecodeError as exc:
        raise FilterError(request.match_info.get("name", ""),
                          f"request body is not JSON: {exc.msg} at line {exc.lineno} "
                          f"column {exc.colno}", status=400) from exc


async def put_filter(request: web.Request) -> web.Response:
    """PUT /api/v1/filters/{name}: one spec, or {"specs": [...]} (a filter as GET shows
    it: see `_specs`); a new revision."""
    name = request.match_info["name"]
    change = parse_filter_body(name, await _json_body(request))
    view, created = await request.app[SERVICE].apply(name, change, author=_actor(request))
    return web.json_response(view, status=201 if created else 200)


async def delete_filter(request: web.Request) -> web.Response:
    """DELETE /api/v1/filters/{name}."""
    name = request.match_info["name"]
    revision = await request.app[SERVICE].delete(name, author=_actor(request))
    return web.json_response({"deleted": name, "revision": revision})


async def filter_history(request: web.Request) -> web.Response:
    """GET /api/v1/filters/{name}/history?limit=N: revisions, newest first."""
    name = request.match_info["name"]
    try:
        limit = int(request.query["limit"]) if "limit" in request.query else None
    except ValueError:
        return json_error(400, "limit must be a whole number")
    history = await request.app[SERVICE].history(name, limit, redact=_redact(request))
    return web.json_response({"name": name, "history": history})


async def rollback_filter(request: web.Request) -> web.Response:
    """POST /api/v1/filters/{name}/rollback, body {} or {"to": N}."""
    name = request.match_info["name"]
    to = parse_rollback_body(name, await _json_body(request, allow_empty=True))
    view = await request.app[SERVICE].rollback(name, author=_actor(request), to=to)
    return web.json_response(view)


async def promote_filter(request: web.Request) -> web.Response:
    """POST /api/v1/filters/{name}/promote (body empty or {}): widen a canary to the full
    selector."""
    name = request.match_info["name"]
    parse_promote_body(name, await _json_body(request, allow_empty=True))
    view = await request.app[SERVICE].promote(name, author=_actor(request))
    return web.json_response(view)


async def debug_filter(request: web.Request) -> web.Response:
    """POST /api/v1/filters/{name}/debug, body {"node", "configuration", "for"}: a
    time-boxed configuration override for the matching proxies."""
    name = request.match_info["name"]
    node, configuration, seconds = parse_debug_body(name, await _json_body(request))
    view = await request.app[SERVICE].debug(name, node=node, configuration=configuration,
                                            seconds=seconds, author=_actor(request))
    return web.json_response(view)


async def end_debug(request: web.Request) -> web.Response:
    """DELETE /api/v1/filters/{name}/debug: end the override now (409 without one)."""
    name = request.match_info["name"]
    return web.json_response(await request.app[SERVICE].end_debug(name, author=_actor(request)))


async def list_proxies(request: web.Request) -> web.Response:
    """GET /api/v1/proxies[?node=&cluster=&filter=&state=&version=&limit=&cursor=]:
    known Envoys with per-resource versions and NACKs, in natural node order, one page
    (without `limit`: all that match), with `total` and `next_cursor`."""
    try:
        query = ProxyQuery.from_params(request.query)
    except QueryError as exc:
        return json_error(400, str(exc))
    return web.json_response(request.app[SERVICE].query_proxies(query))


async def get_summary(request: web.Request) -> web.Response:
    """GET /api/v1/summary[?window=S]: per filter, versions by state and cluster, NACKs
    grouped by message, health per revision (see `_fleet`)."""
    try:
        window = parse_window(request.query.get("window"))
    except WindowError as exc:
        return json_error(400, str(exc))
    return web.json_response(await request.app[SERVICE].summary(window=window))


async def get_module(request: web.Request) -> web.StreamResponse:
    """GET /modules/sha256/{hex}: a stored module's bytes, for `remote` delivery."""
    digest = request.match_info["digest"]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return json_error(400, "digest must be 64 lowercase hex digits")
    service = request.app[SERVICE]
    path = await service.module_path(digest)
    if path is None:
        return json_error(404, f"no module with sha256 {digest} in the store")
    data = await asyncio.to_thread(path.read_bytes)
    response = web.Response(body=data, headers={"Content-Type": "application/wasm"})
    await response.prepare(request)
    await response.write_eof()
    service.module_sent(digest)
    return response


def build_admin_app(service: AdminService, *, extensions: Sequence[AppExtension] = ()) -> web.Application:
    """The admin application over `service`, plus each extension's routes."""
    app = web.Application(middlewares=[_errors, auth_middleware(service.tokens)], client_max_size=8 * 2**20)
    app[SERVICE] = service
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/filters", list_filters)
    app.router.add_get("/api/v1/filters/{name}", get_filter)
    app.router.add_put("/api/v1/filters/{name}", put_filter)
    app.router.add_delete("/api/v1/filters/{name}", delete_filter)
    app.router.add_get("/api/v1/filters/{name}/history", filter_history)
    app.router.add_post("/api/v1/filters/{name}/rollback", rollback_filter)
    app.router.add_post("/api/v1/filters/{name}/promote", promote_filter)
    app.router.add_post("/api/v1/filters/{name}/debug", debug_filter)
    app.router.add_delete("/api/v1/filters/{name}/debug", end_debug)
    app.router.add_get("/api/v1/proxies", list_proxies)
    app.router.add_get("/api/v1/summary", get_summary)

    async def logs(request: web.Request) -> web.StreamResponse:  # telemetry: access logs
        return await get_logs(request, service.logs)

    app.router.add_get("/api/v1/logs", logs)
    add_filter_health_routes(app, service)
    add_resource_routes(app, service)
    app.router.add_get("/modules/sha256/{digest}", get_module)
    events = EventStreams((service.subscribe_proxies, service.subscribe_filters),
                          fleet_sources=(service.subscribe_fleet, service.subscribe_filters))
    app.router.add_get("/api/v1/events", events.handle)
    app.on_shutdown.append(events.close_all)

    async def close_fleet_feed(_app: web.Application) -> None:
        await service.fleet_feed.close()

    app.on_shutdown.append(close_fleet_feed)

    async def close_log_followers(_app: web.Application) -> None:
        service.logs.close_all()

    app.on_shutdown.append(close_log_followers)
    app.router.add_get("/", status_page)
    app.router.add_get("/static/{name}", static_file)
    for extend in extensions:
        extend(app)
    return app
