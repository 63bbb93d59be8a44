"""The status page: `GET /` and its static files, shipped as package data.

Plain HTML, CSS and JavaScript in `xds_server/admin/static/`, no build step and no
external URLs. The page reads `/api/v1/summary`, `/api/v1/filters` (with each filter's
history and health) and one page of `/api/v1/proxies` at a time, and follows
`/api/v1/events?feed=fleet`: it applies the coalesced ticks in place and refetches the
filters only on filter changes, the proxy page only when which proxies match may have
changed.
"""

from __future__ import annotations

import functools
from importlib import resources

from aiohttp import web

__all__ = ["STATIC_FILES", "static_file", "status_page"]

STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}
"""The files the page is made of, with their content types; nothing else is served."""

_HEADERS = {
    # Only this origin: no inline script, no external URLs, no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.cache
def _read(name: str) -> bytes:
    return resources.files("xds_server.admin").joinpath("static", name).read_bytes()


def _serve(name: str) -> web.Response:
    return web.Response(body=_read(name), headers={"Content-Type": STATIC_FILES[name], **_HEADERS})


async def status_page(_request: web.Request) -> web.Response:
    """GET /: the status page."""
    return _serve("index.html")


async def static_file(request: web.Request) -> web.Response:
    """GET /static/{name}: one of the page's files."""
    name = request.match_info["name"]
    if name not in STATIC_FILES or name == "index.html":
        raise web.HTTPNotFound(reason=f"no static file {name!r}")
    return _serve(name)
