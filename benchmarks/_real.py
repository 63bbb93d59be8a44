"""Scenarios 6 and 7: a real Envoy swapping filters, and OCI pulls from a real registry."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import med, pct, ratio
from benchmarks._proc import Worker, now


class PollWorker:
    """Polls an URL on one keep-alive connection until a header has a value."""

    async def cmd_wait_header(self, host: str, port: int, header: str, value: str,
                              timeout: float = 10.0) -> float | None:  # noqa: ASYNC109
        return await asyncio.to_thread(self._wait, host, port, header, value, timeout)

    def _wait(self, host: str, port: int, header: str, value: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        conn = http.client.HTTPConnection(host, port, timeout=2)
        while time.monotonic() < deadline:
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                if resp.getheader(header) == value:
                    t = now()
                    conn.close()
                    return t
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=2)
                time.sleep(0.005)
            time.sleep(0.0005)
        conn.close()
        return None

    async def close(self) -> None:
        pass


async def _envoy_swaps(swaps: int, ads: bool) -> dict[str, Any]:
    from tests.fixtures.envoy import EnvoyProcess, free_port
    from tests.fixtures.server import running_server, server_bootstrap, write_config
    from tests.fixtures.wasm_filters import header_filter
    from xds_server.config._load import parse_filter_spec

    header = "x-bench"
    with tempfile.TemporaryDirectory(prefix="bench-envoy-") as tmp:
        root = Path(tmp)
        mods = []
        for i in range(swaps + 1):
            path = root / f"m{i}.wasm"
            path.write_bytes(header_filter(header, f"v{i}"))
            mods.append(path)
        cfg = write_config(root / "config.yaml", [{"name": "hdr", "source": {"file": str(mods[0])}}])
        port = free_port()
        poller = Worker("benchmarks._real.PollWorker")
        times: list[float] = []
        deploy_ms: list[float] = []
        missed = 0
        try:
            async with running_server(cfg) as app:
                boot = server_bootstrap(app, node_id="bench", filters=["hdr"], listen_port=port, ads=ads)
                async with EnvoyProcess(boot, root, log_level="warning") as _envoy:
                    first = await asyncio.to_thread(
                        poller.call, "wait_header", host="127.0.0.1", port=port, header=header,
                        value="v0", timeout=30.0)
                    if first is None:
                        raise RuntimeError("Envoy never served the first filter")
                    loop = asyncio.get_running_loop()
                    for i in range(1, swaps + 1):
                        spec = parse_filter_spec({"name": "hdr", "source": {"file": str(mods[i])}},
                                                 where="bench")
                        poller.send("wait_header", host="127.0.0.1", port=port, header=header,
                                    value=f"v{i}", timeout=10.0)
                        await asyncio.sleep(0.02)  # the poller is polling
                        t0 = now()
                        await app.controller.deploy("hdr", [spec], author="bench")
                        deploy_ms.append((now() - t0) * 1000)
                        seen = await loop.run_in_executor(None, poller.recv, 30.0)
                        if seen is None:
                            missed += 1
                        else:
                            times.append((seen - t0) * 1000)
        finally:
            poller.close()
    return {"swaps": swaps, "ads": ads, "missed": missed, "ms": times, "deploy_call_ms": deploy_ms,
            "deploy_call_p50_ms": med(list(deploy_ms)),
            "p50_ms": med(list(times)), "p99_ms": pct(times, 99) if times else None,
            "max_ms": max(times) if times else None}


def envoy_swaps(swaps: int) -> dict[str, Any]:
    """Scenario 6: deploy call -> first request served by the new filter, over ECDS."""
    return asyncio.run(_envoy_swaps(swaps, ads=False))


def envoy_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return (["swaps", "p50 ms", "p99 ms", "max ms", "missed", "deploy() returns p50 ms"],
            [[res["swaps"], res["p50_ms"], res["p99_ms"], res["max_ms"], res["missed"],
              res["deploy_call_p50_ms"]]])


async def _oci(size: int, repeats: int, cached: int) -> dict[str, Any]:
    import aiohttp

    from tests.fixtures.registry import _run_registry, make_wasm
    from xds_server.wasm.push import push
    from xds_server.wasm.registry import RegistryClient
    from xds_server.wasm.store import ModuleSource, ModuleStore

    wasm = await asyncio.to_thread(make_wasm, "bench", padding_bytes=size)
    sha = hashlib.sha256(wasm).hexdigest()
    with tempfile.TemporaryDirectory(prefix="bench-oci-") as tmp:
        root = Path(tmp)
        (root / "reg").mkdir()
        with _run_registry(root / "reg", None) as reg:
            client = RegistryClient()
            await client.start()
            ref = f"{reg.host}/bench/big:v1"
            try:
                await push(client, ref, wasm)
            finally:
                await client.close()
            plain, cold = [], []
            url = f"http://{reg.host}/v2/bench/big/blobs/sha256:{sha}"
            async with aiohttp.ClientSession() as session:
                for _ in range(repeats):
                    t0 = now()
                    async with session.get(url) as resp:
                        data = await resp.read()
                    plain.append(now() - t0)
                    assert hashlib.sha256(data).hexdigest() == sha
            # The reference of issue 17: a plain GET plus full wasmtime validation of the
            # same bytes (the work no store can skip).
            from xds_server.wasm._validate import validate_module

            validate = []
            validate_module(data, where="bench")  # warm: the engine is built once per process
            for _ in range(max(repeats, 9)):
                t0 = now()
                validate_module(data, where="bench")
                validate.append(now() - t0)
            store = None
            from pyinstrument import Profiler

            profile = ""
            for i in range(repeats):
                store = ModuleStore(root / f"store{i}")
                await store.start()
                profiler = Profiler(interval=0.0002, async_mode="enabled") if i == repeats - 1 else None
                if profiler:
                    profiler.start()
                t0 = now()
                module = await store.resolve(ModuleSource("image", ref))
                cold.append(now() - t0)
                if profiler:
                    profiler.stop()
                    profile = profiler.output_text(unicode=False, color=False)
                assert module.sha256 == sha
                if i < repeats - 1:
                    await store.close()
            assert store is not None
            hits = []
            for _ in range(cached):
                t0 = now()
                await store.resolve(ModuleSource("image", ref))
                hits.append(now() - t0)
            await store.close()
    return {"profile_cold_pull": profile, "module_bytes": len(wasm), "plain_s": plain, "cold_s": cold, "cached_s": hits,
            "validate_s": validate, "validate_median_s": med(list(validate)),
            "plain_median_s": med(list(plain)), "cold_median_s": med(list(cold)),
            "cold_ratio": ratio(med(list(cold)), med(list(plain))),
            "reference_s": (med(list(plain)) or 0.0) + (med(list(validate)) or 0.0),
            "cold_vs_reference": ratio(med(list(cold)), (med(list(plain)) or 0.0) + (med(list(validate)) or 0.0)),
            "cached_median_ms": (med(list(hits)) or 0.0) * 1000, "cached_p99_ms": pct(hits, 99) * 1000}


def oci(size: int = 5 * 2**20, repeats: int = 5, cached: int = 200) -> dict[str, Any]:
    """Scenario 7: cold pull vs plain blob download; cached reference resolve."""
    return asyncio.run(_oci(size, repeats, cached))


def oci_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    return (["module MiB", "plain GET s", "validation s", "cold pull s", "vs GET", "vs GET+validation",
             "cached resolve ms (p50)", "p99 ms"],
            [[res["module_bytes"] / 2**20, res["plain_median_s"], res.get("validate_median_s"),
              res["cold_median_s"], res["cold_ratio"], res.get("cold_vs_reference"),
              res["cached_median_ms"], res["cached_p99_ms"]]])
