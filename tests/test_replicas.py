"""Issue 8: replicas sharing state. Three replicas on PostgreSQL (and one on SQLite),
real Envoys whose xDS cluster lists every replica, kill -9, exactly one rollback."""

from __future__ import annotations

import asyncio
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port, wait_ready
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import write_config
from tests.fixtures.wasm_filters import failing_filter, header_filter
from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml
from xds_server.wasm import RegistryClient, push

HEADER = "x-wasm-filter"


class Replica:
    def __init__(self, name: str, tmp: Path, database_url: str,
                 filters: list[dict[str, Any]] | None = None) -> None:
        self.name, self.xds, self.admin = name, free_port(), free_port()
        self.config = write_config(
            tmp / f"{name}.yaml", filters or [], xds_address=f"127.0.0.1:{self.xds}",
            admin_address=f"127.0.0.1:{self.admin}", data_dir=str(tmp / f"data-{name}"),
            database_url=database_url, replica_id=name)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.admin}/api/v1"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "serve", "--config", str(self.config),
            "--log-format", "json", stdout=asyncio.subprocess.DEVNULL,
            stderr=open(self.config.with_suffix(".log"), "ab"))  # noqa: SIM115, ASYNC230
        await wait_ready(f"http://127.0.0.1:{self.admin}/readyz", 30)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def call(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        data = await r.json()
        assert r.status < 300, (r.status, data)
        return data


async def nacks_seen(replica: Replica, resource: str) -> float:
    """`xds_server_nacks_total` of `resource` on one replica (its process's own count)."""
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{replica.admin}/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "xds_server_nacks_total" and sample.labels.get("resource") == resource:
                return sample.value
    return 0.0


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared-nothing.db'}"
    return str(request.getfixturevalue("fresh_database"))


async def test_replicas_share_state(tmp_path: Path, registry: RegistryProcess, database: str) -> None:
    pg = database.startswith("postgresql")
    repo = f"{registry.host}/replicas/hdr"
    async with RegistryClient() as client:
        for tag, wasm in (("v1", header_filter(HEADER, "v1")), ("broken", failing_filter())):
            await push(client, f"{repo}:{tag}", wasm)
    replicas = [Replica(f"r{i}", tmp_path, database) for i in (1, 2, 3)[: 3 if pg else 1]]
    async with AsyncExitStack() as stack:
        for r in replicas:
            await r.start()
            stack.push_async_callback(r.stop)
        homes = replicas[1:] if pg else replicas  # Envoys prefer r2 and r3 (PostgreSQL)
        envoys, urls = [], []
        for i, home in enumerate(homes):
            order = [home] + [r for r in replicas if r is not home]
            port = free_port()
            boot = bootstrap_yaml(BootstrapOptions(
                node_id=f"e{i}", filters=["hdr"], listen=f"127.0.0.1:{port}", admin="127.0.0.1:0",
                xds_addresses=[f"127.0.0.1:{r.xds}" for r in order], xds_failover=True,
                module_server=None, ads=i % 2 == 1, delta=i % 2 == 1))
            (tmp_path / f"e{i}").mkdir()
            envoys.append(await stack.enter_async_context(EnvoyProcess(boot, tmp_path / f"e{i}")))
            urls.append(f"http://127.0.0.1:{port}/")

        # A deploy through replica 1 reaches the Envoys connected to replicas 2 and 3.
        await call("PUT", f"{replicas[0].api}/filters/hdr",
                   {"source": {"image": f"{repo}:v1"}, "on_nack": "rollback"})
        for url in urls:
            await wait_for_header(url, HEADER, "v1", timeout=20)
        version = (await call("GET", f"{replicas[0].api}/filters/hdr"))["specs"][0]["version"]

        # Every replica shows every proxy of the fleet, and which replica it is on.
        async def fleet_view() -> dict[str, Any] | None:
            ps = {p["node_id"]: p for p in (await call("GET", f"{replicas[0].api}/proxies"))["proxies"]}
            ok = all(ps.get(f"e{i}", {}).get("resources", {}).get("hdr", {}).get("version_acked") == version
                     for i in range(len(homes)))
            return ps if ok else None

        proxies = await wait_for(fleet_view, 15, what="fleet-wide proxy status")
        assert {proxies[f"e{i}"]["replica"] for i in range(len(homes))} == {h.name for h in homes}

        # kill -9 the replica e0 is on: it reconnects elsewhere (or to the restarted one)
        # and reloads nothing.
        reloads = [await e.stats("config_reload") for e in envoys]
        await homes[0].kill()
        if not pg:
            await homes[0].start()  # one process: the same replica comes back

        async def moved() -> bool | None:
            ps = {p["node_id"]: p for p in (await call("GET", f"{replicas[-1].api}/proxies"))["proxies"]}
            p = ps.get("e0", {})
            return True if p.get("connected") and (not pg or p.get("replica") != homes[0].name) else None

        await wait_for(moved, 30, what="e0 reconnected")
        # Where each Envoy is now: with PostgreSQL, on two different replicas.
        placed = {p["node_id"]: p["replica"]
                  for p in (await call("GET", f"{replicas[-1].api}/proxies"))["proxies"]}
        on = {placed[f"e{i}"] for i in range(len(homes))}
        assert len(on) == len(homes), placed
        await asyncio.sleep(1.0)
        assert [await e.stats("config_reload") for e in envoys] == reloads
        await wait_for_header(urls[0], HEADER, "v1", timeout=5)
        survivor = replicas[0] if pg else homes[0]

        # A broken module is NACKed by the Envoys on each replica they are on: each
        # replica counts its own NACKs (its /metrics). With `on_nack: keep` nothing
        # moves, so every replica gets to push it.
        await call("PUT", f"{survivor.api}/filters/hdr", {"source": {"image": f"{repo}:broken"}})
        by_name = {r.name: r for r in replicas}

        async def nacked_on_each() -> bool | None:
            return True if all([await nacks_seen(by_name[n], "hdr") > 0 for n in on]) else None

        await wait_for(nacked_on_each, 20, what=f"NACKs counted on each of {sorted(on)}")
        await wait_for_header(urls[0], HEADER, "v1", timeout=5)  # the NACKed module never ran

        # Broken again (new content) with `on_nack: rollback`, NACKed on several
        # replicas: exactly one rollback, to what the proxies still run.
        await call("PUT", f"{survivor.api}/filters/hdr",
                   {"source": {"image": f"{repo}:broken"}, "configuration": "again", "on_nack": "rollback"})

        async def rolled_back() -> list[Any] | None:
            h = (await call("GET", f"{survivor.api}/filters/hdr/history"))["history"]
            return h if h[0]["action"] == "auto-rollback" else None

        history = await wait_for(rolled_back, 20, what="automatic rollback")
        await asyncio.sleep(2.0)
        history = (await call("GET", f"{survivor.api}/filters/hdr/history"))["history"]
        assert [h["action"] for h in history].count("auto-rollback") == 1
        assert history[0]["versions"] == [version]
        for url in urls:
            await wait_for_header(url, HEADER, "v1", timeout=10)
        for r in replicas:
            if r.proc is not None and r.proc.returncode is None:
                view = await call("GET", f"{r.api}/filters/hdr")
                assert view["specs"][0]["version"] == version, r.name


async def test_new_replica_serves_modules_from_peers_while_registry_is_down(
    tmp_path: Path, registry: RegistryProcess, registry_proxy: Any, fresh_database: str
) -> None:
    repo = f"{registry_proxy.host}/replicas/peer"
    async with RegistryClient() as client:
        await push(client, f"{registry.host}/replicas/peer:v1", header_filter(HEADER, "peer"))
    r1, r2 = Replica("r1", tmp_path, fresh_database), Replica("r2", tmp_path, fresh_database)
    async with AsyncExitStack() as stack:
        await r1.start()
        stack.push_async_callback(r1.stop)
        view = await call("PUT", f"{r1.api}/filters/hdr", {"source": {"image": f"{repo}:v1"}})
        registry_proxy.down = True
        before = registry_proxy.count("/v2/")
        await r2.start()  # its store is empty and the registry answers 503
        stack.push_async_callback(r2.stop)
        got = await call("GET", f"{r2.api}/filters/hdr")
        assert got["specs"][0]["version"] == view["specs"][0]["version"]
        assert got["specs"][0]["module"]["sha256"] == view["specs"][0]["module"]["sha256"]
        assert registry_proxy.count("/v2/") == before  # served by the peer, not the registry
        port = free_port()
        boot = bootstrap_yaml(BootstrapOptions(node_id="e9", filters=["hdr"], listen=f"127.0.0.1:{port}",
                                               admin="127.0.0.1:0", xds_addresses=[f"127.0.0.1:{r2.xds}"],
                                               module_server=None))
        async with EnvoyProcess(boot, tmp_path):
            await wait_for_header(f"http://127.0.0.1:{port}/", HEADER, "peer")
