"""The incremental (delta) protocol loop, for type-specific services and ADS."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from xds_server.cache import Resource, Watch
from xds_server.xds._stream import BaseStream, debug_enabled

DeltaDiscoveryRequest = Any  # envoy.service.discovery.v3.DeltaDiscoveryRequest (xds-protos ships no type stubs)


@dataclass(slots=True)
class DeltaTypeState:
    """Per-type state of one delta stream.

    `client_versions` is what the client holds (name -> version): seeded from
    `initial_resource_versions`, updated on every response. A resource is sent when
    its version differs from it; a name the client holds that no longer resolves is
    sent in `removed_resources`. A NACK does not roll it back, so rejected content is
    not resent until it changes.
    """

    type_url: str
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    client_versions: dict[str, str] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)  # versions from initial_resource_versions
    nonce: str = ""
    sent: dict[str, str] = field(default_factory=dict)
    watch: Watch | None = None
    frozen_names: frozenset[str] | None = None  # `names` as the cache's snapshot key


class DeltaStream(BaseStream[DeltaDiscoveryRequest]):
    """A delta stream: one `DeltaTypeState` per type URL (several on ADS)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.states: dict[str, DeltaTypeState] = {}

    def handle_request(self, request: DeltaDiscoveryRequest) -> None:
        """Apply subscription changes always, ACK/NACK when the nonce is current."""
        self.set_node(request.node, request.HasField("node"))
        type_url = self.resolve_type(request.type_url)
        if type_url is None:
            return
        self.check_names(
            len(request.resource_names_subscribe) + len(request.resource_names_unsubscribe)
        )
        state = self.states.get(type_url)
        first = state is None
        if state is None:
            state = self.states[type_url] = DeltaTypeState(type_url=type_url)
            state.client_versions = dict(request.initial_resource_versions)
            state.claimed = set(state.client_versions)
            state.wildcard = not request.resource_names_subscribe
            current = {
                n: v for n, v in state.client_versions.items()
                if (r := self.ctx.cache.resolve(type_url, n, self.node)) is not None
                and (r.version == v or v in r.aliases)
            }
            if current:  # what a reconnecting client already runs counts as sent and accepted
                self.ctx.callbacks.on_response(self.info, type_url, "", current, ())
                self.ctx.callbacks.on_ack(self.info, type_url, "", current)

        nonce = request.response_nonce
        if nonce:
            if nonce != state.nonce:
                self.log.debug("stale_nonce", type_url=type_url, nonce=nonce,
                               expected=state.nonce)
            elif request.HasField("error_detail"):
                self.log.warning(
                    "nack", type_url=type_url, nonce=nonce, resources=state.sent,
                    code=request.error_detail.code, error=request.error_detail.message,
                )
                self.ctx.callbacks.on_nack(
                    self.info, type_url, nonce, dict(state.sent),
                    request.error_detail.code, request.error_detail.message,
                )
            else:
                if debug_enabled():
                    self.log.debug("ack", type_url=type_url, nonce=nonce, resources=state.sent)
                self.ctx.callbacks.on_ack(self.info, type_url, nonce, state.sent)

        changed = first
        for name in request.resource_names_subscribe:
            if name == "*":
                changed |= not state.wildcard
                state.wildcard = True
            elif name in state.names:
                if not first:  # re-subscribing asks for the resource again
                    state.client_versions.pop(name, None)
                    self.mark_dirty(type_url)
            else:
                state.names.add(name)
                changed = True
        for name in request.resource_names_unsubscribe:
            if name == "*":
                changed |= state.wildcard
                state.wildcard = False
            elif name in state.names:
                state.names.discard(name)
                state.client_versions.pop(name, None)
                changed = True
        if changed:
            state.frozen_names = None
            if state.watch is not None:
                state.watch.cancel()
            state.watch = self.ctx.cache.watch(
                type_url, state.names, self.mark_dirty, wildcard=state.wildcard
            )
            self.mark_dirty(type_url)

    def flush(self, type_url: str) -> bytes | None:
        """Build a response with the resources whose versions the client lacks."""
        state = self.states.get(type_url)
        if state is None:
            return None
        names = state.frozen_names
        if names is None:
            names = state.frozen_names = frozenset(state.names)
        snap = self.ctx.cache.snapshot(type_url, names, state.wildcard, self.node)
        held_versions = state.client_versions
        claimed = state.claimed
        updates = [
            r for r in snap.resources
            if (held := held_versions.get(r.name)) != r.version
            and not (claimed and r.name in claimed and held in r.aliases)
        ]
        in_scope = snap.versions
        removed = [
            name for name in sorted(held_versions)
            if name not in in_scope and (state.wildcard or name in state.names)
        ] if not held_versions.keys() <= in_scope.keys() else []
        if not updates and not removed:
            return None
        for r in updates:
            held_versions[r.name] = r.version
            claimed.discard(r.name)
        for name in removed:
            del held_versions[name]
        nonce = state.nonce = self.next_nonce()
        sent = state.sent = {r.name: r.version for r in updates}  # a new dict: callbacks may keep it
        ctx = self.ctx
        key = ("delta", type_url, nonce, tuple(removed), *(r.version for r in updates))
        data = ctx.response(key, lambda: _delta_response(
            type_url, nonce, removed, ctx.delta_control_plane_field, updates))
        if debug_enabled():
            self.log.debug("push", type_url=type_url, nonce=nonce, resources=sent,
                           removed=removed)
        ctx.callbacks.on_response(self.info, type_url, nonce, sent, removed)
        return data

    def close_watches(self) -> None:
        """Cancel every type's watch."""
        for state in self.states.values():
            if state.watch is not None:
                state.watch.cancel()


def _delta_response(type_url: str, nonce: str, removed: list[str], control_plane: bytes,
                    updates: list[Resource]) -> bytes:
    head = discovery_pb2.DeltaDiscoveryResponse(
        type_url=type_url, nonce=nonce, removed_resources=removed
    ).SerializeToString()
    return b"".join((head, control_plane, *(r.delta_field for r in updates)))
