"""Scenario: the cost of a dry run in the preflight sandbox Envoy (issue 16).

Cold: the first check (starts the sandbox's xDS server and Envoy, loads, one request).
Warm: a check of new content in the running sandbox (load over ECDS + requests).
Cached: the same content again (no Envoy work). RSS: the sandbox Envoy's resident memory.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import med, pct
from xds_server.config import FilterSpec, PreflightRequest, SourceSpec
from xds_server.controller import Code, build_extension_config
from xds_server.preflight import Sandbox


def _module(value: str) -> bytes:
    from tests.fixtures.wasm_filters import header_filter

    return header_filter("x-bench", value)


def _body(value: str) -> bytes:
    wasm = _module(value)
    spec = FilterSpec(name="bench", source=SourceSpec("file", "/dev/null"))
    message = build_extension_config(spec, Code(sha256="0" * 64, inline=wasm), "")
    body: bytes = message.SerializeToString(deterministic=True)
    return body


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _preflight(checks: int, requests: int) -> dict[str, Any]:
    reqs = tuple(PreflightRequest(path=f"/r{i}", expect_status=200) for i in range(requests))
    with tempfile.TemporaryDirectory() as tmp:
        sandbox = Sandbox(Path(tmp))
        try:
            t0 = time.perf_counter()
            await sandbox.check(_body("cold"), reqs)
            cold = time.perf_counter() - t0
            warm: list[float | None] = []
            for i in range(checks):
                t0 = time.perf_counter()
                await sandbox.check(_body(f"warm-{i}"), reqs)
                warm.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            await sandbox.check(_body("warm-0"), reqs)
            cached = time.perf_counter() - t0
            envoy = sandbox._envoy
            rss = _rss_kib(envoy._proc.pid) if envoy is not None and envoy._proc is not None else 0
        finally:
            await sandbox.close()
    return {"checks": checks, "requests": requests, "cold_s": cold, "warm_p50_ms": (med(warm) or 0) * 1e3,
            "warm_p99_ms": pct([w for w in warm if w is not None], 99) * 1e3, "cached_ms": cached * 1e3,
            "envoy_rss_mib": rss / 1024, "sandbox_starts": sandbox.starts}


def preflight(checks: int = 20, requests: int = 3) -> dict[str, Any]:
    """Dry-run costs: cold start, warm check of new content, cached check, sandbox RSS."""
    return asyncio.run(_preflight(checks, requests))


def preflight_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return (["checks", "requests each", "cold s", "warm p50 ms", "warm p99 ms", "cached ms",
             "sandbox Envoy RSS MiB", "starts"],
            [[res["checks"], res["requests"], res["cold_s"], res["warm_p50_ms"], res["warm_p99_ms"],
              res["cached_ms"], res["envoy_rss_mib"], res["sandbox_starts"]]])
