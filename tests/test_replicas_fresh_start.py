"""Issue 11 item 2: replicas started together on a fresh PostgreSQL database (what a
Kubernetes Deployment does on its first rollout). Migrations must not race, and the
config file must be recorded once, however many replicas apply it at the same moment."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from tests.fixtures.envoy import wait_for
from tests.fixtures.postgres import PostgresServer
from tests.fixtures.server import write_config
from tests.fixtures.wasm_filters import header_filter
from tests.test_replicas import Replica, call
from xds_server.cache import ResourceCache
from xds_server.config import load_config
from xds_server.controller import Controller, StoreModules
from xds_server.state._postgres import PostgresStateStore
from xds_server.state._sql import MIGRATIONS

REPLICAS = 3
ROUNDS = 3


async def test_replicas_started_together_on_a_fresh_database_record_the_config_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    module = tmp_path / "hdr.wasm"
    module.write_bytes(header_filter("x-wasm-filter", "v1"))
    filters = [{"name": "hdr", "source": {"file": str(module)}}]
    for round_ in range(ROUNDS):
        url = postgres.create_database()
        home = tmp_path / f"round{round_}"
        home.mkdir()
        try:
            async with AsyncExitStack() as stack:
                replicas = [Replica(f"r{i}", home, url, filters) for i in range(REPLICAS)]
                for r in replicas:
                    stack.push_async_callback(r.stop)
                # Started at the same moment; each must become ready (no migration race).
                await asyncio.gather(*(r.start() for r in replicas))
                for r in replicas:
                    history = (await call("GET", f"{r.api}/filters/hdr/history"))["history"]
                    assert [h["action"] for h in history] == ["config"], (round_, r.name, history)
                    view = await call("GET", f"{r.api}/filters/hdr")
                    assert view["revision"] == 1, (round_, r.name, view)
        finally:
            postgres.drop_database(url.rsplit("/", 1)[1])


async def test_stores_opened_together_on_a_fresh_database_migrate_once(postgres: PostgresServer) -> None:
    """Many connections migrating one fresh database at the same moment: none fails, and
    each migration is applied once."""
    for _ in range(ROUNDS):
        url = postgres.create_database()
        stores = [PostgresStateStore(url) for _ in range(8)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            rows = await stores[0].transaction(lambda tx: tx.execute(
                "SELECT version, COUNT(*) FROM schema_migrations GROUP BY version ORDER BY version"))
            assert rows == [(v, 1) for v, _ in MIGRATIONS]
        finally:
            for s in stores:
                await s.close()
            postgres.drop_database(url.rsplit("/", 1)[1])


async def test_replicas_retrying_a_config_filter_at_once_record_it_once(
    tmp_path: Path, fresh_database: str
) -> None:
    """Two replicas (controllers with their own module store, one PostgreSQL database)
    could not apply the config file's filter at start (its module was missing); they
    retry at the same moment: one revision is recorded, the other replica catches up."""
    module = tmp_path / "late.wasm"
    controllers, stores = [], []
    for i in range(2):
        (tmp_path / f"c{i}").mkdir()
        config = load_config(write_config(tmp_path / f"c{i}" / "config.yaml",
                                          [{"name": "hdr", "source": {"file": str(module)}}]))
        modules = StoreModules.from_config(config)
        await modules.start()
        store = PostgresStateStore(fresh_database)
        await store.open()
        stores.append((modules, store))
        controllers.append(Controller(ResourceCache(), modules, store, replica_id=f"r{i}"))
    try:
        for c in controllers:
            c.state.listen(c.on_store_change)
            [error] = await c.apply_config(config)
            assert "late.wasm" in error.message and c.filters["hdr"].pending
        module.write_bytes(header_filter("x-wasm-filter", "late"))
        await asyncio.gather(*(c.retry_pending() for c in controllers))
        history = await controllers[0].state.history("hdr")
        assert [r.action for r in history] == ["config"], history

        async def caught_up() -> bool | None:
            revs = [c.filters["hdr"].revision for c in controllers]
            return True if all(r is not None and r.revision == 1 for r in revs) else None

        await wait_for(caught_up, 10, what="both replicas serve revision 1")
    finally:
        for modules, store in stores:
            await store.close()
            await modules.close()
