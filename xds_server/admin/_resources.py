"""Admin routes for Envoy resources: `/api/v1/resources/{kind}/{name}` with history and
rollback, like filters (`kind`: listeners, routes, clusters, endpoints). Thin handlers
over `AdminService` (the gRPC API calls the same methods).

Bodies are Envoy's v3 JSON: one resource, or `{"specs": [...]}` (one per disjoint
selector; `selector` is this server's key beside Envoy's fields). Refusals are
`{"error": {"status", "message", "resource"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from xds_server.admin._auth import LOCAL, caller_of
from xds_server.admin._service import AdminService
from xds_server.resources import ResourceError

__all__ = ["add_resource_routes", "resource_items"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(exc: ResourceError) -> web.Response:
    return web.json_response(
        {"error": {"status": exc.status, "message": str(exc), "resource": exc.where}},
        status=exc.status)


def _guard(handler: Handler) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ResourceError as exc:
            return _error(exc)
    return run


def _actor(request: web.Request) -> str:
    caller = caller_of(request)
    actor = "".join(c for c in request.headers.get("X-Actor", "").strip()[:200] if c.isprintable())
    who = actor if caller is LOCAL else caller.name + (f" ({actor})" if actor else "")
    peer = request.remote or "unknown"
    return f"{who} (api {peer})" if who else f"api {peer}"


async def _body(request: web.Request, where: str) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ResourceError(where, "", f"request body is not JSON: {exc}") from exc


_DERIVED = {"kind", "name", "versions", "revision"}
"""Members of a GET answer that a PUT of it ignores (`revision` is its precondition)."""


def resource_items(body: Any, where: str) -> list[Any]:
    """One resource, or the `specs` of `{"specs": [...]}` (a GET answer PUT back)."""
    if isinstance(body, dict) and "specs" in body:
        extra = sorted(set(body) - _DERIVED - {"specs"})
        if extra:
            raise ResourceError(where, extra[0], "unknown member beside specs")
        if not isinstance(body["specs"], list):
            raise ResourceError(where, "specs", "must be a list")
        return list(body["specs"])
    return [body]


def add_resource_routes(app: web.Application, service: AdminService) -> None:
    """Add the resource routes over `service` to the admin application."""

    async def list_kind(request: web.Request) -> web.Response:
        return web.json_response({"resources": service.resources(request.match_info["kind"])})

    async def get_one(request: web.Request) -> web.Response:
        return web.json_response(service.resource(request.match_info["kind"], request.match_info["name"]))

    async def put_one(request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        where = f"{kind}/{name}"
        body = await _body(request, where)
        expect = body.get("revision") if isinstance(body, dict) and "specs" in body else None
        view, created = await service.put_resource(
            kind, name, resource_items(body, where), author=_actor(request),
            expect_revision=expect if isinstance(expect, int) else None)
        return web.json_response(view, status=201 if created else 200)

    async def delete_one(request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        revision = await service.delete_resource(kind, name, author=_actor(request))
        return web.json_response({"deleted": f"{kind}/{name}", "revision": revision})

    async def history(request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        limit = request.query.get("limit")
        if limit is not None and not limit.isdigit():
            raise ResourceError(f"{kind}/{name}", "limit", "must be a whole number")
        return web.json_response({"kind": kind, "name": name, "history": await service.resource_history(
            kind, name, None if limit is None else int(limit))})

    async def rollback(request: web.Request) -> web.Response:
        kind, name = request.match_info["kind"], request.match_info["name"]
        body = await _body(request, f"{kind}/{name}")
        to = body.get("to") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) - {"to"} or (to is not None and not isinstance(to, int)):
            raise ResourceError(f"{kind}/{name}", "", 'body must be {} or {"to": REVISION}')
        return web.json_response(await service.rollback_resource(kind, name, author=_actor(request), to=to))

    base = "/api/v1/resources/{kind}"
    app.router.add_get(base, _guard(list_kind))
    app.router.add_get(base + "/{name}", _guard(get_one))
    app.router.add_put(base + "/{name}", _guard(put_one))
    app.router.add_delete(base + "/{name}", _guard(delete_one))
    app.router.add_get(base + "/{name}/history", _guard(history))
    app.router.add_post(base + "/{name}/rollback", _guard(rollback))
