"""Telemetry ingestion: access-log entries per second the server absorbs from N simulated
proxies (each on its own connection, also holding an xDS stream) while it pushes
configs, against a bare grpc.aio OTLP sink in the same run; and config pushes to those
proxies without telemetry, with Envoy-paced telemetry (one export of `batch` entries per
proxy per second, the generated bootstrap's flush interval) and with the server
saturated by telemetry."""

from __future__ import annotations

import time
from typing import Any

from benchmarks._harness import Bench, med, ratio
from benchmarks._proc import call_all
from benchmarks._scenarios import _shipped_loop

FIXED3 = {"kind": "fixed", "names": ["f0", "f1", "f2"]}


def _phase(b: Bench, n: int, v: int, *, seconds: float, batch: int,
           interval: float) -> tuple[int, dict[str, Any]]:
    """Telemetry flowing for `seconds` while configs are pushed; what the server absorbed."""
    call_all(b.gens, "telemetry_start", batch=batch, interval=interval)
    time.sleep(1.0 + interval)  # warm up: every client has sent
    r0, c0, t0, rss0 = b.server.call("telemetry_records"), b.cpu(), time.monotonic(), b.rss()
    pushes = []
    while time.monotonic() - t0 < seconds:
        v += 1
        pushes.append(b.push("f0", v, k=v + 1, expected=n, acks=n))
        time.sleep(0.2)
    r1, c1, t1 = b.server.call("telemetry_records"), b.cpu(), time.monotonic()
    out = {"records_per_s": (r1 - r0) / (t1 - t0), "cpu": (c1 - c0) / (t1 - t0),
           "rss_growth": b.rss() - rss0, "push_s": med([p["acked_s"] for p in pushes]),
           "pushes": len(pushes), "pushes_complete": all(p["complete"] for p in pushes)}
    out["sent"] = sum(call_all(b.gens, "telemetry_stop"))
    time.sleep(0.5)
    return v, out


def _run(kind: str, n: int, *, seconds: float, batch: int, pushes: int) -> dict[str, Any]:
    b = Bench(kind, n=n, generators=2, telemetry=True, loop=_shipped_loop(kind))
    try:
        b.set(["f0", "f1", "f2"], 0)
        b.connect(n, FIXED3)
        time.sleep(0.5)
        quiet = [b.push("f0", v, k=v + 1, expected=n, acks=n) for v in range(1, pushes + 1)]
        rss0, cpu0, t0 = b.rss(), b.cpu(), time.monotonic()
        time.sleep(1.0)
        idle_cpu = (b.cpu() - cpu0) / (time.monotonic() - t0)
        v, paced = _phase(b, n, pushes, seconds=seconds, batch=batch, interval=1.0)
        v, saturated = _phase(b, n, v, seconds=seconds, batch=batch, interval=0.0)
        stats = b.stats(1)
        return {
            "records_per_s": saturated["records_per_s"], "cpu_idle": idle_cpu,
            "cpu_paced": paced["cpu"], "cpu_saturated": saturated["cpu"],
            "rss_growth": b.rss() - rss0, "push_quiet_s": med([p["acked_s"] for p in quiet]),
            "push_paced_s": paced["push_s"], "push_saturated_s": saturated["push_s"],
            "paced": paced, "saturated": saturated,
            "errors": stats["errors"], "error_samples": stats["error_samples"],
        }
    finally:
        b.close()


def telemetry(n: int, *, seconds: float = 5.0, batch: int = 20, pushes: int = 2) -> dict[str, Any]:
    """Both servers, one after the other, on the same machine and workload."""
    bare = _run("bare", n, seconds=seconds, batch=batch, pushes=pushes)
    xds = _run("xds", n, seconds=seconds, batch=batch, pushes=pushes)
    return {
        "n": n, "batch": batch, "bare": bare, "xds": xds,
        "ingest_ratio": ratio(xds["records_per_s"], bare["records_per_s"]),
        "push_ratio": ratio(xds["push_paced_s"], xds["push_quiet_s"]),
        "push_ratio_saturated": ratio(xds["push_saturated_s"], xds["push_quiet_s"]),
        "added_cpu_paced": xds["cpu_paced"] - xds["cpu_idle"],
        "added_cpu": xds["cpu_saturated"] - xds["cpu_idle"],
        "added_rss": xds["rss_growth"],
    }


def telemetry_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["N", "entries/s bare", "xds", "ratio", "push quiet s", "paced s", "ratio", "saturated s",
            "ratio", "CPU cores idle", "paced", "saturated", "RSS growth MiB"]
    x, b = res["xds"], res["bare"]
    return head, [[res["n"], b["records_per_s"], x["records_per_s"], res["ingest_ratio"],
                   x["push_quiet_s"], x["push_paced_s"], res["push_ratio"], x["push_saturated_s"],
                   res["push_ratio_saturated"], x["cpu_idle"], x["cpu_paced"], x["cpu_saturated"],
                   x["rss_growth"] / 2**20]]
