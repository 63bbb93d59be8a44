"""`GET /api/v1/logs` and `xds-server logs` on a real server with admin tokens, fed with
records the way the receivers hand them to the telemetry hub: token rules, node globs,
limits, follow (NDJSON) with a follower that falls behind, and the follower cap."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import yaml

from tests.fixtures.envoy import wait_for
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.admin._auth import hash_token
from xds_server.telemetry import FilterRun, LogBuffer, RequestRecord

READ = "read-token-0123456789abcdef"
ROOT = str(Path(__file__).resolve().parent.parent)


def records(node: str, n: int, revision: int = 1, start: int = 0) -> list[RequestRecord]:
    run = FilterRun("hdr", revision, f"v{revision}", canary=revision == 2)
    return [RequestRecord(node_id=node, cluster="c", time=time.time(), duration_ms=1.5, status=200,
                          method="GET", path=f"/r{start + i}", details="via_upstream", runs=(run,),
                          filter_state={"wasm.debug": f"n={start + i}"}) for i in range(n)]


async def test_logs_api_tokens_globs_limits_follow_and_cli(tmp_path: Path) -> None:
    mod = tmp_path / "a.wasm"
    mod.write_bytes(header_filter())
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [{"name": "dash", "role": "read", "sha256": hash_token(READ)}]}))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(mod)}}],
                       admin_tokens_file=str(tokens))
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}/api/v1/logs"
        auth = {"Authorization": f"Bearer {READ}"}
        app.telemetry.on_requests(records("edge-1", 5) + records("core-1", 3, start=100))
        async with http.get(base, params={"filter": "hdr"}) as r:
            assert r.status == 401
        async with http.get(base, params={"filter": "hdr", "node": "edge-*", "limit": "2"}, headers=auth) as r:
            body = await r.json()
        assert r.status == 200
        assert [e["path"] for e in body["entries"]] == ["/r3", "/r4"]  # the newest, oldest first
        assert body["entries"][0]["filter_state"] == {"wasm.debug": "n=3"}
        async with http.get(base, params={"filter": "hdr", "limit": "many"}, headers=auth) as r:
            assert r.status == 400 and "limit" in (await r.json())["error"]["message"]
        async with http.get(base, params={"filter": "hdr", "node": "*a" * 200}, headers=auth) as r:
            assert r.status == 400 and "256" in (await r.json())["error"]["message"]
        async with http.get(base, params={"filter": "other"}, headers=auth) as r:
            assert (await r.json())["entries"] == []

        # Follow as NDJSON, with a queue of 5: a burst of 20 makes the follower lag.
        app.logs.follower_queue = 5
        lines: list[dict[str, object]] = []

        async def follow() -> None:
            params = {"filter": "hdr", "node": "edge-*", "limit": "1", "follow": "1"}
            async with http.get(base, params=params, headers=auth) as r:
                assert r.headers["Content-Type"].startswith("application/x-ndjson")
                async for raw in r.content:
                    if raw.strip():
                        lines.append(json.loads(raw))

        task = asyncio.create_task(follow())
        await wait_for(lambda: lines, 10, what="the follower's backlog")
        assert lines[0]["path"] == "/r4"
        app.telemetry.on_requests(records("core-1", 2, start=200) + records("edge-2", 20, revision=2, start=300))
        await wait_for(lambda: any(line.get("path") == "/r319" for line in lines), 10,
                       what="the newest entry on the follower")
        assert not any(str(line.get("path", "")).startswith("/r2") for line in lines[1:])  # core-1: not followed
        lagged = [line["lagged"] for line in lines if "lagged" in line]
        followed = [line for line in lines[1:] if "path" in line]
        assert sum(lagged) == 15 and len(followed) == 5  # type: ignore[arg-type]
        assert all(e["revision"] == 2 and e["canary"] is True for e in followed)

        # The cap on followers answers 503 with a message.
        app.logs.max_followers = 1
        async with http.get(base, params={"filter": "hdr", "follow": "1"}, headers=auth) as r:
            assert r.status == 503 and "limit" in (await r.json())["error"]["message"]
        task.cancel()

        # The CLI: a table line per entry with revision, status, duration, details, filter state.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "logs", "hdr", "--node", "edge-2", "--limit", "2",
            "--server", f"http://127.0.0.1:{app.admin_port}", "--token", READ,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        header, *rows = out.decode().splitlines()
        assert header.split()[:8] == ["TIME", "NODE", "REV", "CODE", "MS", "METHOD", "PATH", "DETAILS"]
        assert len(rows) == 2 and all("edge-2" in r and "r2*" in r and " 200 " in r and "1.5" in r
                                      and "via_upstream" in r for r in rows)
        assert rows[-1].endswith("wasm.debug=n=319")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "logs", "hdr", "--server", f"http://127.0.0.1:{app.admin_port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
        _, err = await proc.communicate()
        assert proc.returncode == 1 and "token" in err.decode()


def test_log_buffer_is_bounded_by_count_and_bytes_and_fair_to_quiet_filters() -> None:
    buf = LogBuffer(per_filter=100, max_bytes=200_000)

    def batch(filter_name: str, n: int, state: str = "x") -> list[RequestRecord]:
        run = FilterRun(filter_name, 1, "v1")
        return [RequestRecord(node_id="n", cluster="c", time=float(i), duration_ms=1.0, status=200,
                              path=f"/{i}", runs=(run,), filter_state={"wasm.debug": state}) for i in range(n)]

    buf.on_requests(batch("quiet", 10))
    buf.on_requests(batch("busy", 500))
    assert len(buf.recent("busy", limit=10_000)) == 100  # the count cap per filter
    assert buf.recent("busy", limit=1)[0].record.path == "/499"
    buf.on_requests(batch("busy", 300, state="y" * 1_000))  # big entries: the byte budget
    assert buf.total_bytes <= buf.max_bytes
    assert len(buf.recent("quiet", limit=10_000)) == 10  # the busy filter gave way, not the quiet one
    assert buf.recent("busy", limit=1)[0].record.path == "/299"
    buf.on_requests(batch("huge", 1, state="z" * 500_000))  # one entry over the whole budget
    assert buf.total_bytes <= buf.max_bytes


def test_log_buffer_batches_keep_what_records_one_at_a_time_would() -> None:
    """Entries are kept in chunks per batch: trimming across chunks, several filters and
    runs per batch, and the byte accounting match keeping records one by one."""
    a1, a2, b1 = FilterRun("a", 1, "v1"), FilterRun("a", 2, "v2"), FilterRun("b", 1, "v1")
    batched, single = LogBuffer(per_filter=50), LogBuffer(per_filter=50)
    n = 0
    for size in (7, 30, 1, 45, 12, 60, 3):
        records = []
        for j in range(size):
            runs = (a1, b1) if j < size // 2 else (a2,)
            records.append(RequestRecord(node_id=f"n{n % 3}", cluster="c", time=float(n), duration_ms=1.0,
                                         status=200, path=f"/{n}", runs=runs))
            n += 1
        batched.on_requests(records)
        for r in records:
            single.on_requests([r])

    def seen(buf: LogBuffer, name: str, glob: str = "*") -> list[tuple[str, int]]:
        return [(e.record.path, e.run.revision) for e in buf.recent(name, node_glob=glob, limit=1_000)]

    for name in ("a", "b"):
        assert seen(batched, name) == seen(single, name)
        assert seen(batched, name, "n1") == seen(single, name, "n1")
    assert len(seen(batched, "a")) == 50 and seen(batched, "a")[-1] == (f"/{n - 1}", 2)
    # A partial drop from a chunk frees its share of the chunk's bytes: approximate per
    # entry, exact in total (the sum over filters), and nothing left once all is dropped.
    assert abs(batched.total_bytes - single.total_bytes) <= single.total_bytes // 100
    batched.max_bytes = 0
    batched.on_requests([RequestRecord(node_id="n", cluster="c", time=0.0, duration_ms=1.0, status=200,
                                       runs=(a1,))])
    assert batched.total_bytes == 0 and batched.recent("a") == batched.recent("b") == []
    batched.max_bytes = 10**9
    assert [e.record.path for e in single.recent("a", limit=3)] == [f"/{n - 3}", f"/{n - 2}", f"/{n - 1}"]
