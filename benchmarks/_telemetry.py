"""Telemetry ingestion: access-log entries per second the server absorbs from N simulated
proxies (each on its own connection, also holding an xDS stream) while it pushes
configs, against a bare grpc.aio OTLP sink in the same run; and config pushes to those
proxies with telemetry flowing vs. without."""

from __future__ import annotations

import time
from typing import Any

from benchmarks._harness import Bench, med, ratio
from benchmarks._proc import call_all

FIXED3 = {"kind": "fixed", "names": ["f0", "f1", "f2"]}


def _run(kind: str, n: int, *, seconds: float, batch: int, pushes: int) -> dict[str, Any]:
    b = Bench(kind, n=n, generators=2, telemetry=True)
    try:
        b.set(["f0", "f1", "f2"], 0)
        b.connect(n, FIXED3)
        time.sleep(0.5)
        quiet = [b.push("f0", v, k=v + 1, expected=n, acks=n) for v in range(1, pushes + 1)]
        rss0, cpu0 = b.rss(), b.cpu()
        idle_cpu_t0 = time.monotonic()
        time.sleep(1.0)
        idle_cpu = (b.cpu() - cpu0) / (time.monotonic() - idle_cpu_t0)
        call_all(b.gens, "telemetry_start", batch=batch)
        time.sleep(1.0)  # warm up: every client has sent
        r0, c0, t0 = b.server.call("telemetry_records"), b.cpu(), time.monotonic()
        busy = []
        v = pushes
        while time.monotonic() - t0 < seconds:
            v += 1
            busy.append(b.push("f0", v, k=v + 1, expected=n, acks=n))
            time.sleep(0.2)
        r1, c1, t1 = b.server.call("telemetry_records"), b.cpu(), time.monotonic()
        rss1 = b.rss()
        sent = sum(call_all(b.gens, "telemetry_stop"))
        stats = b.stats(1)
        return {
            "records_per_s": (r1 - r0) / (t1 - t0), "records": r1 - r0, "sent": sent,
            "cpu_busy": (c1 - c0) / (t1 - t0), "cpu_idle": idle_cpu,
            "rss_growth": rss1 - rss0,
            "push_quiet_s": med([p["acked_s"] for p in quiet]),
            "push_busy_s": med([p["acked_s"] for p in busy]),
            "pushes_busy": len(busy), "pushes_complete": all(p["complete"] for p in busy),
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
        "push_ratio": ratio(xds["push_busy_s"], xds["push_quiet_s"]),
        "added_cpu": xds["cpu_busy"] - xds["cpu_idle"],
        "added_rss": xds["rss_growth"],
    }


def telemetry_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["N", "entries/s bare", "xds", "ratio", "push quiet s", "push w/ telemetry s", "ratio",
            "server CPU (cores) idle", "busy", "RSS growth MiB"]
    x, b = res["xds"], res["bare"]
    return head, [[res["n"], b["records_per_s"], x["records_per_s"], res["ingest_ratio"],
                   x["push_quiet_s"], x["push_busy_s"], res["push_ratio"], x["cpu_idle"],
                   x["cpu_busy"], x["rss_growth"] / 2**20]]
