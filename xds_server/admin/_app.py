"""aiohttp application for the admin port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import prometheus_client
from aiohttp import web

from xds_server.admin._auth import LOCAL, TokenStore, auth_middleware, caller_of, redact_spec
from xds_server.admin._events import EventStreams
from xds_server.admin._filter_health import add_filter_health_routes
from xds_server.admin._logs import get_logs
from xds_server.admin._page import static_file, status_page
from xds_server.admin._specs import parse_specs
from xds_server.controller import Controller, Deployed, FilterError, FilterState
from xds_server.state import Revision
from xds_server.status import StatusTracker
from xds_server.telemetry import HealthWindows, LogBuffer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class AdminState:
    """What the admin handlers read. `loaded` becomes True after the first config apply."""

    controller: Controller
    status: StatusTracker
    module_path: Callable[[str], Path | None]
    loaded: bool = False
    draining: bool = False
    tokens: TokenStore = field(default_factory=TokenStore)
    logs: LogBuffer = field(default_factory=LogBuffer)
    health: HealthWindows | None = None


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


def filter_to_dict(state: FilterState, status: StatusTracker, *, redact: bool = False) -> dict[str, Any]:
    """JSON form of one filter (the API's FilterView). With `redact`, plugin
    configuration and env values are hidden (read-only callers)."""
    rev = state.revision
    return {
        "name": state.name,
        "revision": rev.revision if rev else 0,
        "author": rev.author if rev else "",
        "action": rev.action if rev else "",
        "updated_at": rev.created_at if rev else None,
        "summary": rev.summary if rev else "",
        "error": state.error,
        "error_at": state.error_at,
        "canary": state.canary,
        "good_revision": state.refresh_good(status.all_acked),
        "base_versions": [b.resource.version for b in state.base],
        "specs": [
            {
                **(redact_spec(d.spec.to_dict()) if redact else d.spec.to_dict()),
                "version": d.resource.version,
                "module": {
                    "sha256": d.module.sha256,
                    "size": d.module.size,
                    "layout": d.module.layout,
                    "reference": d.module.reference,
                    "root_ids": list(d.module.root_ids),
                    "manifest_digest": d.module.manifest_digest,
                },
                "verdict": _verdict(d, rev, i),
            }
            for i, d in enumerate(state.deployed)
        ],
        "proxies": status.counts(state.name),
        "rollout": status.rollout(state.name),
    }


def _verdict(d: Deployed, rev: Revision | None, i: int) -> dict[str, Any] | None:
    """The module's signature verdict: as resolved here, else as the revision recorded it
    (a replica that restored the module from a peer has no verdict of its own)."""
    if d.module.verdict:
        return dict(d.module.verdict)
    recorded = rev.verdicts[i] if rev is not None and i < len(rev.verdicts) else None
    return dict(recorded) if recorded else None


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
    st = request.app[STATE]
    ctl = st.controller
    return web.json_response(
        {"filters": [filter_to_dict(ctl.filters[n], st.status, redact=_redact(request))
                     for n in sorted(ctl.filters)]}
    )


async def get_filter(request: web.Request) -> web.Response:
    """GET /api/v1/filters/{name}."""
    name = request.match_info["name"]
    st = request.app[STATE]
    state = st.controller.filters.get(name)
    if state is None:
        return json_error(404, f"no filter named {name!r}")
    return web.json_response(filter_to_dict(state, st.status, redact=_redact(request)))


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


def _filter_error(exc: FilterError) -> web.Response:
    return json_error(exc.status, exc.message, filter=exc.name)


async def put_filter(request: web.Request) -> web.Response:
    """PUT /api/v1/filters/{name}: one spec, or {"specs": [...]}; a new revision."""
    name = request.match_info["name"]
    st = request.app[STATE]
    try:
        body = await _json_body(request)
        raw = body.get("specs") if isinstance(body, dict) and "specs" in body else [body]
        if not isinstance(raw, list):
            raise FilterError(name, "'specs' must be a non-empty list of filter specs", status=400)
        specs = parse_specs(name, raw)
        created = name not in st.controller.filters
        state = await st.controller.deploy(name, specs, author=_actor(request), action="deploy")
    except FilterError as exc:
        return _filter_error(exc)
    return web.json_response(filter_to_dict(state, st.status), status=201 if created else 200)


async def delete_filter(request: web.Request) -> web.Response:
    """DELETE /api/v1/filters/{name}."""
    name = request.match_info["name"]
    try:
        rev = await request.app[STATE].controller.delete(name, author=_actor(request))
    except FilterError as exc:
        return _filter_error(exc)
    return web.json_response({"deleted": name, "revision": rev.revision})


async def filter_history(request: web.Request) -> web.Response:
    """GET /api/v1/filters/{name}/history?limit=N: revisions, newest first."""
    name = request.match_info["name"]
    try:
        limit = max(1, min(10_000, int(request.query.get("limit", "100"))))
    except ValueError:
        return json_error(400, "limit must be a whole number")
    history = await request.app[STATE].controller.state.history(name, limit)
    if not history:
        return json_error(404, f"no filter named {name!r} (no history)")
    redact = _redact(request)
    revisions = []
    for r in history:
        d = r.to_dict()
        if redact:
            d["specs"] = [redact_spec(spec) for spec in d["specs"]]
        revisions.append(d)
    return web.json_response({"name": name, "history": revisions})


async def rollback_filter(request: web.Request) -> web.Response:
    """POST /api/v1/filters/{name}/rollback, body {} or {"to": N}."""
    name = request.match_info["name"]
    st = request.app[STATE]
    try:
        body = await _json_body(request, allow_empty=True)
        to = body.get("to") if isinstance(body, dict) else None
        if to is not None and (isinstance(to, bool) or not isinstance(to, int | str) or to == ""):
            raise FilterError(name, "'to' must be a revision number or an xDS version", status=400)
        state = await st.controller.rollback(name, author=_actor(request), to=to)
    except FilterError as exc:
        return _filter_error(exc)
    return web.json_response(filter_to_dict(state, st.status))


async def promote_filter(request: web.Request) -> web.Response:
    """POST /api/v1/filters/{name}/promote: widen a canary to the full selector."""
    name = request.match_info["name"]
    st = request.app[STATE]
    try:
        state = await st.controller.promote(name, author=_actor(request))
    except FilterError as exc:
        return _filter_error(exc)
    return web.json_response(filter_to_dict(state, st.status))


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
    state = request.app[STATE]
    path = state.module_path(digest) or await state.controller.module_path(digest)
    if path is None:
        return json_error(404, f"no module with sha256 {digest} in the store")
    data = await asyncio.to_thread(path.read_bytes)
    response = web.Response(body=data, headers={"Content-Type": "application/wasm"})
    await response.prepare(request)
    await response.write_eof()
    state.controller.on_module_fetched(digest)
    return response


def build_admin_app(state: AdminState) -> web.Application:
    """The admin application; routes are listed in the README."""
    app = web.Application(middlewares=[_errors, auth_middleware(state.tokens)], client_max_size=8 * 2**20)
    app[STATE] = state
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
    app.router.add_get("/api/v1/proxies", list_proxies)

    async def logs(request: web.Request) -> web.StreamResponse:  # telemetry: access logs
        return await get_logs(request, state.logs)

    app.router.add_get("/api/v1/logs", logs)
    add_filter_health_routes(app, state)
    app.router.add_get("/modules/sha256/{digest}", get_module)
    events = EventStreams((state.status.subscribe, state.controller.subscribe))
    app.router.add_get("/api/v1/events", events.handle)
    app.on_shutdown.append(events.close_all)

    async def close_log_followers(_app: web.Application) -> None:
        state.logs.close_all()

    app.on_shutdown.append(close_log_followers)
    app.router.add_get("/", status_page)
    app.router.add_get("/static/{name}", static_file)
    return app
