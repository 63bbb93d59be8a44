"""aiohttp application for the admin port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
from aiohttp import web

from xds_server.controller import Controller, FilterState
from xds_server.status import StatusTracker

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class AdminState:
    """What the admin handlers read. `loaded` becomes True after the first config apply."""

    controller: Controller
    status: StatusTracker
    module_path: Callable[[str], Path | None]
    loaded: bool = False
    draining: bool = False


STATE = web.AppKey("state", AdminState)


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """A JSON error body a person can act on: `{"error": {"status", "message", ...}}`."""
    return web.json_response({"error": {"status": status, "message": message, **extra}},
                             status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        return json_error(exc.status, exc.reason or "error", path=request.path)


def filter_to_dict(state: FilterState) -> dict[str, Any]:
    """JSON form of one filter's served state."""
    return {
        "name": state.name,
        "error": state.error,
        "error_at": state.error_at,
        "updated_at": state.updated_at,
        "specs": [
            {
                **d.spec.to_dict(),
                "version": d.resource.version,
                "module": {
                    "sha256": d.module.sha256,
                    "size": d.module.size,
                    "layout": d.module.layout,
                    "reference": d.module.reference,
                    "root_ids": list(d.module.root_ids),
                    "manifest_digest": d.module.manifest_digest,
                },
            }
            for d in state.deployed
        ],
    }


async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: config loaded, every filter has a module, not draining."""
    state = request.app[STATE]
    problems = []
    if not state.loaded:
        problems.append("initial configuration not applied yet")
    if state.draining:
        problems.append("shutting down")
    for f in state.controller.filters.values():
        if not f.deployed:
            problems.append(f"filter {f.name!r} has no module: {f.error}")
    if problems:
        return web.json_response({"status": "not ready", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(_request: web.Request) -> web.Response:
    """Prometheus exposition of the process's metrics."""
    body = prometheus_client.generate_latest()
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


async def list_filters(request: web.Request) -> web.Response:
    """GET /api/v1/filters: every served filter."""
    ctl = request.app[STATE].controller
    return web.json_response(
        {"filters": [filter_to_dict(ctl.filters[n]) for n in sorted(ctl.filters)]}
    )


async def get_filter(request: web.Request) -> web.Response:
    """GET /api/v1/filters/{name}."""
    name = request.match_info["name"]
    state = request.app[STATE].controller.filters.get(name)
    if state is None:
        return json_error(404, f"no filter named {name!r}")
    return web.json_response(filter_to_dict(state))


async def list_proxies(request: web.Request) -> web.Response:
    """GET /api/v1/proxies: every known Envoy with per-resource versions and NACKs."""
    tracker = request.app[STATE].status
    return web.json_response(
        {"proxies": [tracker.proxies[k].to_dict() for k in sorted(tracker.proxies)]}
    )


async def get_module(request: web.Request) -> web.StreamResponse:
    """GET /modules/sha256/{hex}: a stored module's bytes, for `remote` delivery."""
    digest = request.match_info["digest"]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return json_error(400, "digest must be 64 lowercase hex digits")
    path = request.app[STATE].module_path(digest)
    if path is None:
        return json_error(404, f"no module with sha256 {digest} in the store")
    return web.FileResponse(path, headers={"Content-Type": "application/wasm"})


def build_admin_app(state: AdminState) -> web.Application:
    """The admin application; routes are listed in the README."""
    app = web.Application(middlewares=[_errors], client_max_size=8 * 2**20)
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/filters", list_filters)
    app.router.add_get("/api/v1/filters/{name}", get_filter)
    app.router.add_get("/api/v1/proxies", list_proxies)
    app.router.add_get("/modules/sha256/{digest}", get_module)
    return app
