"""A small typed client of the admin HTTP API (``/api/v1``), on aiohttp.

One :class:`AdminClient` per event loop; use it as an async context manager::

    async with AdminClient("http://127.0.0.1:18080", actor="ops@host") as client:
        view = await client.put_filter("add-header", {"name": "add-header", ...})

Every method returns the server's decoded JSON document unchanged. Failures raise a
subclass of :class:`AdminError`: :class:`AdminHTTPError` for an error answer (with the
server's message), :class:`AdminConnectionError` when the server cannot be reached.
Mutating requests (PUT, POST, DELETE) carry ``X-Actor`` when an actor is given; every
request carries ``Authorization: Bearer`` when a token is given.
"""

from __future__ import annotations

import getpass
import json
import socket
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from xds_server.config import ServerConfig

__all__ = [
    "DEFAULT_SERVER_URL",
    "AdminClient",
    "AdminConnectionError",
    "AdminError",
    "AdminHTTPError",
    "JSONObject",
    "default_actor",
]

DEFAULT_SERVER_URL = f"http://{ServerConfig().admin_address}"
"""The admin API of a server started with the default config."""

JSONObject = dict[str, Any]
"""A decoded JSON object, as the server sent it."""

_MUTATING = frozenset({"PUT", "POST", "DELETE", "PATCH"})


class AdminError(Exception):
    """Base of every failure talking to the admin API."""


class AdminHTTPError(AdminError):
    """The server answered with an error status.

    ``message`` is the server's ``error.message`` when the body is the API's error JSON,
    else the HTTP reason and a short excerpt of the body.
    """

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


class AdminConnectionError(AdminError):
    """The server could not be reached (refused, unresolvable, timed out)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach xds-server at {url}: {reason}")
        self.url = url
        self.reason = reason


def default_actor() -> str:
    """``user@hostname`` of the person running the command, for ``X-Actor``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable (containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class AdminClient:
    """Calls the admin HTTP API of one xds-server.

    ``base_url`` is the admin address (``http://host:port``; a bare ``host:port`` means
    http; anything else raises :class:`AdminError`); ``token`` is sent as a bearer token;
    ``actor`` (``user@host``) as ``X-Actor`` on mutating requests; ``timeout`` bounds each
    whole request in seconds. Not safe to share across event loops; methods may run
    concurrently on one loop.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER_URL,
        *,
        token: str | None = None,
        actor: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if "://" not in base_url:  # host:port
            base_url = f"http://{base_url}"
        parsed = URL(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise AdminError(f"invalid server URL {base_url!r}: use http://HOST:PORT")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.actor = actor
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; the client may not be used afterwards."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the API ---------------------------------------------------------------------------

    async def list_filters(self) -> JSONObject:
        """``GET /api/v1/filters`` -> ``{"filters": [FilterView]}``."""
        return await self.request("GET", "/api/v1/filters")

    async def get_filter(self, name: str) -> JSONObject:
        """``GET /api/v1/filters/{name}`` -> FilterView."""
        return await self.request("GET", _filter_path(name))

    async def put_filter(self, name: str, specs: JSONObject | list[JSONObject]) -> JSONObject:
        """``PUT /api/v1/filters/{name}`` with one spec or a filter as ``get_filter`` returns
        it (sent as they are), or a list of specs (sent as ``{"specs": [...]}``).

        Returns the new FilterView. 400 (invalid spec) and 422 (module not fetched or
        not verified) raise :class:`AdminHTTPError`; the running version stays.
        """
        body: JSONObject = {"specs": specs} if isinstance(specs, list) else specs
        return await self.request("PUT", _filter_path(name), body)

    async def put_resource(self, kind: str, name: str, body: JSONObject) -> JSONObject:
        """``PUT /api/v1/resources/{kind}/{name}`` with one Envoy resource or
        ``{"specs": [...]}``; returns the resource's view (409 when it would leave a
        reference unsatisfied)."""
        return await self.request("PUT", _resource_path(kind, name), body)

    async def get_resource(self, kind: str, name: str) -> JSONObject:
        """``GET /api/v1/resources/{kind}/{name}`` -> ``{"kind", "name", "revision",
        "specs", "versions"}``."""
        return await self.request("GET", _resource_path(kind, name))

    async def delete_resource(self, kind: str, name: str) -> JSONObject:
        """``DELETE /api/v1/resources/{kind}/{name}`` -> ``{"deleted": "kind/name",
        "revision": N}`` (409 while another resource refers to it)."""
        return await self.request("DELETE", _resource_path(kind, name))

    async def resource_history(self, kind: str, name: str, *, limit: int | None = None) -> JSONObject:
        """``GET /api/v1/resources/{kind}/{name}/history`` -> ``{"kind", "name",
        "history": [...]}``, newest first."""
        query = {} if limit is None else {"limit": str(limit)}
        return await self.request("GET", _resource_path(kind, name, "history"), query=query)

    async def rollback_resource(self, kind: str, name: str, *, to: int | None = None) -> JSONObject:
        """``POST /api/v1/resources/{kind}/{name}/rollback`` to the newest earlier
        revision with other content, or revision ``to``."""
        body: JSONObject = {} if to is None else {"to": to}
        return await self.request("POST", _resource_path(kind, name, "rollback"), body)

    async def delete_filter(self, name: str) -> JSONObject:
        """``DELETE /api/v1/filters/{name}`` -> ``{"deleted": name, "revision": N}``."""
        return await self.request("DELETE", _filter_path(name))

    async def history(self, name: str, *, limit: int | None = None) -> JSONObject:
        """``GET /api/v1/filters/{name}/history`` -> ``{"name", "history": [...]}``, newest first."""
        query = {} if limit is None else {"limit": str(limit)}
        return await self.request("GET", _filter_path(name, "history"), query=query)

    async def rollback(self, name: str, *, to: int | str | None = None) -> JSONObject:
        """``POST /api/v1/filters/{name}/rollback`` to the previous or the given revision
        (a number, or an xDS version)."""
        body: JSONObject = {} if to is None else {"to": to}
        return await self.request("POST", _filter_path(name, "rollback"), body)

    async def promote(self, name: str) -> JSONObject:
        """``POST /api/v1/filters/{name}/promote``: widen a canary to the full selector."""
        return await self.request("POST", _filter_path(name, "promote"), {})

    async def debug(self, name: str, *, node: str, configuration: Any, seconds: float) -> JSONObject:
        """``POST /api/v1/filters/{name}/debug``: serve ``configuration`` to the nodes
        matching ``node`` for ``seconds``; returns the FilterView."""
        body: JSONObject = {"node": node, "configuration": configuration, "for": seconds}
        return await self.request("POST", _filter_path(name, "debug"), body)

    async def end_debug(self, name: str) -> JSONObject:
        """``DELETE /api/v1/filters/{name}/debug``: end the override now."""
        return await self.request("DELETE", _filter_path(name, "debug"))

    async def filter_health(self, name: str, *, window: float | None = None) -> JSONObject:
        """``GET /api/v1/filters/{name}/health`` -> health per revision over ``window`` seconds."""
        query = {} if window is None else {"window": f"{window:g}"}
        return await self.request("GET", _filter_path(name, "health"), query=query)

    async def list_proxies(self, query: dict[str, str] | None = None) -> JSONObject:
        """``GET /api/v1/proxies`` -> ``{"proxies": [...], "total", "next_cursor"}``;
        ``query``: ``node``, ``cluster``, ``filter``, ``state``, ``version``, ``limit``,
        ``cursor`` (none: every proxy)."""
        return await self.request("GET", "/api/v1/proxies", query=query or {})

    async def summary(self) -> JSONObject:
        """``GET /api/v1/summary``: per filter, versions by state and cluster, NACK
        groups, health per revision."""
        return await self.request("GET", "/api/v1/summary")

    async def logs(self, filter_name: str, *, node: str = "*", limit: int = 100) -> JSONObject:
        """``GET /api/v1/logs?filter=NAME`` -> ``{"filter", "node", "entries": [...]}``,
        the newest ``limit`` access-log entries, oldest first."""
        query = {"filter": filter_name, "node": node, "limit": str(limit)}
        return await self.request("GET", "/api/v1/logs", query=query)

    async def follow_logs(self, filter_name: str, *, node: str = "*",
                          limit: int = 10) -> AsyncIterator[JSONObject]:
        """``GET /api/v1/logs?filter=NAME&follow=1`` as NDJSON: the newest ``limit``
        entries, then each new one as it arrives, until the server ends the stream
        (``{"lagged": N}`` items say N entries were skipped)."""
        url = URL(self.base_url + "/api/v1/logs").with_query(
            {"filter": filter_name, "node": node, "limit": str(limit), "follow": "1"})
        headers = {"Accept": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total)
        try:
            async with self._session.get(url, headers=headers, timeout=timeout) as resp:
                if resp.status >= 400:
                    _decode(resp.status, resp.reason or "", await resp.read())
                async for line in resp.content:
                    if line.strip():
                        item = json.loads(line)
                        if isinstance(item, dict):
                            yield item
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise AdminConnectionError(self.base_url, str(exc) or type(exc).__name__) from exc

    # -- transport -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
    ) -> JSONObject:
        """Send one request (``path`` already URL-encoded) and return the decoded JSON."""
        url = URL(self.base_url + path, encoded=True)
        if query:
            url = url.with_query(query)
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.actor and method.upper() in _MUTATING:
            headers["X-Actor"] = self.actor
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                status = resp.status
                reason = resp.reason or ""
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise AdminConnectionError(self.base_url, str(exc) or type(exc).__name__) from exc
        except TimeoutError as exc:
            raise AdminConnectionError(self.base_url, "timed out") from exc
        except aiohttp.ClientError as exc:
            raise AdminError(f"{method} {url} failed: {exc}") from exc
        return _decode(status, reason, raw)


def _filter_path(name: str, action: str | None = None) -> str:
    # Names may contain '/', so it is escaped: one path segment per name.
    path = f"/api/v1/filters/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


def _resource_path(kind: str, name: str, action: str | None = None) -> str:
    path = f"/api/v1/resources/{quote(kind, safe='')}/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


def _decode(status: int, reason: str, raw: bytes) -> JSONObject:
    try:
        doc: Any = json.loads(raw) if raw else {}
    except ValueError:
        doc = None
    if status >= 400:
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            message = str(doc["error"].get("message") or reason)
        else:
            excerpt = raw[:200].decode("utf-8", "replace").strip()
            message = f"HTTP {status} {reason}" + (f": {excerpt}" if excerpt else "")
        raise AdminHTTPError(status, message, doc)
    if not isinstance(doc, dict):
        excerpt = raw[:200].decode("utf-8", "replace").strip()
        raise AdminHTTPError(status, f"expected a JSON object from the server, got: {excerpt!r}")
    return doc
