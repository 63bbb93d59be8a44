"""The state-of-the-world (SotW) protocol loop, for type-specific services and ADS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from xds_server.cache import Resource, Watch
from xds_server.xds._stream import BaseStream, debug_enabled

DiscoveryRequest = Any  # envoy.service.discovery.v3.DiscoveryRequest (xds-protos ships no type stubs)


@dataclass(slots=True)
class SotwTypeState:
    """Per-type state of one SotW stream.

    `sent` is what the last response carried (name -> version) and `nonce` its nonce;
    a request whose `response_nonce` differs from `nonce` is stale and ignored.
    `client_version` is the `version_info` a reconnecting client presented before
    this stream sent anything; when it equals what would be sent, nothing is sent.
    """

    type_url: str
    names: frozenset[str] = frozenset()
    wildcard: bool = False
    nonce: str = ""
    version_info: str = ""
    sent: dict[str, str] = field(default_factory=dict)
    client_version: str = ""
    watch: Watch | None = None


class SotwStream(BaseStream[DiscoveryRequest]):
    """A SotW stream: one `SotwTypeState` per type URL (several on ADS)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.states: dict[str, SotwTypeState] = {}

    def handle_request(self, request: DiscoveryRequest) -> None:
        """Apply ACK/NACK and subscription changes of one request (go-control-plane rules)."""
        self.set_node(request.node, request.HasField("node"))
        type_url = self.resolve_type(request.type_url)
        if type_url is None:
            return
        self.check_names(len(request.resource_names))
        state = self.states.get(type_url)
        first = state is None
        if state is None:
            state = self.states[type_url] = SotwTypeState(type_url=type_url)
        nonce = request.response_nonce
        if nonce:
            if nonce != state.nonce:
                self.log.debug("stale_nonce", type_url=type_url, nonce=nonce,
                               expected=state.nonce)
                return
            if request.HasField("error_detail"):
                self.log.warning(
                    "nack", type_url=type_url, nonce=nonce, version=state.version_info,
                    resources=state.sent, code=request.error_detail.code,
                    error=request.error_detail.message,
                )
                self.ctx.callbacks.on_nack(
                    self.info, type_url, nonce, dict(state.sent),
                    request.error_detail.code, request.error_detail.message,
                )
            else:
                if debug_enabled():
                    self.log.debug("ack", type_url=type_url, nonce=nonce, version=state.version_info)
                self.ctx.callbacks.on_ack(self.info, type_url, nonce, state.sent)
        elif first and request.version_info:
            state.client_version = request.version_info

        names = frozenset(request.resource_names)
        wildcard = "*" in names or (first and not names)
        if not wildcard and state.wildcard and not names:
            wildcard = True  # an empty list after wildcard keeps the wildcard (legacy)
        if "*" in names:
            names = names - {"*"}
        if first or names != state.names or wildcard != state.wildcard:
            state.names, state.wildcard = names, wildcard
            if state.watch is not None:
                state.watch.cancel()
            state.watch = self.ctx.cache.watch(
                type_url, names, self.mark_dirty, wildcard=wildcard
            )
            self.mark_dirty(type_url)
        elif not nonce:
            self.mark_dirty(type_url)

    def flush(self, type_url: str) -> bytes | None:
        """Build the response due for `type_url`, or None when the client is current.

        A response is due when a subscribed resource's version differs from what was
        last sent (for full-state types, any difference, removals included). A NACK
        leaves `sent` unchanged, so the rejected content is not sent again. What the
        subscription resolves to comes from the cache's shared `Snapshot`, so streams
        with the same subscription build nothing per stream but the nonce.
        """
        state = self.states.get(type_url)
        if state is None:
            return None
        snap = self.ctx.cache.snapshot(type_url, state.names, state.wildcard, self.node)
        versions = snap.versions
        if not state.nonce:
            if not versions:
                return None
            if state.client_version and (state.client_version == snap.version_info or (
                    len(versions) == 1 and state.client_version in snap.resources[0].aliases)):
                versions = {name: state.client_version for name in versions}
                state.sent, state.version_info = versions, state.client_version
                state.client_version = ""
                self.log.info("client_current", type_url=type_url, version=state.version_info)
                # What a reconnecting client already runs counts as sent and accepted.
                self.ctx.callbacks.on_response(self.info, type_url, "", versions, ())
                self.ctx.callbacks.on_ack(self.info, type_url, "", versions)
                return None
        elif versions is state.sent or versions == state.sent:
            return None
        else:
            rtype = self.ctx.types.get(type_url)
            full_state = rtype is not None and rtype.full_state
            sent = state.sent
            if not full_state and all(sent.get(n) == v for n, v in versions.items()):
                return None  # only removals: not announced for non-full-state types
        state.client_version = ""
        state.sent = versions  # the snapshot's: never modified, callbacks may keep it
        version_info = state.version_info = snap.version_info
        nonce = state.nonce = self.next_nonce()
        ctx = self.ctx
        data = ctx.response(("sotw", type_url, nonce, snap.key), lambda: _sotw_response(
            type_url, version_info, nonce, ctx.control_plane_field, snap.resources))
        if debug_enabled():
            self.log.debug("push", type_url=type_url, version=version_info,
                           nonce=nonce, resources=versions)
        ctx.callbacks.on_response(self.info, type_url, nonce, versions, ())
        return data

    def close_watches(self) -> None:
        """Cancel every type's watch."""
        for state in self.states.values():
            if state.watch is not None:
                state.watch.cancel()


def _sotw_response(type_url: str, version_info: str, nonce: str, control_plane: bytes,
                   resources: tuple[Resource, ...]) -> bytes:
    head = discovery_pb2.DiscoveryResponse(
        version_info=version_info, type_url=type_url, nonce=nonce
    ).SerializeToString()
    return b"".join((head, control_plane, *(r.sotw_field for r in resources)))
