"""Telemetry ingestion: access-log entries per second the server absorbs from N simulated
proxies (each on its own connection, also holding an xDS stream) while it pushes
configs, against a bare grpc.aio OTLP sink in the same run; and config pushes to those
proxies without telemetry, with Envoy-paced telemetry (one export of `batch` entries per
proxy per second, the generated bootstrap's flush interval) and with the server
saturated by telemetry; then saturated again with no pushes, which separates the cost
of the ACKs the pushes bring (5,000/s at 1,000 proxies) from the cost of ingestion.

Fairness: the bare sink and the server are measured in alternating rounds of one run
(bare, xds; then xds, bare; ...), both on the same event loop (xds-server's shipped one:
uvloop when installed) and the same gRPC server options (`_servers._options()`); the
ratio reported is the median of the rounds' ratios, each round's figures and the
machine's load average at its start are kept."""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks._harness import Bench, med, ratio
from benchmarks._proc import call_all
from benchmarks._scenarios import _shipped_loop

FIXED3 = {"kind": "fixed", "names": ["f0", "f1", "f2"]}


def _phase(b: Bench, n: int, v: int, *, seconds: float, batch: int,
           interval: float, push: bool = True) -> tuple[int, dict[str, Any]]:
    """Telemetry flowing for `seconds` while configs are pushed (every 0.2 s to all `n`,
    unless not `push`); what the server absorbed."""
    call_all(b.gens, "telemetry_start", batch=batch, interval=interval)
    time.sleep(1.0 + interval)  # warm up: every client has sent
    r0, c0, t0, rss0 = b.server.call("telemetry_records"), b.cpu(), time.monotonic(), b.rss()
    pushes = []
    while time.monotonic() - t0 < seconds:
        if not push:
            time.sleep(0.2)
            continue
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


def _run(kind: str, n: int, *, seconds: float, batch: int, pushes: int,
         loop: str) -> dict[str, Any]:
    b = Bench(kind, n=n, generators=2, telemetry=True, loop=loop)
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
        v, no_push = _phase(b, n, v, seconds=seconds, batch=batch, interval=0.0, push=False)
        stats = b.stats(1)
        return {
            "records_per_s": saturated["records_per_s"], "cpu_idle": idle_cpu,
            "cpu_paced": paced["cpu"], "cpu_saturated": saturated["cpu"],
            "rss_growth": b.rss() - rss0, "push_quiet_s": med([p["acked_s"] for p in quiet]),
            "push_paced_s": paced["push_s"], "push_saturated_s": saturated["push_s"],
            "records_per_s_no_push": no_push["records_per_s"], "cpu_no_push": no_push["cpu"],
            "paced": paced, "saturated": saturated, "no_push": no_push,
            "errors": stats["errors"], "error_samples": stats["error_samples"],
        }
    finally:
        b.close()


def telemetry(n: int, *, seconds: float = 5.0, batch: int = 20, pushes: int = 2,
              rounds: int = 4, loop: str | None = None) -> dict[str, Any]:
    """Bare sink and server in `rounds` alternating rounds on the same `loop` (default:
    the one `xds-server serve` runs) and the same options."""
    loop = loop or _shipped_loop("xds")
    runs = []
    for i in range(rounds):
        load = os.getloadavg()[0]
        order = ("bare", "xds") if i % 2 == 0 else ("xds", "bare")
        got = {k: _run(k, n, seconds=seconds, batch=batch, pushes=pushes, loop=loop) for k in order}
        bare, xds = got["bare"], got["xds"]
        runs.append({
            "order": list(order), "load1": load, "load1_end": os.getloadavg()[0],
            "bare_records_per_s": bare["records_per_s"], "xds_records_per_s": xds["records_per_s"],
            "ingest_ratio": ratio(xds["records_per_s"], bare["records_per_s"]),
            "ingest_ratio_no_push": ratio(xds["records_per_s_no_push"], bare["records_per_s_no_push"]),
            "bare_cpu_per_record_us": _per_record_us(bare), "xds_cpu_per_record_us": _per_record_us(xds),
            "push_ratio": ratio(xds["push_paced_s"], xds["push_quiet_s"]),
            "push_ratio_saturated": ratio(xds["push_saturated_s"], xds["push_quiet_s"]),
            "bare": bare, "xds": xds,
        })
    last = runs[-1]
    bare_m = {k: med([r["bare"][k] for r in runs]) for k in ("records_per_s",)}
    xds_m = {k: med([r["xds"][k] for r in runs]) for k in (
        "records_per_s", "cpu_idle", "cpu_paced", "cpu_saturated", "rss_growth",
        "push_quiet_s", "push_paced_s", "push_saturated_s")}
    return {
        "n": n, "batch": batch, "loop": loop, "rounds": rounds,
        "grpc_options": "benchmarks._servers._options() for both",
        "bare": {**last["bare"], **bare_m}, "xds": {**last["xds"], **xds_m},
        "ingest_ratio": med([r["ingest_ratio"] for r in runs]),
        "ingest_ratios": [r["ingest_ratio"] for r in runs],
        "ingest_ratio_no_push": med([r["ingest_ratio_no_push"] for r in runs]),
        "ingest_ratios_no_push": [r["ingest_ratio_no_push"] for r in runs],
        "push_ratio": med([r["push_ratio"] for r in runs]),
        "push_ratio_saturated": med([r["push_ratio_saturated"] for r in runs]),
        "added_cpu_paced": med([r["xds"]["cpu_paced"] - r["xds"]["cpu_idle"] for r in runs]),
        "added_cpu": med([r["xds"]["cpu_saturated"] - r["xds"]["cpu_idle"] for r in runs]),
        "added_rss": med([r["xds"]["rss_growth"] for r in runs]),
        "cpu_per_record_us": {"bare": med([r["bare_cpu_per_record_us"] for r in runs]),
                              "xds": med([r["xds_cpu_per_record_us"] for r in runs])},
        "runs": runs,
    }


def _per_record_us(r: dict[str, Any]) -> float | None:
    rate = r["records_per_s"]
    return (r["cpu_saturated"] / rate * 1e6) if rate else None


def telemetry_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["round", "load1", "entries/s bare", "xds", "ratio", "no push", "CPU us/entry bare", "xds",
            "push quiet s", "paced s", "ratio", "saturated s", "ratio", "CPU cores idle", "paced",
            "saturated", "RSS growth MiB"]
    rows = []
    for i, r in enumerate(res.get("runs", [])):
        x = r["xds"]
        rows.append([f"{i + 1} ({'/'.join(r['order'])})", r["load1"], r["bare_records_per_s"],
                     r["xds_records_per_s"], r["ingest_ratio"], r["ingest_ratio_no_push"],
                     r["bare_cpu_per_record_us"],
                     r["xds_cpu_per_record_us"], x["push_quiet_s"], x["push_paced_s"], r["push_ratio"],
                     x["push_saturated_s"], r["push_ratio_saturated"], x["cpu_idle"], x["cpu_paced"],
                     x["cpu_saturated"], x["rss_growth"] / 2**20])
    x, b, per = res["xds"], res["bare"], res.get("cpu_per_record_us", {})
    rows.append(["median", None, b["records_per_s"], x["records_per_s"], res["ingest_ratio"],
                 res["ingest_ratio_no_push"], per.get("bare"), per.get("xds"), x["push_quiet_s"], x["push_paced_s"],
                 res["push_ratio"], x["push_saturated_s"], res["push_ratio_saturated"],
                 x["cpu_idle"], x["cpu_paced"], x["cpu_saturated"], x["rss_growth"] / 2**20])
    return head, rows
