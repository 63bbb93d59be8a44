"""gRPC health checking (`grpc.health.v1.Health`) that follows the server's readiness.

The overall status (service `""`) and every registered service's status are the same:
SERVING exactly when `AdminService.ready` (the rule `GET /readyz` uses too: initial
configuration applied, every filter has a module, not draining); NOT_SERVING for good
once shutdown begins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from xds_server.admin._service import AdminService
from xds_server.controller import FilterEvent
from xds_server.status import StatusEvent

__all__ = ["HEALTH_SERVICE", "HealthReporter"]

log = structlog.get_logger("xds_server.admin.health")

HEALTH_SERVICE: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING: Any = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Any = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Owns the aio health servicer and keeps its statuses equal to `ready`.

    `refresh()` recomputes and publishes; `schedule_refresh()` does the same from a
    synchronous listener (filter events). Used from one event loop.
    """

    def __init__(self, service: AdminService, services: Iterable[str]) -> None:
        self.service = service
        self.services = ["", *services]
        self.servicer = health_aio.HealthServicer()
        self._serving: bool | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Not serving until the first refresh says otherwise (set() is async; this is not).
        for name in self.services:
            self.servicer._server_status[name] = NOT_SERVING
        self._unsubscribe = service.subscribe_filters(self._on_filter_event)

    def register(self, server: grpc.aio.Server) -> None:
        """Add `grpc.health.v1.Health` to `server`."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def _on_filter_event(self, _event: StatusEvent | FilterEvent) -> None:
        self.schedule_refresh()

    async def refresh(self) -> None:
        """Publish the current readiness to every service (watchers are notified)."""
        serving = self.service.ready
        if serving == self._serving:
            return
        self._serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in self.services:
            await self.servicer.set(name, status)
        log.info("grpc_health", status="SERVING" if serving else "NOT_SERVING")

    def schedule_refresh(self) -> None:
        """`refresh()` soon, from synchronous code (needs a running loop)."""
        try:
            task = asyncio.get_running_loop().create_task(self.refresh())
        except RuntimeError:
            return  # no loop: the next refresh from async code will catch up
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """NOT_SERVING for every service, permanently (shutdown has begun)."""
        self._unsubscribe()
        self._serving = False
        await self.servicer.enter_graceful_shutdown()
        log.info("grpc_health", status="NOT_SERVING", reason="shutdown")
