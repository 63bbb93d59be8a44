"""`remote` delivery on a live Envoy: when to re-push after a code-cache miss.

Envoy NACKs the first push of a remote-code config to a live proxy while it fetches the
module (`nack_on_code_cache_miss`), and ignores a re-push identical to a config it
NACKed. So once the module was fetched (the admin server saw the GET) the proxy gets the
other, equivalent form (`Code.form`), which Envoy then serves from its code cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("xds_server.controller")


class RemoteRepush:
    """Tracks code-cache misses per (filter, node) and schedules the re-push.

    `flip(name, node_id)` switches that node to the other form and republishes. After
    `flips` rounds without an ACK a NACK counts as a real failure (`on_nack` returns
    False). Used from one event loop.
    """

    def __init__(self, flip: Callable[[str, str], Awaitable[None]], *, flips: int = 4,
                 delay: float = 0.3) -> None:
        self._flip = flip
        self.flips = flips
        self.delay = delay
        self._attempts: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], str] = {}
        self._fetched: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def on_ack(self, name: str, node_id: str) -> None:
        """The node accepted the filter: its miss count starts over."""
        self._attempts.pop((name, node_id), None)

    def on_nack(self, name: str, node_id: str, digest: str, message: str) -> bool:
        """A NACK of a remote config: True when it is handled as a code-cache miss."""
        key = (name, node_id)
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        if attempts > self.flips:
            return False
        log.info("remote_code_miss", filter=name, node_id=node_id, digest=digest,
                 attempt=attempts, error=message)
        self._pending[key] = digest
        if digest in self._fetched:
            self._schedule(name, node_id)
        return True

    def on_module_fetched(self, digest: str) -> None:
        """The admin server finished sending a module: re-push to the nodes waiting for it."""
        self._fetched.add(digest)
        for (name, node_id), wanted in list(self._pending.items()):
            if wanted == digest:
                self._schedule(name, node_id)

    def _schedule(self, name: str, node_id: str) -> None:
        self._pending.pop((name, node_id), None)

        async def later() -> None:
            await asyncio.sleep(self.delay)
            await self._flip(name, node_id)

        task = asyncio.ensure_future(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
