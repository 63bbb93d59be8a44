"""CSDS: `envoy.service.status.v3.ClientStatusDiscoveryService` over the status tracker.

Answers from the same `StatusTracker` records as `GET /api/v1/proxies`, so both always
agree. One `ClientConfig` per known proxy (connected, or disconnected within the
tracker's retention), one `GenericXdsConfig` per resource it asked for or was sent:

| our state | config_status | client_status | notes                                   |
|-----------|---------------|---------------|-----------------------------------------|
| ACKED     | SYNCED        | ACKED         |                                         |
| NACKED    | ERROR         | NACKED        | `error_state`: Envoy's message, version |
| REQUESTED | NOT_SENT      | REQUESTED     | asked for, nothing sent to it yet       |
| STALE     | STALE         | UNKNOWN       | sent, no ACK/NACK for that version yet  |

`version_info` is the version last sent; `xds_config` is that version's content when
the cache still holds it (versions derive from content, so any variant with that version
is the same bytes), omitted otherwise or with `exclude_resource_contents`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
import structlog
from envoy.admin.v3 import config_dump_shared_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2, value_pb2
from google.protobuf import any_pb2, struct_pb2

from xds_server.admin._messages import timestamp
from xds_server.cache import ResourceCache
from xds_server.nodes import NodeInfo
from xds_server.status import ProxyStatus, ResourceStatus, StatusTracker, resource_name

__all__ = ["CSDS_SERVICE", "CsdsService", "MatcherError", "node_matches", "string_matches"]

log = structlog.get_logger("xds_server.admin.csds")

CSDS_SERVICE = csds_pb2.DESCRIPTOR.services_by_name["ClientStatusDiscoveryService"].full_name

_STATUS = config_dump_shared_pb2.ClientResourceStatus
_MAPPING: dict[str, tuple[int, int]] = {
    "ACKED": (csds_pb2.SYNCED, _STATUS.ACKED),
    "NACKED": (csds_pb2.ERROR, _STATUS.NACKED),
    "REQUESTED": (csds_pb2.NOT_SENT, _STATUS.REQUESTED),
    "STALE": (csds_pb2.STALE, _STATUS.UNKNOWN),
}


class MatcherError(ValueError):
    """A node matcher the server cannot evaluate (bad regex, unsupported matcher)."""


# -- matching ---------------------------------------------------------------------------


def string_matches(m: string_pb2.StringMatcher, value: str) -> bool:
    """Envoy's StringMatcher: exact, prefix, suffix, contains (with `ignore_case`) and
    `safe_regex` (full match, Python `re` syntax, close to RE2 for common patterns)."""
    kind = m.WhichOneof("match_pattern")
    if kind is None:
        raise MatcherError("StringMatcher has no match pattern")
    if kind == "safe_regex":
        try:
            return re.fullmatch(m.safe_regex.regex, value) is not None
        except re.error as exc:
            raise MatcherError(f"invalid regex {m.safe_regex.regex!r}: {exc}") from exc
    if kind == "custom":
        raise MatcherError("custom string matchers are not supported")
    pattern: str = getattr(m, kind)
    if m.ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if kind == "exact":
        return value == pattern
    if kind == "prefix":
        return value.startswith(pattern)
    if kind == "suffix":
        return value.endswith(pattern)
    return pattern in value  # contains


_MISSING = object()


def _value_matches(m: value_pb2.ValueMatcher, value: Any) -> bool:
    kind = m.WhichOneof("match_pattern")
    if kind == "present_match":
        return (value is not _MISSING) == bool(m.present_match)
    if value is _MISSING:
        return False
    if kind == "null_match":
        return value is None
    if kind == "bool_match":
        return isinstance(value, bool) and value == bool(m.bool_match)
    if kind == "string_match":
        return isinstance(value, str) and string_matches(m.string_match, value)
    if kind == "double_match":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        d = m.double_match
        if d.WhichOneof("match_pattern") == "exact":
            return float(value) == float(d.exact)
        return bool(d.range.start <= value < d.range.end)
    if kind == "list_match":
        if not isinstance(value, list):
            return False
        return any(_value_matches(m.list_match.one_of, v) for v in value)
    if kind == "or_match":
        return any(_value_matches(v, value) for v in m.or_match.value_matchers)
    raise MatcherError(f"ValueMatcher {kind or 'without a pattern'} is not supported")


def _metadata_value(metadata: Mapping[str, Any], path: Iterable[str]) -> Any:
    cur: Any = metadata
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return _MISSING
        cur = cur[key]
    return cur


def node_matches(matcher: node_pb2.NodeMatcher, node: NodeInfo) -> bool:
    """True when `node` satisfies every part of `matcher` (node id, node metadatas)."""
    if matcher.HasField("node_id") and not string_matches(matcher.node_id, node.id):
        return False
    for sm in matcher.node_metadatas:
        keys = [seg.key for seg in sm.path]
        if not keys:
            raise MatcherError("StructMatcher needs a non-empty path")
        if not _value_matches(sm.value, _metadata_value(node.metadata, keys)):
            return False
    return True


# -- conversion -------------------------------------------------------------------------


def node_proto(node: NodeInfo) -> base_pb2.Node:
    """The `envoy.config.core.v3.Node` of a known proxy (id, cluster, metadata, agent)."""
    out = base_pb2.Node(id=node.id, cluster=node.cluster, user_agent_name=node.user_agent)
    if node.user_agent_version:
        out.user_agent_version = node.user_agent_version
    if node.metadata:
        meta = struct_pb2.Struct()
        meta.update(dict(node.metadata))
        out.metadata.CopyFrom(meta)
    return out


class CsdsService:
    """The CSDS servicer (grpc.aio). Reads the tracker and the cache; changes nothing."""

    def __init__(self, status: StatusTracker, cache: ResourceCache, *,
                 authorize: Callable[[Any], Awaitable[None]] | None = None) -> None:
        self.status = status
        self.cache = cache
        self._authorize = authorize
        """Checks a call's context (aborting it when refused); None: every caller may ask."""

    def register(self, server: grpc.aio.Server) -> None:
        """Add the service's handlers to `server`."""
        csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(self, server)

    # -- the answer ---------------------------------------------------------------------

    def client_status(self, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
        """Every known proxy matching any of `request.node_matchers` (all when empty).

        Raises `MatcherError` for a matcher that cannot be evaluated.
        """
        out = csds_pb2.ClientStatusResponse()
        for node_id in sorted(self.status.proxies):
            proxy = self.status.proxies[node_id]
            if request.node_matchers and not any(
                node_matches(m, proxy.node) for m in request.node_matchers
            ):
                continue
            out.config.append(self.client_config(proxy, contents=not request.exclude_resource_contents))
        return out

    def client_config(self, proxy: ProxyStatus, *, contents: bool = True) -> csds_pb2.ClientConfig:
        """One proxy's `ClientConfig`: its node and one entry per resource, by name."""
        cfg = csds_pb2.ClientConfig(node=node_proto(proxy.node))
        for name in sorted(proxy.resources):
            cfg.generic_xds_configs.append(self._generic(proxy, proxy.resources[name], contents))
        return cfg

    def _generic(
        self, proxy: ProxyStatus, r: ResourceStatus, contents: bool
    ) -> csds_pb2.ClientConfig.GenericXdsConfig:
        state = r.state
        config_status, client_status = _MAPPING[state]
        name = resource_name(r.type_url, r.name)  # `clusters/web` -> `web`
        g = csds_pb2.ClientConfig.GenericXdsConfig(
            type_url=r.type_url, name=name, version_info=r.sent,
            config_status=config_status,
            client_status=client_status,
        )
        if contents and r.sent:
            sent = self._content(r.type_url, name, r.sent, proxy.node)
            if sent is not None:
                g.xds_config.CopyFrom(sent)
        updated = {
            "ACKED": r.acked_at,
            "NACKED": r.last_nack.at if r.last_nack else None,
            "STALE": r.sent_at,
        }.get(state)
        ts = timestamp(updated)
        if ts is not None:
            g.last_updated.CopyFrom(ts)
        if state == "NACKED" and r.last_nack is not None:
            nack = r.last_nack
            err = g.error_state
            err.details = nack.message
            err.version_info = nack.version
            at = timestamp(nack.at)
            if at is not None:
                err.last_update_attempt.CopyFrom(at)
            if contents:
                failed = self._content(r.type_url, r.name, nack.version, proxy.node)
                if failed is not None:
                    err.failed_configuration.CopyFrom(failed)
        return g

    def _content(self, type_url: str, name: str, version: str, node: NodeInfo) -> any_pb2.Any | None:
        """The resource `version` as an Any, if the cache still holds that version."""
        current = self.cache.resolve(type_url, name, node)
        candidates = [current] if current is not None else []
        candidates += [v.resource for v in self.cache.variants(type_url, name)]
        for res in candidates:
            if res.version == version:
                return any_pb2.Any(type_url=res.type_url, value=res.body)
        return None

    # -- gRPC methods -------------------------------------------------------------------

    async def _answer(
        self, request: csds_pb2.ClientStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> csds_pb2.ClientStatusResponse:
        try:
            return self.client_status(request)
        except MatcherError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"node_matchers: {exc}")
            raise  # unreachable: abort raises

    async def FetchClientStatus(
        self, request: csds_pb2.ClientStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> csds_pb2.ClientStatusResponse:
        """Unary CSDS: one answer."""
        if self._authorize is not None:
            await self._authorize(context)
        return await self._answer(request, context)

    async def StreamClientStatus(
        self,
        request_iterator: AsyncIterator[csds_pb2.ClientStatusRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        """Bidirectional CSDS: one answer per request."""
        if self._authorize is not None:
            await self._authorize(context)
        async for request in request_iterator:
            yield await self._answer(request, context)
