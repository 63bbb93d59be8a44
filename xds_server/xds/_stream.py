"""What SotW and delta streams share: reading, waking, bounded writing, teardown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc
import structlog
from envoy.config.core.v3 import base_pb2 as core_base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from xds_server.cache import ResourceCache, TypeRegistry
from xds_server.nodes import NodeInfo
from xds_server.xds._callbacks import StreamCallbacks, StreamInfo

log = structlog.get_logger("xds_server.xds")

_stream_ids = itertools.count(1)

Req = TypeVar("Req")


class ProtocolError(Exception):
    """A request the server refuses; ends the stream with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Malformed:
    """Stands in for a request whose bytes did not parse."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Per-stream limits, shared by every stream of a server.

    `max_names`: resource names one request may subscribe to.
    `write_slots`: responses being written at once across all streams, which bounds
    the memory that a push of a large resource to many streams can take.
    `slot_timeout`: seconds a write may hold a slot before it continues without one,
    so a client that stops reading cannot starve the others.
    """

    max_names: int = 10_000
    write_slots: int = 128
    slot_timeout: float = 1.0


class StreamContext:
    """Objects every stream of one server shares."""

    def __init__(
        self,
        cache: ResourceCache,
        types: TypeRegistry,
        callbacks: StreamCallbacks,
        limits: StreamLimits,
        control_plane: str,
    ) -> None:
        self.cache = cache
        self.types = types
        self.callbacks = callbacks
        self.limits = limits
        self.control_plane = control_plane
        cp = core_base_pb2.ControlPlane(identifier=control_plane)
        self.control_plane_field = discovery_pb2.DiscoveryResponse(
            control_plane=cp
        ).SerializeToString()
        self.delta_control_plane_field = discovery_pb2.DeltaDiscoveryResponse(
            control_plane=cp
        ).SerializeToString()
        self.write_slots = asyncio.Semaphore(limits.write_slots)
        self.open_streams: set[BaseStream[Any]] = set()
        self.closing = False


class BaseStream(Generic[Req]):
    """One xDS stream: a single loop that waits for a request or a cache change.

    The reader task only queues requests; all state is changed by the loop in `run`,
    so no locking is needed. Subclasses implement `handle_request` (update state from
    a request) and `flush` (send what a type's state says is due).
    """

    def __init__(
        self,
        ctx: StreamContext,
        grpc_context: grpc.aio.ServicerContext,
        *,
        service: str,
        delta: bool,
        fixed_type_url: str | None,
    ) -> None:
        self.ctx = ctx
        self.grpc = grpc_context
        self.fixed_type_url = fixed_type_url
        self.info = StreamInfo(
            stream_id=next(_stream_ids), service=service, delta=delta, peer=grpc_context.peer()
        )
        self.node = NodeInfo()
        self.log = log.bind(stream_id=self.info.stream_id, service=service, delta=delta)
        self._requests: deque[Req | Malformed] = deque()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._reader_done = False
        self._nonces = itertools.count(1)
        self._unknown_types: set[str] = set()

    # -- hooks for subclasses -------------------------------------------------------

    def handle_request(self, request: Req) -> None:
        """Apply one request to the per-type state; mark types dirty via `mark_dirty`."""
        raise NotImplementedError

    def flush(self, type_url: str) -> bytes | None:
        """Return the response due for `type_url` (and record it as sent), or None."""
        raise NotImplementedError

    def close_watches(self) -> None:
        """Cancel every cache watch of the stream."""
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------

    def next_nonce(self) -> str:
        """A nonce unique within this stream."""
        return str(next(self._nonces))

    def mark_dirty(self, type_url: str, _name: str = "") -> None:
        """Note that `type_url` may need a response; safe to call from cache watches."""
        self._dirty.add(type_url)
        self._wake.set()

    def resolve_type(self, type_url: str) -> str | None:
        """The type a request addresses, or None (logged once) when it is not served.

        A type-specific service refuses any other type with INVALID_ARGUMENT; ADS keeps
        the stream and ignores requests for types it does not serve.
        """
        if self.fixed_type_url is not None:
            if type_url and type_url != self.fixed_type_url:
                raise ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"type_url {type_url!r} is not served by this service; "
                    f"it serves {self.fixed_type_url!r}",
                )
            return self.fixed_type_url
        if not type_url:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, "ADS requests must set type_url"
            )
        if type_url not in self.ctx.types:
            if type_url not in self._unknown_types:
                self._unknown_types.add(type_url)
                self.log.warning("unknown_type_url", type_url=type_url, node_id=self.node.id)
            return None
        return type_url

    def set_node(self, node: Any, has_node: bool) -> None:
        """Record the node from the first request that carries one."""
        if self.info.node is None and has_node:
            self.node = NodeInfo.from_proto(node)
            self.info.node = self.node
            self.log = self.log.bind(node_id=self.node.id, cluster=self.node.cluster)
            self.log.info("stream_node", user_agent=self.node.user_agent,
                          envoy_version=self.node.user_agent_version)
            self.ctx.callbacks.on_stream_node(self.info)

    def check_names(self, count: int) -> None:
        """Refuse a request naming more resources than the limit allows."""
        if count > self.ctx.limits.max_names:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request names {count} resources; the limit is {self.ctx.limits.max_names}",
            )

    async def _read(self, requests: AsyncIterator[Req | Malformed]) -> None:
        try:
            async for request in requests:
                self._requests.append(request)
                self._wake.set()
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.RpcError):
            pass
        except Exception as exc:  # the transport failed under us: end the stream
            self.log.info("stream_read_failed", error=str(exc))
        finally:
            self._reader_done = True
            self._wake.set()

    async def _write(self, data: bytes) -> None:
        slots = self.ctx.write_slots
        await slots.acquire()
        write = asyncio.ensure_future(self.grpc.write(data))
        try:
            done, _ = await asyncio.wait({write}, timeout=self.ctx.limits.slot_timeout)
        finally:
            slots.release()
        if not done:
            await write
        else:
            write.result()

    async def run(self, requests: AsyncIterator[Req | Malformed]) -> None:
        """Serve the stream until the client leaves or a protocol error ends it."""
        ctx = self.ctx
        ctx.open_streams.add(self)
        ctx.callbacks.on_stream_open(self.info)
        self.log.debug("stream_opened", peer=self.info.peer)
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._requests:
                    request = self._requests.popleft()
                    if isinstance(request, Malformed):
                        raise ProtocolError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"malformed request: {request.error}",
                        )
                    self.handle_request(request)
                while self._dirty and not ctx.closing:
                    type_url = self._dirty.pop()
                    data = self.flush(type_url)
                    if data is not None:
                        await self._write(data)
                if self._reader_done and not self._requests:
                    break
        except ProtocolError as exc:
            self.log.warning("stream_refused", code=exc.code.name, reason=exc.message)
            await self.grpc.abort(exc.code, exc.message)
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.RpcError) as exc:
            self.log.debug("stream_write_failed", error=type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.close_watches()
            ctx.open_streams.discard(self)
            self.log.info("stream_closed", node_id=self.node.id)
            ctx.callbacks.on_stream_closed(self.info)
