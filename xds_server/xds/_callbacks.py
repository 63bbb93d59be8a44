"""Hooks through which the protocol loops report what happens on each stream."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from xds_server.nodes import NodeInfo

__all__ = ["NullCallbacks", "StreamCallbacks", "StreamInfo"]


@dataclass(slots=True)
class StreamInfo:
    """One gRPC stream. `node` is set from its first request and never changes after."""

    stream_id: int
    service: str  # "ads" or the short type service name, e.g. "ecds"
    delta: bool
    peer: str
    opened_at: float = field(default_factory=time.time)
    node: NodeInfo | None = None


class StreamCallbacks(Protocol):
    """Receives protocol events. Called on the event loop; must not block or raise.

    `resources` maps resource name -> version as sent in (or acknowledged for) the
    response with `nonce`. Each hook's body is its default, doing nothing: a class that
    subclasses the protocol (as `NullCallbacks` does) overrides only the hooks it needs.
    """

    def on_stream_open(self, stream: StreamInfo) -> None:
        """A stream was accepted (no node known yet)."""
        return None

    def on_stream_node(self, stream: StreamInfo) -> None:
        """The stream's first request named its node (`stream.node` is set)."""
        return None

    def on_response(
        self,
        stream: StreamInfo,
        type_url: str,
        nonce: str,
        resources: Mapping[str, str],
        removed: Sequence[str],
    ) -> None:
        """A response was written to the stream."""
        return None

    def on_ack(
        self, stream: StreamInfo, type_url: str, nonce: str, resources: Mapping[str, str]
    ) -> None:
        """The client accepted the response `nonce`."""
        return None

    def on_nack(
        self,
        stream: StreamInfo,
        type_url: str,
        nonce: str,
        resources: Mapping[str, str],
        code: int,
        message: str,
    ) -> None:
        """The client rejected the response `nonce` with an error."""
        return None

    def on_stream_closed(self, stream: StreamInfo) -> None:
        """The stream ended (client gone, server stopping, or a protocol error)."""
        return None


class NullCallbacks(StreamCallbacks):
    """Callbacks that do nothing (the protocol's defaults); a base for callbacks that
    need only some of the hooks."""
