"""What SotW and delta streams share: reading, waking, bounded writing, teardown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
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
_stdlib_log = logging.getLogger("xds_server.xds")


def debug_enabled() -> bool:
    """Whether per-response events (`push`, `ack`) are logged: they are debug events,
    because at fleet scale one line per stream per push costs more than the push."""
    return _stdlib_log.isEnabledFor(logging.DEBUG)

_stream_ids = itertools.count(1)

Req = TypeVar("Req")


class ProtocolError(Exception):
    """A request the server refuses; ends the stream with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Malformed:
    """Stands in for a request that ends the stream: bytes that did not parse
    (INVALID_ARGUMENT), or one over the rate limit (RESOURCE_EXHAUSTED)."""

    __slots__ = ("code", "error")

    def __init__(self, error: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        self.error = error
        self.code = code


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Per-stream limits, shared by every stream of a server.

    `max_names`: resource names one request may subscribe to.
    `write_slots`: responses being written at once across all streams, which bounds
    the memory that a push of a large resource to many streams can take.
    `slot_timeout`: seconds a write may hold a slot before it continues without one,
    so a client that stops reading cannot starve the others.
    `unbounded_write_bytes`: responses up to this size are written without a slot
    (N streams hold at most N x this much in flight).
    """

    max_names: int = 10_000
    write_slots: int = 128
    slot_timeout: float = 1.0
    unbounded_write_bytes: int = 16 * 2**10
    max_streams: int = 50_000
    requests_per_second: float = 50.0
    request_burst: int = 200


Authorizer = Callable[[NodeInfo, Mapping[str, Sequence[bytes]]], "str | None"]
"""Decides whether a stream's peer (its TLS auth context) may act as `node`: returns
None to allow, or the reason to refuse (the stream ends with PERMISSION_DENIED)."""


class StreamContext:
    """Objects every stream of one server shares."""

    def __init__(
        self,
        cache: ResourceCache,
        types: TypeRegistry,
        callbacks: StreamCallbacks,
        limits: StreamLimits,
        control_plane: str,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.authorizer = authorizer
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
        self._responses: dict[tuple[Any, ...], bytes] = {}
        self._responses_bytes = 0

    # Streams that are at the same point (same nonce, same resources) send identical
    # bytes: one copy is built and shared, so a push to N streams makes no per-stream
    # copy of the resources. Bounded by entries and bytes.
    MEMO_ENTRIES = 64
    MEMO_BYTES = 64 * 2**20

    def response(self, key: tuple[Any, ...], build: Callable[[], bytes]) -> bytes:
        """The response bytes for `key`, built by `build()` at most once while cached."""
        data = self._responses.get(key)
        if data is None:
            data = build()
            memo = self._responses
            while memo and (len(memo) >= self.MEMO_ENTRIES
                            or self._responses_bytes + len(data) > self.MEMO_BYTES):
                self._responses_bytes -= len(memo.pop(next(iter(memo))))
            if len(data) <= self.MEMO_BYTES:
                memo[key] = data
                self._responses_bytes += len(data)
        return data


class BaseStream(Generic[Req]):
    """One xDS stream: a single loop that waits for a request or a cache change.

    The reader task queues requests for the loop in `run`, or applies one itself when
    the loop is parked with nothing queued (synchronously: the loop cannot interleave),
    so state changes one step at a time and no locking is needed. Subclasses implement
    `handle_request` (update state from a request) and `flush` (send what a type's
    state says is due).
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
        self._log: Any = None
        self._requests: deque[Req | Malformed] = deque()
        self._dirty: set[str] = set()
        # The loop's wake-up: `_woken` is set by whoever has work for the loop; the loop
        # sleeps on `_waiter` only when nothing is pending. A bare future costs less than
        # an `asyncio.Event` (no waiter deque), which counts when a push wakes every stream.
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self._reader_done = False
        self._failure: Exception | None = None  # raised by a request the reader applied
        self._nonces = itertools.count(1)
        self._unknown_types: set[str] = set()
        self._tokens = float(ctx.limits.request_burst)
        self._token_at = time.monotonic()

    @property
    def log(self) -> Any:
        """The stream's logger, bound to its id and (once known) its node. Bound on first
        use: most streams never log at the levels enabled, and binding costs."""
        if self._log is None:
            info = self.info
            self._log = log.bind(stream_id=info.stream_id, service=info.service, delta=info.delta)
            if info.node is not None:
                self._log = self._log.bind(node_id=info.node.id, cluster=info.node.cluster)
        return self._log

    def wake(self) -> None:
        """Have the loop look at its requests and dirty types; safe from callbacks."""
        self._woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self) -> None:
        """Return at once if woken since the last call, else wait for `wake()`."""
        if not self._woken:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        self._woken = False

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
        self.wake()

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
            candidate = NodeInfo.from_proto(node)
            if self.ctx.authorizer is not None:
                refused = self.ctx.authorizer(candidate, self.grpc.auth_context())
                if refused is not None:
                    self.log.warning("node_identity_refused", node_id=candidate.id, peer=self.info.peer,
                                     reason=refused)
                    raise ProtocolError(grpc.StatusCode.PERMISSION_DENIED, refused)
            self.node = candidate
            self.info.node = self.node
            self._log = None  # rebound with the node on next use
            if _stdlib_log.isEnabledFor(logging.INFO):  # cheap check: a storm of streams
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

    def _take_token(self) -> None:
        """Per-stream token bucket on requests; refuse a client that floods."""
        limits = self.ctx.limits
        now = time.monotonic()
        self._tokens = min(float(limits.request_burst),
                           self._tokens + (now - self._token_at) * limits.requests_per_second)
        self._token_at = now
        if self._tokens < 1.0:
            raise ProtocolError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request rate limit exceeded ({limits.requests_per_second:g}/s, burst "
                f"{limits.request_burst})",
            )
        self._tokens -= 1.0

    async def _read(self, requests: AsyncIterator[Req | Malformed]) -> None:
        try:
            async for request in requests:
                try:
                    # Rate-limited where requests arrive, so a client that floods while
                    # not reading its responses cannot grow the queue behind a blocked write.
                    self._take_token()
                except ProtocolError as exc:
                    self._requests.append(Malformed(exc.message, exc.code))
                    break
                if (self._waiter is not None and not self._woken and not self._requests
                        and not isinstance(request, Malformed)):
                    # The loop is parked with nothing pending: apply the request here. It
                    # runs synchronously, so the loop cannot interleave; the loop is woken
                    # only if the request made a type dirty. An ACK then costs one task
                    # step instead of two (reader, then loop).
                    try:
                        self.handle_request(request)
                    except Exception as exc:  # raised by the loop, as if it had applied it
                        self._failure = exc
                        break
                    continue
                self._requests.append(request)
                self.wake()
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.RpcError):
            pass
        except Exception as exc:  # the transport failed under us: end the stream
            self.log.info("stream_read_failed", error=str(exc))
        finally:
            self._reader_done = True
            self.wake()

    async def _write(self, data: bytes) -> None:
        """Write holding one of the shared write slots, for at most `slot_timeout`:
        a client that stops reading keeps its write, not a slot. Small responses skip
        the slots: what they hold in flight is bounded by the stream count anyway."""
        if len(data) <= self.ctx.limits.unbounded_write_bytes:
            await self.grpc.write(data)
            return
        slots = self.ctx.write_slots
        await slots.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                slots.release()

        timer = asyncio.get_running_loop().call_later(self.ctx.limits.slot_timeout, release)
        try:
            await self.grpc.write(data)
        finally:
            timer.cancel()
            release()

    async def run(self, requests: AsyncIterator[Req | Malformed]) -> None:
        """Serve the stream until the client leaves or a protocol error ends it."""
        ctx = self.ctx
        if len(ctx.open_streams) >= ctx.limits.max_streams:
            self.log.warning("stream_limit", open=len(ctx.open_streams), limit=ctx.limits.max_streams)
            await self.grpc.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"this server holds its limit of {ctx.limits.max_streams} streams; "
                                  "retry later or another replica")
        ctx.open_streams.add(self)
        ctx.callbacks.on_stream_open(self.info)
        if debug_enabled():
            self.log.debug("stream_opened", peer=self.info.peer)
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                await self._sleep()
                if self._failure is not None:
                    raise self._failure
                while self._requests:
                    request = self._requests.popleft()
                    if isinstance(request, Malformed):
                        raise ProtocolError(request.code, request.error)
                    self.handle_request(request)
                while self._dirty and not ctx.closing:
                    # Several types due: in registration order (clusters before endpoints,
                    # listeners before routes), as Envoy warms them.
                    type_url = (min(self._dirty, key=ctx.types.rank) if len(self._dirty) > 1
                                else next(iter(self._dirty)))
                    self._dirty.discard(type_url)
                    data = self.flush(type_url)
                    if data is not None:
                        await self._write(data)
                if self._reader_done and not self._requests:
                    break
        except ProtocolError as exc:
            self.log.warning("stream_refused", code=exc.code.name, reason=exc.message)
            await self.grpc.abort(exc.code, exc.message)
        except (asyncio.CancelledError, grpc.aio.AioRpcError, grpc.RpcError) as exc:
            if debug_enabled():
                self.log.debug("stream_write_failed", error=type(exc).__name__)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.close_watches()
            ctx.open_streams.discard(self)
            if _stdlib_log.isEnabledFor(logging.INFO):
                self.log.info("stream_closed", node_id=self.node.id)
            ctx.callbacks.on_stream_closed(self.info)
