"""Telemetry from a real Envoy 1.40 with the generated `--telemetry` bootstrap: access-log
entries and stats arrive attributed to the node and the filter revision; `logs --follow`
(CLI) and `GET /api/v1/logs?follow=1` (SSE and NDJSON) show the new revision after a
swap, with the filter state the module set; a trapping module shows up as 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.fixtures.envoy import EnvoyProcess, http_get, validate_bootstrap
from tests.fixtures.net import free_port
from tests.fixtures.pki import make_pki
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import debug_state_filter
from xds_server.config import parse_filter_spec
from xds_server.runtime import XdsServerApp
from xds_server.telemetry import RequestRecord, StatRecord

pytestmark = pytest.mark.envoy
ROOT = str(Path(__file__).resolve().parent.parent)


class Stats:
    """A consumer keeping the stat samples it is given."""

    def __init__(self) -> None:
        self.records: list[StatRecord] = []

    def on_requests(self, records: Sequence[RequestRecord]) -> None:
        pass

    def on_stats(self, records: Sequence[StatRecord]) -> None:
        self.records.extend(records)


async def traffic(url: str, stop: asyncio.Event) -> None:
    """An HTTP client loop: a GET every 20 ms until `stop`."""
    while not stop.is_set():
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await http_get(url)
        await asyncio.sleep(0.02)


class Lines:
    """Lines read from a stream by a background task."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def find(self, pred: Any) -> Any:
        return next((i for i in self.items if pred(i)), None)


async def read_http_follow(url: str, accept: str, out: Lines) -> None:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"Accept": accept}) as resp:
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                out.items.append(json.loads(line[6:]))
            elif line.startswith("{"):
                out.items.append(json.loads(line))


async def read_cli_follow(admin: str, out: Lines) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", "logs", "dbg", "--follow", "--output", "json",
        "--node", "e*", "--server", admin, stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            out.items.append(json.loads(raw))
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def background(*coros: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


async def deploy(app: XdsServerApp, path: Path) -> tuple[int, str]:
    state = await app.controller.deploy(
        "dbg", [parse_filter_spec({"name": "dbg", "source": {"file": str(path)}}, where="test")],
        author="test")
    assert state.revision is not None
    return state.revision.revision, state.versions[0]


async def test_envoy_telemetry_logs_follow_and_stats(tmp_path: Path) -> None:
    mods = {}
    for tag, kw in (("A", {}), ("B", {"metric": "dbg_requests"}), ("T", {"trap_every": 1})):
        mods[tag] = tmp_path / f"{tag}.wasm"
        mods[tag].write_bytes(debug_state_filter(f"rev={tag}", **kw))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "dbg", "source": {"file": str(mods["A"])}}])
    port = free_port()
    async with running_server(cfg) as app:
        stats = Stats()
        app.telemetry.subscribe(stats)
        boot = server_bootstrap(app, node_id="e1", filters=["dbg"], listen_port=port,
                                telemetry=True, telemetry_interval="1s")
        doc = yaml.safe_load(boot)
        assert doc["stats_sinks"][0]["name"] == "envoy.stat_sinks.open_telemetry"
        await validate_bootstrap(boot, tmp_path)
        rev_a = app.controller.filters["dbg"].revision.revision  # type: ignore[union-attr]
        version_a = app.controller.filters["dbg"].versions[0]
        admin = f"http://127.0.0.1:{app.admin_port}"
        stop = asyncio.Event()
        async with EnvoyProcess(boot, tmp_path) as envoy:
            url = f"http://127.0.0.1:{port}/t?secret=1"
            sse, ndjson, cli = Lines(), Lines(), Lines()
            async with background(traffic(url, stop)):
                # Entries arrive attributed to node and revision, with the module's filter state.
                def first_a() -> Any:
                    entries = app.logs.recent("dbg", node_glob="e1")
                    return entries[-1] if entries else None

                entry = await envoy.wait_for(first_a, 30, what="an access-log entry from Envoy")
                rec, run = entry.record, entry.run
                assert (rec.node_id, rec.cluster, rec.status, rec.method) == ("e1", "xds-server-fleet", 200, "GET")
                assert rec.path == "/t"  # no query string: it may carry secrets
                assert rec.details == "direct_response"
                assert rec.filter_state == {"wasm.debug": "rev=A"}
                assert (run.filter, run.revision, run.version, run.canary) == ("dbg", rev_a, version_a, False)

                # Followers (SSE, NDJSON, the CLI) are open before the swap.
                follow = f"{admin}/api/v1/logs?filter=dbg&node=e1&follow=1&limit=1"
                async with background(read_http_follow(follow, "text/event-stream", sse),
                                      read_http_follow(follow, "application/x-ndjson", ndjson),
                                      read_cli_follow(admin, cli)):
                    for lines in (sse, ndjson, cli):
                        await envoy.wait_for(partial(lines.find, lambda i: i.get("revision") == rev_a),
                                             30, what="a follower's first entry")
                    rev_b, version_b = await deploy(app, mods["B"])

                    def on_b(i: Any, rev: int = rev_b, version: str = version_b) -> bool:
                        return bool(i.get("revision") == rev and i.get("version") == version
                                    and i.get("filter_state") == {"wasm.debug": "rev=B"})

                    for name, lines in (("SSE", sse), ("NDJSON", ndjson), ("CLI", cli)):
                        got = await envoy.wait_for(partial(lines.find, on_b), 30,
                                                   what=f"{name} follower showing revision {rev_b}")
                        assert got["node_id"] == "e1" and got["status"] == 200
                    # No entry is attributed to B that still carries A's filter state.
                    assert not any(i.get("revision") == rev_b and i.get("filter_state") == {"wasm.debug": "rev=A"}
                                   for i in sse.items + ndjson.items + cli.items)

                # Stats arrive, attributed; the module's custom counter among them.
                def custom() -> Any:
                    return next((s for s in stats.records if s.name == "wasmcustom.dbg_requests"
                                 and s.value > 0), None)

                counter = await envoy.wait_for(custom, 30, what="the module's custom counter")
                assert counter.kind == "counter" and counter.node_id == "e1"
                assert [(r.filter, r.revision) for r in counter.runs] == [("dbg", rev_b)]
                assert any(s.name == "http.ingress_http.downstream_rq_completed" for s in stats.records)

                # A module that traps: the entries show it, 5xx, with its revision.
                rev_t, _ = await deploy(app, mods["T"])

                def failed() -> Any:
                    return next((e for e in reversed(app.logs.recent("dbg", limit=500))
                                 if e.run.revision == rev_t and e.record.status >= 500), None)

                bad = await envoy.wait_for(failed, 30, what="a 5xx entry of the trapping revision")
                # Envoy 1.40's response code details when a module traps (the VM is then dead).
                assert (bad.record.status, bad.record.details) == (503, "wasm_fail_stream")
                stop.set()

        # The plain (non-follow) endpoint and the CLI table.
        async with aiohttp.ClientSession() as session, session.get(
                f"{admin}/api/v1/logs", params={"filter": "dbg", "limit": "5"}) as resp:
            body = await resp.json()
        assert resp.status == 200 and len(body["entries"]) == 5
        async with aiohttp.ClientSession() as session, session.get(f"{admin}/api/v1/logs") as resp:
            assert resp.status == 400
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "logs", "dbg", "--server", admin, "--limit", "3",
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": ROOT})
        out, _ = await proc.communicate()
        table = out.decode().splitlines()
        assert proc.returncode == 0 and table[0].startswith("TIME") and len(table) == 4
        assert all(" e1 " in line and " GET " in line and "/t" in line for line in table[1:])


async def test_envoy_telemetry_over_mtls_with_identity_binding(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", {"e1": "spiffe://fleet/e1"})
    mod = tmp_path / "a.wasm"
    mod.write_bytes(debug_state_filter("rev=A"))
    cfg = write_config(
        tmp_path / "config.yaml", [{"name": "dbg", "source": {"file": str(mod)}}],
        xds_tls={"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                 "client_ca_file": str(pki.ca)},
        node_identity=[{"san": "spiffe://fleet/e1", "node_id": "e1"}])
    port = free_port()
    async with running_server(cfg) as app:
        stats = Stats()
        app.telemetry.subscribe(stats)
        cert, key = pki.clients["e1"]
        boot = server_bootstrap(app, node_id="e1", filters=["dbg"], listen_port=port, ads=True,
                                tls_ca=str(pki.ca), tls_cert=str(cert), tls_key=str(key),
                                tls_sni="localhost", telemetry=True, telemetry_interval="1s")
        stop = asyncio.Event()
        async with EnvoyProcess(boot, tmp_path) as envoy, background(traffic(f"http://127.0.0.1:{port}/", stop)):
            entry = await envoy.wait_for(lambda: next(iter(app.logs.recent("dbg")), None), 30,
                                         what="an access-log entry over mTLS")
            assert entry.record.node_id == "e1" and entry.record.filter_state == {"wasm.debug": "rev=A"}
            await envoy.wait_for(lambda: stats.records, 30, what="stats over mTLS")
            stop.set()


@pytest.mark.parametrize("extra", [[], ["--ads", "--delta"], ["--telemetry-metadata", "envoy.lua",
                                                              "--telemetry-filter-state", "wasm.a",
                                                              "--telemetry-filter-state", "wasm.b"]])
async def test_telemetry_bootstrap_variants_validate(tmp_path: Path, extra: list[str],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from xds_server.cli import main

    assert main(["bootstrap", "--node-id", "n1", "--filter", "f1", "--telemetry",
                 "--telemetry-interval", "10s", *extra]) == 0
    text = capsys.readouterr().out
    await validate_bootstrap(text, tmp_path)
    doc = yaml.safe_load(text)
    hcm = doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (logger,) = hcm["access_log"]
    body = logger["typed_config"]["body"]["string_value"]
    items = body.split("\x1f")
    assert items[:3] == ["xds1", "%RESPONSE_CODE%", "%DURATION%"] and "%RESPONSE_CODE_DETAILS%" in items
    if "--telemetry-metadata" in extra:
        assert {"md:envoy.lua=%DYNAMIC_METADATA(envoy.lua)%", "fs:wasm.a=%FILTER_STATE(wasm.a:PLAIN)%",
                "fs:wasm.b=%FILTER_STATE(wasm.b:PLAIN)%"} <= set(items)
        assert not any(i.startswith("fs:wasm.debug") for i in items)
    else:
        assert "fs:wasm.debug=%FILTER_STATE(wasm.debug:PLAIN)%" in items
    assert logger["typed_config"]["grpc_service"]["initial_metadata"] == [{"key": "x-xds-node-id", "value": "n1"}]
    assert doc["stats_flush_interval"] == "10s"
    assert doc["stats_sinks"][0]["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == "xds_server"


def test_readme_snippets_match_the_generated_ones() -> None:
    """The README's snippets for hand-written bootstraps say what the generator does."""
    from xds_server.telemetry import access_logger, stats_sink

    text = (Path(ROOT) / "README.md").read_text()
    block = text.split("**Snippets for your own bootstrap**", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    doc = yaml.safe_load(block)
    assert doc["stats_sinks"][0] == stats_sink(node_id="edge-1", cluster="xds_server")
    assert doc["access_log"][0] == access_logger(node_id="edge-1", cluster="xds_server")
