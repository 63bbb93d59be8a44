"""Faults with nothing lost: kill -9 mid-download, a full disk, graceful shutdown, a storm."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import grpc
from aiohttp import web

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port, wait_ready
from tests.fixtures.registry import make_wasm
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.xds_client import Stream, XdsClient, node, sotw_request
from xds_server.cache import TYPED_EXTENSION_CONFIG
from xds_server.state import SqliteStateStore

HEADER = "x-wasm-filter"


@asynccontextmanager
async def slow_http(body: bytes, *, chunk: int = 64 * 1024, pause: float = 0.05,
                    sent: Counter[str] | None = None) -> AsyncIterator[str]:
    """Serve `body` at /m.wasm, trickled (about chunk/pause bytes per second); `sent`
    counts the body bytes written (key "bytes")."""
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
        await resp.prepare(request)
        for i in range(0, len(body), chunk):
            await resp.write(body[i:i + chunk])
            if sent is not None:
                sent["bytes"] += len(body[i:i + chunk])
            await asyncio.sleep(pause)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/m.wasm", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/m.wasm"
    finally:
        await runner.cleanup()


async def api(method: str, url: str, body: object = None) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        return r.status, await r.json()


async def start_server_process(cfg: Path, xds: int, admin: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", "serve", "--config", str(cfg), "--log-format", "json",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await wait_ready(f"http://127.0.0.1:{admin}/readyz", 30)
    return proc


async def test_kill_9_during_download_and_after_deploy(tmp_path: Path) -> None:
    v1 = tmp_path / "v1.wasm"
    v1.write_bytes(header_filter(HEADER, "v1"))
    big = make_wasm("big", padding_bytes=3 * 2**20)
    xds, admin = free_port(), free_port()
    cfg = write_config(tmp_path / "config.yaml", [], xds_address=f"127.0.0.1:{xds}",
                       admin_address=f"127.0.0.1:{admin}")
    base = f"http://127.0.0.1:{admin}/api/v1/filters"
    blobs = tmp_path / "data" / "modules"
    proc = await start_server_process(cfg, xds, admin)
    try:
        status, view = await api("PUT", f"{base}/hdr", {"source": {"file": str(v1)}})
        assert status == 201
        version_before = view["specs"][0]["version"]  # type: ignore[index]
        # kill -9 right after an accepted deploy: the revision is durable.
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        proc = await start_server_process(cfg, xds, admin)
        status, view = await api("GET", f"{base}/hdr")
        assert status == 200 and view["specs"][0]["version"] == version_before  # type: ignore[index]
        # kill -9 in the middle of a module download: once bytes flow and land in a
        # temp file in the store (the download is streamed to disk, not held in memory).
        sent: Counter[str] = Counter()
        async with slow_http(big, pause=0.2, sent=sent) as url:
            put = asyncio.create_task(api("PUT", f"{base}/hdr", {"source": {
                "url": url, "sha256": hashlib.sha256(big).hexdigest()}}))

            def streaming() -> list[Path] | None:
                partial = [p for p in blobs.rglob(".tmp-*") if p.stat().st_size >= 128 * 1024]
                return partial if sent["bytes"] >= 128 * 1024 and partial else None

            partial = await wait_for(streaming, 60, what="the download streaming to a temp file")
            assert not put.done() and sent["bytes"] < len(big)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            with contextlib.suppress(aiohttp.ClientError):
                await put
        assert all(p.exists() for p in partial)  # the kill left the temp file behind
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    store = SqliteStateStore(tmp_path / "data" / "state.db")
    await store.open()
    current = await store.current("hdr")
    await store.close()
    assert current is not None and current.versions == [version_before] and current.revision == 1
    served = [p for p in blobs.rglob("*") if p.is_file() and hashlib.sha256(big).hexdigest() in p.name]
    assert served == []  # no half-written module under its digest
    proc = await start_server_process(cfg, xds, admin)
    try:
        status, view = await api("GET", f"{base}/hdr")
        assert view["specs"][0]["version"] == version_before and view["revision"] == 1  # type: ignore[index]
        assert not [p for p in blobs.rglob(".tmp-*")]  # leftovers cleaned at start
        assert not any(p.exists() for p in partial)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0


async def test_disk_full_changes_nothing(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)  # noqa: ASYNC221
    try:
        v1 = tmp_path / "v1.wasm"
        v1.write_bytes(header_filter(HEADER, "v1"))
        big = tmp_path / "big.wasm"
        big.write_bytes(make_wasm("big", padding_bytes=2 * 2**20))
        cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(v1)}}],
                           data_dir=str(mnt))
        port = free_port()
        async with running_server(cfg) as app, EnvoyProcess(
                server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port), tmp_path):
            url = f"http://127.0.0.1:{port}/"
            await wait_for_header(url, HEADER, "v1")
            status, body = await api("PUT", f"http://127.0.0.1:{app.admin_port}/api/v1/filters/hdr",
                                     {"source": {"file": str(big)}})
            assert status == 422, body
            message = body["error"]["message"]  # type: ignore[index]
            assert message.startswith(f"module {big}: module ")
            assert f"of {big} cannot be stored in {mnt}/modules/blobs/sha256: No space left on device" in message
            await wait_for_header(url, HEADER, "v1", timeout=2)
            assert app.controller.filters["hdr"].revision.revision == 1  # type: ignore[union-attr]
            assert not [p for p in mnt.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)  # noqa: ASYNC221


async def test_graceful_shutdown_finishes_inflight_calls(tmp_path: Path) -> None:
    big = make_wasm("slow", padding_bytes=2**20)
    cfg = write_config(tmp_path / "config.yaml", [])
    sent: Counter[str] = Counter()
    async with slow_http(big, pause=0.25, sent=sent) as url:  # about 4 s to download
        async with running_server(cfg) as app:
            client = XdsClient(f"127.0.0.1:{app.xds_port}")
            stream = client.sotw()
            await stream.send(sotw_request(["hdr"], node_msg=node("e1")))
            base = f"http://127.0.0.1:{app.admin_port}/api/v1/filters"
            put = asyncio.create_task(api("PUT", f"{base}/hdr", {"source": {
                "url": url, "sha256": hashlib.sha256(big).hexdigest()}}))
            # The stream is registered and the download is flowing, not finished, when stop begins.
            await wait_for(lambda: app.xds.stream_count == 1 and sent["bytes"] > 0, 30,
                           what="stream and download")
            assert sent["bytes"] < len(big) and not put.done()
            await app.stop(grace=10)
            status, _ = await put
            assert status == 201  # the in-flight call finished
            err = await stream.closed_with(10)
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
            await client.close()
        store = SqliteStateStore(tmp_path / "data" / "state.db")
        await store.open()
        try:
            assert await store.current("hdr") is not None  # nothing lost
        finally:
            await store.close()


async def test_reconnect_storm_1000_clients(tmp_path: Path) -> None:
    v1 = tmp_path / "v1.wasm"
    v1.write_bytes(header_filter(HEADER, "v1"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(v1)}}])
    async with running_server(cfg) as app:
        clients = [XdsClient(f"127.0.0.1:{app.xds_port}") for _ in range(10)]
        streams: list[Stream] = []
        for i in range(1000):
            s = clients[i % 10].sotw(ads=i % 2 == 1)
            streams.append(s)
        await asyncio.gather(*(s.send(sotw_request(["hdr"], node_msg=node(f"n{i}")))
                               for i, s in enumerate(streams)))
        first = await asyncio.gather(*(s.recv(30) for s in streams))
        assert {r.version_info for r in first} == {app.controller.filters["hdr"].versions[0]}
        assert app.xds.stream_count == 1000
        # Everyone disconnects at once and comes back: all served again, nothing leaks.
        for s in streams:
            s.cancel()
        await wait_for(lambda: app.xds.stream_count == 0 or None, 20, what="streams closed")
        assert app.cache.watcher_count(TYPED_EXTENSION_CONFIG) == 0  # no watch left behind
        again = [clients[i % 10].sotw() for i in range(1000)]
        await asyncio.gather(*(s.send(sotw_request(["hdr"], node_msg=node(f"n{i}")))
                               for i, s in enumerate(again)))
        assert len(await asyncio.gather(*(s.recv(30) for s in again))) == 1000
        for s in again:
            s.cancel()
        for c in clients:
            await c.close()
