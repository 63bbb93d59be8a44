"""Issue 4 end to end: three real Envoys in two clusters, a real registry, the admin API.

Deploy v1 to one cluster, canary v2 to one proxy, promote, deploy a broken module with
`on_nack: rollback`, roll back to v1, restart the server: Envoy reloads nothing; the
history is kept; delete, restart again: the filter stays deleted. Run on SQLite and on a
real PostgreSQL (issue 11): there, the restarted server gets a new data directory, so
everything it knows comes from the database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.envoy import EnvoyProcess, http_get, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import failing_filter, header_filter
from xds_server.wasm import RegistryClient, push

HEADER = "x-wasm-filter"


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.session.request(method, self.base + path, json=body,
                                        headers={"X-Actor": "tester"}) as r:
            data = await r.json()
            assert r.status == expect, (r.status, data)
            return data


@contextlib.asynccontextmanager
async def api_client(port: int) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as s:
        yield Api(f"http://127.0.0.1:{port}", s)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str:
    """"" (SQLite in the data directory) or the URL of a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("fresh_database"))


async def test_deploy_canary_promote_autorollback_rollback_restart(
    tmp_path: Path, registry: RegistryProcess, database: str
) -> None:
    repo = f"{registry.host}/team/hdr"
    async with RegistryClient() as client:
        for tag, wasm in (("v1", header_filter(HEADER, "v1")), ("v2", header_filter(HEADER, "v2")),
                          ("broken", failing_filter())):
            await push(client, f"{repo}:{tag}", wasm, layout="wasme")

    xds_port, admin_port = free_port(), free_port()
    cfg = write_config(tmp_path / "config.yaml", [], xds_address=f"127.0.0.1:{xds_port}",
                       admin_address=f"127.0.0.1:{admin_port}", database_url=database)
    # With PostgreSQL the restarted server starts from an empty data directory.
    restart_cfg = cfg if not database else write_config(
        tmp_path / "restart.yaml", [], xds_address=f"127.0.0.1:{xds_port}",
        admin_address=f"127.0.0.1:{admin_port}", database_url=database,
        data_dir=str(tmp_path / "data-after-restart"))
    ports = {n: free_port() for n in ("e1", "e2", "e3")}
    url = {n: f"http://127.0.0.1:{p}/" for n, p in ports.items()}
    stack = contextlib.AsyncExitStack()
    async with stack:
        app = await stack.enter_async_context(running_server(cfg))
        api = await stack.enter_async_context(api_client(admin_port))
        modes = {"e1": {}, "e2": {"ads": True, "delta": True}, "e3": {"delta": True}}
        envoys = {}
        for name, cluster in (("e1", "ca"), ("e2", "ca"), ("e3", "cb")):
            boot = server_bootstrap(app, node_id=name, cluster=cluster, filters=["hdr"],
                                    listen_port=ports[name],
                                    initial_fetch_timeout="1s" if name == "e3" else "0s",
                                    **modes[name])
            (tmp_path / name).mkdir()
            envoys[name] = await stack.enter_async_context(EnvoyProcess(boot, tmp_path / name))
        pids = {n: e.pid for n, e in envoys.items()}

        # 1. v1 to cluster "ca" only.
        view = await api.call("PUT", "/api/v1/filters/hdr", {
            "source": {"image": f"{repo}:v1"}, "selector": {"cluster": "ca"},
            "on_nack": "rollback"}, expect=201)
        assert view["revision"] == 1 and view["specs"][0]["module"]["layout"] == "wasme"
        await wait_for_header(url["e1"], HEADER, "v1")
        await wait_for_header(url["e2"], HEADER, "v1")
        await envoys["e3"].wait_live(20)
        _, headers, _ = await http_get(url["e3"])
        assert HEADER not in headers  # e3 (cluster cb) is not targeted

        # 2. v2 as a canary on e1, then promote.
        view = await api.call("PUT", "/api/v1/filters/hdr", {
            "source": {"image": f"{repo}:v2"}, "selector": {"cluster": "ca"},
            "canary": {"node_id": "e1"}, "on_nack": "rollback"})
        assert view["canary"] is True and view["revision"] == 2
        await wait_for_header(url["e1"], HEADER, "v2")
        await wait_for_header(url["e2"], HEADER, "v1", timeout=2)
        v2_version = view["specs"][0]["version"]

        async def rollout_split() -> dict[str, int] | None:
            r = (await api.call("GET", "/api/v1/filters/hdr"))["rollout"]
            return r if sorted(r.values()) == [1, 1] else None

        assert v2_version in await wait_for(rollout_split, 10, what="1 proxy on each version")
        view = await api.call("POST", "/api/v1/filters/hdr/promote")
        assert view["canary"] is False and view["revision"] == 3
        await wait_for_header(url["e2"], HEADER, "v2")
        await api.call("POST", "/api/v1/filters/hdr/promote", expect=409)

        async def all_acked() -> bool | None:
            v = await api.call("GET", "/api/v1/filters/hdr")
            return True if v["proxies"] == {"total": 2, "acked": 2, "nacked": 0} and \
                v["good_revision"] == v["revision"] else None

        await wait_for(all_acked, 10, what="both proxies ACK v2")

        # 3. A broken module with on_nack=rollback: NACKed, rolled back once; traffic never fails.
        failures: list[Any] = []
        stop = asyncio.Event()

        async def watch_traffic() -> None:
            while not stop.is_set():
                for n in ("e1", "e2"):
                    st, hd, _ = await http_get(url[n])
                    if st != 200 or hd.get(HEADER) != "v2":
                        failures.append((n, st, hd.get(HEADER)))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_traffic())
        await api.call("PUT", "/api/v1/filters/hdr", {
            "source": {"image": f"{repo}:broken"}, "selector": {"cluster": "ca"},
            "on_nack": "rollback"})

        async def rolled_back() -> list[Any] | None:
            h = (await api.call("GET", "/api/v1/filters/hdr/history"))["history"]
            return h if h[0]["action"] == "auto-rollback" else None

        history = await wait_for(rolled_back, 15, what="automatic rollback")
        assert "NACK from" in history[0]["summary"] and "Unable to create Wasm plugin" in history[0]["summary"]
        assert history[0]["versions"] == [v2_version]
        await asyncio.sleep(1.0)
        stop.set()
        await watcher
        assert failures == []
        history = (await api.call("GET", "/api/v1/filters/hdr/history"))["history"]
        assert [h["action"] for h in history].count("auto-rollback") == 1
        proxies = {p["node_id"]: p for p in (await api.call("GET", "/api/v1/proxies"))["proxies"]}
        nacks = [proxies[n]["resources"]["hdr"]["last_nack"] for n in ("e1", "e2")]
        assert any(n and "Unable to create Wasm plugin hdr" in n["message"] for n in nacks)

        # 4. Roll back to revision 1 (v1) by number.
        view = await api.call("POST", "/api/v1/filters/hdr/rollback", {"to": 1})
        assert view["specs"][0]["module"]["sha256"] == history[-1]["digests"][0]
        await wait_for_header(url["e1"], HEADER, "v1")
        await wait_for_header(url["e2"], HEADER, "v1")
        v1_version = view["specs"][0]["version"]
        assert v1_version == history[-1]["versions"][0]  # content-derived: same as revision 1

        async def acked_v1() -> bool | None:
            ps = (await api.call("GET", "/api/v1/proxies"))["proxies"]
            ok = [p for p in ps if p["resources"].get("hdr", {}).get("version_acked") == v1_version]
            return True if len(ok) == 2 else None

        await wait_for(acked_v1, 10, what="v1 ACKed by e1 and e2")
        reloads = {n: (await e.stats("config_reload")) for n, e in envoys.items()}
        history = (await api.call("GET", "/api/v1/filters/hdr/history"))["history"]
        assert [h["action"] for h in history] == [
            "rollback", "auto-rollback", "deploy", "promote", "deploy", "deploy"]

        # 5. Restart the server on the same data dir: nothing is reloaded by any Envoy.
        await app.stop(0)
        await app.cleanup()
        async with running_server(restart_cfg) as app2:
            async def reconnected() -> bool | None:
                return True if sum(p.connected for p in app2.status.proxies.values()) == 3 else None

            await wait_for(reconnected, 30, what="Envoys reconnect to the restarted server")
            assert app2.controller.filters["hdr"].versions == [v1_version]
            await asyncio.sleep(1.0)
            for n, e in envoys.items():
                assert await e.stats("config_reload") == reloads[n], n
                assert e.pid == pids[n]
            await wait_for_header(url["e1"], HEADER, "v1", timeout=2)
            await wait_for_header(url["e2"], HEADER, "v1", timeout=2)
            # The history survived the restart, revision for revision.
            assert (await api.call("GET", "/api/v1/filters/hdr/history"))["history"] == history

            # 6. Delete: recorded as a revision; the filter is gone from the API.
            gone = await api.call("DELETE", "/api/v1/filters/hdr")
            assert gone == {"deleted": "hdr", "revision": 7}
            await api.call("GET", "/api/v1/filters/hdr", expect=404)

        # 7. Restart once more: the delete holds, the history is still there.
        async with running_server(restart_cfg) as app3:
            assert "hdr" not in app3.controller.filters
            after = (await api.call("GET", "/api/v1/filters/hdr/history"))["history"]
            assert [h["action"] for h in after] == ["delete"] + [h["action"] for h in history]
            await api.call("GET", "/api/v1/filters/hdr", expect=404)
