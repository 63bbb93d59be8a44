"""The sandbox: a private xDS server and a private Envoy that load one filter config at a
time and answer test requests. Started on first use and reused for every dry run."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
import grpc
import structlog
from envoy.config.core.v3 import extension_pb2

from xds_server.cache import TYPED_EXTENSION_CONFIG, Resource, ResourceCache, Variant, default_types
from xds_server.config import PreflightRequest
from xds_server.nodes import NodeSelector
from xds_server.xds import XdsService
from xds_server.xds._callbacks import NullCallbacks, StreamInfo

from ._envoy import EnvoyProcess, find_envoy
from ._errors import PreflightRefused, SandboxError
from ._metrics import PREFLIGHT_CHECKS, PREFLIGHT_DURATION

__all__ = ["Sandbox"]

log = structlog.get_logger("xds_server.preflight")

FILTER = "xds-server-preflight"
_RELOADS = f"extension_config_discovery.http_filter.{FILTER}.config_reload"
_MAX_RESULTS = 4096
_WASM_ERROR = re.compile(r"\]\[(error|critical)\]\[wasm\].*", re.IGNORECASE)


class _Reports(NullCallbacks):
    """ACKs and NACKs of the sandbox's one stream, by version."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[str | None]] = {}

    def _settle(self, resources: Mapping[str, str], outcome: str | None) -> None:
        future = self.waiting.get(resources.get(FILTER, ""))
        if future is not None and not future.done():
            future.set_result(outcome)

    def on_ack(self, stream: StreamInfo, type_url: str, nonce: str, resources: Mapping[str, str]) -> None:
        self._settle(resources, None)

    def on_nack(self, stream: StreamInfo, type_url: str, nonce: str, resources: Mapping[str, str],
                code: int, message: str) -> None:
        self._settle(resources, message or f"NACK code {code}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sandbox:
    """Loads a filter's exact `TypedExtensionConfig` into a private Envoy and sends test
    requests. One check at a time (a lock); outcomes are cached by resource version and
    requests (Envoy ignores a re-push of content it refused, and results are
    deterministic). After a trap the Envoy is restarted before the next check.

    Lifecycle: `check` starts it when needed; `close()` stops it.
    """

    def __init__(self, work_dir: Path, *, envoy_path: str | None = None, load_timeout: float = 30.0,
                 request_timeout: float = 10.0) -> None:
        self.work_dir = work_dir
        self.envoy_path = envoy_path
        self.load_timeout = load_timeout
        self.request_timeout = request_timeout
        self._lock = asyncio.Lock()
        self._cache = ResourceCache()
        self._reports = _Reports()
        self._grpc: grpc.aio.Server | None = None
        self._envoy: EnvoyProcess | None = None
        self._listen_port = 0
        self._xds_port = 0
        self._loads = 0
        self._session: aiohttp.ClientSession | None = None
        self._results: dict[str, str | None] = {}
        self.starts = 0

    async def _ensure_started(self) -> EnvoyProcess:
        # bootstrap imports the controller, which imports this package: import at use.
        from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml

        if self._envoy is not None and self._envoy.running:
            return self._envoy
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        if self._grpc is None:
            xds = XdsService(self._cache, types=default_types(), callbacks=self._reports,
                             control_plane="xds-server/preflight")
            self._grpc = grpc.aio.server()
            xds.register(self._grpc)
            self._xds_port = self._grpc.add_insecure_port("127.0.0.1:0")
            await self._grpc.start()
        self._cache.delete(TYPED_EXTENSION_CONFIG, FILTER)
        self._listen_port = _free_port()
        bootstrap = bootstrap_yaml(BootstrapOptions(
            node_id="xds-server-preflight", cluster="xds-server-preflight", filters=[FILTER],
            xds_addresses=[f"127.0.0.1:{self._xds_port}"], listen=f"127.0.0.1:{self._listen_port}",
            admin="127.0.0.1:0", module_server=None))
        self.starts += 1
        self._envoy = EnvoyProcess(find_envoy(self.envoy_path), self.work_dir / f"envoy-{self.starts}", bootstrap)
        await self._envoy.start()
        self._loads = 0
        log.info("sandbox_started", envoy=self._envoy.binary, listen_port=self._listen_port)
        return self._envoy

    async def check(self, body: bytes, requests: Sequence[PreflightRequest]) -> None:
        """Load the serialized `TypedExtensionConfig` `body` (any name) and send `requests`.

        Returns when every request answered as expected; raises `PreflightRefused` (the
        failing request, Envoy's message) or `SandboxError` (the sandbox itself failed).
        """
        message = extension_pb2.TypedExtensionConfig.FromString(body)
        message.name = FILTER
        resource = Resource.from_message(FILTER, message)
        key = resource.version + json.dumps([r.to_dict() for r in requests], sort_keys=True)
        async with self._lock:
            cached = key in self._results
            if not cached:
                if len(self._results) >= _MAX_RESULTS:
                    self._results.clear()  # a bound, not an LRU: a dry run is cheap to repeat
                started = asyncio.get_running_loop().time()
                try:
                    self._results[key] = await self._run(resource, requests)
                except SandboxError:
                    PREFLIGHT_CHECKS.labels("error").inc()
                    raise
                PREFLIGHT_DURATION.observe(asyncio.get_running_loop().time() - started)
            outcome = self._results[key]
        result = "refused" if outcome is not None else "passed"
        PREFLIGHT_CHECKS.labels(f"cached_{result}" if cached else result).inc()
        if outcome is not None:
            raise PreflightRefused(outcome)

    async def _run(self, resource: Resource, requests: Sequence[PreflightRequest]) -> str | None:
        envoy = await self._ensure_started()
        assert self._session is not None
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._reports.waiting[resource.version] = future
        try:
            self._cache.set(TYPED_EXTENSION_CONFIG, FILTER, [Variant(NodeSelector(), resource)])
            nack = await asyncio.wait_for(future, self.load_timeout)
        except TimeoutError:
            await envoy.stop()
            raise SandboxError(f"sandbox Envoy did not ACK or NACK the config within "
                               f"{self.load_timeout:g} s: {envoy.log_tail()}") from None
        finally:
            self._reports.waiting.pop(resource.version, None)
        if nack is not None:
            return f"Envoy refused to load it: {nack}"
        self._loads += 1
        await self._applied(envoy)
        offset = envoy.log_size()
        for request in requests:
            problem = await self._send(request)
            await asyncio.sleep(0.03)  # the log is flushed every 10 ms
            trap = _WASM_ERROR.search(envoy.log_since(offset))
            if trap is not None:
                await envoy.stop()  # a trapped VM stays dead: start afresh next time
                return f"{request.describe()}: the module failed in Envoy: {trap.group(0).strip()}"
            if problem is not None:
                return f"{request.describe()}: {problem}"
        return None

    async def _applied(self, envoy: EnvoyProcess) -> None:
        """Wait until Envoy applied the config it ACKed and its listener accepts."""
        assert self._session is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.load_timeout
        while loop.time() < deadline:
            if await envoy.stat(_RELOADS, self._session) >= self._loads:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self._listen_port)
                except OSError:
                    pass
                else:
                    writer.close()
                    await asyncio.sleep(0.05)  # the workers take the new config from the main thread
                    return
            await asyncio.sleep(0.02)
        raise SandboxError(f"sandbox Envoy ACKed but did not apply the config: {envoy.log_tail()}")

    async def _send(self, request: PreflightRequest) -> str | None:
        assert self._session is not None
        url = f"http://127.0.0.1:{self._listen_port}{request.path}"
        try:
            async with self._session.request(request.method, url, headers=dict(request.headers),
                                             allow_redirects=False) as r:
                await r.read()
                status, headers = r.status, {k.lower(): v for k, v in r.headers.items()}
        except (aiohttp.ClientError, TimeoutError) as error:
            return f"no answer ({type(error).__name__}: {error})"
        if request.expect_status is not None and status != request.expect_status:
            return f"expected status {request.expect_status}, got {status}"
        if request.expect_status is None and status >= 500:
            return f"expected a status below 500, got {status}"
        for name, value in request.expect_headers.items():
            if headers.get(name) != value:
                got = "absent" if name not in headers else repr(headers[name])
                return f"expected header {name}: {value!r}, got {got}"
        return None

    async def close(self) -> None:
        """Stop Envoy and the private xDS server."""
        if self._envoy is not None:
            await self._envoy.stop()
        if self._grpc is not None:
            await self._grpc.stop(0)
            self._grpc = None
        if self._session is not None:
            await self._session.close()
            self._session = None
