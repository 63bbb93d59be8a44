"""`python -m benchmarks [--quick] [--only a,b]`: run the scenarios, print tables, write JSON."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _devloop, _preflight, _real, _replicas, _scenarios, _status_page, _telemetry
from benchmarks._harness import ratio
from benchmarks._proc import raise_fd_limit

RESULTS = Path(__file__).parent / "results"

FULL = {"sizes": [1000, 5000, 10000], "pushes": 3, "inline": [1000, 5000], "proxies": 1000,
        "slow_n": 1000, "slow_pushes": 10, "swaps": 100, "oci_repeats": 5, "loops_n": 2000,
        "replicas_n": 10000, "telemetry_n": 1000, "edits": 5, "page_n": 10000,
        "preflight_checks": 20}
QUICK = {"sizes": [500, 1000], "pushes": 2, "inline": [200], "proxies": 400,
         "slow_n": 200, "slow_pushes": 4, "swaps": 20, "oci_repeats": 2, "loops_n": 500,
         "replicas_n": 600, "telemetry_n": 300, "edits": 2, "page_n": 1000,
         "preflight_checks": 5}


def machine() -> dict[str, Any]:
    import grpc

    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        nproc = 0
    try:
        import uvloop

        uv = getattr(uvloop, "__version__", None)
    except ImportError:
        uv = None
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    return {"nproc": nproc, "cpu": model, "mem_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "grpcio": grpc.__version__, "uvloop": uv,
            "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(title: str, head: list[str], rows: list[list[Any]]) -> str:
    cells = [head, *[[fmt(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = [f"\n== {title}"]
    for j, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def scenarios(p: dict[str, Any]) -> dict[str, tuple[Callable[[], dict[str, Any]], Callable[..., Any]]]:
    return {
        "fleet": (lambda: _scenarios.fleet(p["sizes"], p["pushes"]), _scenarios.fleet_table),
        "inline_1mib": (lambda: _scenarios.inline_1mib(p["inline"]), _scenarios.inline_table),
        "one_of_100": (lambda: _scenarios.one_of_many(p["proxies"], 100, 5, 20),
                       _scenarios.one_of_many_table),
        "slow_consumers": (lambda: _scenarios.slow_consumers(p["slow_n"], p["slow_pushes"]),
                           _scenarios.slow_table),
        "envoy_swap": (lambda: _real.envoy_swaps(p["swaps"]), _real.envoy_table),
        "oci": (lambda: _real.oci(repeats=p["oci_repeats"]), _real.oci_table),
        "event_loop": (lambda: _scenarios.event_loops(p["loops_n"], p["pushes"]),
                       _scenarios.loops_table),
        "replicas": (lambda: _replicas.replicas(p["replicas_n"]), _replicas.replicas_table),
        "telemetry": (lambda: _telemetry.telemetry(p["telemetry_n"]), _telemetry.telemetry_table),
        "edit_to_live": (lambda: _devloop.edit_to_live(p["edits"]), _devloop.edit_to_live_table),
        "status_page": (lambda: _status_page.status_page(p["page_n"]), _status_page.status_page_table),
        "preflight": (lambda: _preflight.preflight(p["preflight_checks"]), _preflight.preflight_table),
    }


def _get(results: dict[str, Any], name: str, fn: Callable[[dict[str, Any]], Any]) -> Any:
    try:
        return fn(results[name])
    except (KeyError, TypeError, IndexError, ValueError, StopIteration):
        return None


def summary(results: dict[str, Any]) -> list[list[Any]]:
    def fleet_row(n: int | None = None) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def pick(r: dict[str, Any]) -> dict[str, Any]:
            rows = r["rows"]
            return next(x for x in rows if x["n"] == n) if n else rows[-1]
        return pick

    top = _get(results, "fleet", fleet_row())
    five = _get(results, "fleet", fleet_row(5000))
    big = _get(results, "inline_1mib", lambda r: r["rows"][-1])
    env = results.get("envoy_swap")
    oci = results.get("oci")
    one = results.get("one_of_100")
    slow = results.get("slow_consumers")
    reps = results.get("replicas")
    tel = results.get("telemetry")
    dev = results.get("edit_to_live")
    page = results.get("status_page")
    rows: list[list[Any]] = []

    def add(what: str, target: str, value: Any, floor: Any, ok: bool | None) -> None:
        rows.append([what, target, value, floor, ok])

    if top:
        n = top["n"]
        add(f"small push to {n}, all ACKed", "<= 1.5x bare",
            f"{fmt(top['xds']['acked_s'])} s = {fmt(top['acked_ratio'])}x",
            f"{fmt(top['bare']['acked_s'])} s", top["acked_ratio"] is not None and top["acked_ratio"] <= 1.5)
        cpu, bare_cpu = top["xds"]["cpu_per_proxy_us"], top["bare"]["cpu_per_proxy_us"]
        cpu_ratio = ratio(cpu, bare_cpu)
        add(f"server CPU per proxy per push (N={n})", "<= 1.15x bare",
            f"{fmt(cpu)} us = {fmt(cpu_ratio)}x", f"{fmt(bare_cpu)} us",
            cpu_ratio is not None and cpu_ratio <= 1.15)
        rss = top["xds"]["rss_per_proxy"] / 1024
        add(f"server RSS per connected proxy (N={n})", "<= 64 KiB", f"{fmt(rss)} KiB",
            f"{fmt(top['bare']['rss_per_proxy'] / 1024)} KiB", rss <= 64)
    if top:
        est_ratio = top.get("establish_ratio")
        add(f"{top['n']:,} streams established at once", "<= 1.2x bare",
            f"{fmt(top['xds']['establish_s'])} s = {fmt(est_ratio)}x", f"{fmt(top['bare']['establish_s'])} s",
            est_ratio is not None and est_ratio <= 1.2 and top["xds"]["establish_complete"])
    if five:
        est = five["xds"]["establish_s"]
        add("5,000 new streams at once", "<= 3 s", f"{fmt(est)} s = {fmt(five['establish_ratio'])}x",
            f"{fmt(five['bare']['establish_s'])} s", est <= 3 and five["xds"]["establish_complete"])
    if big:
        t, g = big["xds"]["run"]["acked_s"], big["xds"]["run"]["peak_rss_growth"] / 2**20
        add(f"1 MiB inline to {big['n']}", "<= 10 s, RSS +<= 500 MiB",
            f"{fmt(t)} s = {fmt(big['acked_ratio'])}x, +{fmt(g)} MiB",
            f"{fmt(big['bare']['run']['acked_s'])} s, +{fmt(big['bare']['run']['peak_rss_growth'] / 2**20)} MiB",
            t is not None and t <= 10 and g <= 500)
    if one:
        add("change 1 filter of 100 (1000 proxies x 5)", "<= 1.2x that filter alone",
            f"time {fmt(one['time_ratio'])}x, CPU {fmt(one['cpu_ratio'])}x; others pushed: "
            f"{one['many']['non_subscribers_pushed']}", "-",
            (one["time_ratio"] or 9) <= 1.2 and one["many"]["non_subscribers_pushed"] == 0)
    if slow:
        add(f"5% slow consumers (N={slow['n']})", "others on time, memory bounded",
            f"{fmt(slow['ratio'])}x baseline, RSS +{fmt(slow['rss_growth_max'] / 2**20)} MiB",
            f"{fmt(slow['baseline_acked_s'])} s", slow["all_complete"])
    if env:
        add(f"real Envoy swap ({env['swaps']} swaps), durable before pushed", "p50 <= 10 ms, p99 <= 20 ms",
            f"p50 {fmt(env['p50_ms'])} ms, p99 {fmt(env['p99_ms'])} ms",
            f"deploy() returns: p50 {fmt(env.get('deploy_call_p50_ms'))} ms",
            env["p50_ms"] is not None and env["p50_ms"] <= 10 and env["p99_ms"] <= 20 and not env["missed"])
    if oci:
        ref = oci.get("cold_vs_reference")
        add("cold OCI pull of 5 MiB", "<= 1.5x plain GET + validation",
            f"{fmt(oci['cold_median_s'])} s = {fmt(ref)}x ({fmt(oci['cold_ratio'])}x the GET alone)",
            f"{fmt(oci.get('reference_s'))} s (GET {fmt(oci['plain_median_s'])} s)",
            ref is not None and ref <= 1.5)
        add("cached reference resolve", "<= 1 ms", f"p50 {fmt(oci['cached_median_ms'])} ms, "
            f"p99 {fmt(oci['cached_p99_ms'])} ms", "-", oci["cached_median_ms"] <= 1)
    if reps:
        t, one_r = reps["three"], reps["single"]
        add(f"convergence, 3 replicas on PostgreSQL (N={t['n']})", "reported (issue 8)",
            f"{fmt(t['converged_s'])} s = {fmt(reps['ratio'])}x one replica",
            f"{fmt(one_r['converged_s'])} s (1 replica, SQLite)", None)
    if tel:
        add(f"telemetry ingestion (N={tel['n']}, access-log entries/s)", ">= 0.7x bare OTLP sink",
            f"{fmt(tel['xds']['records_per_s'])}/s = {fmt(tel['ingest_ratio'])}x (median of "
            f"{tel.get('rounds', 1)} alternating rounds, {tel.get('loop', '?')} for both); +{fmt(tel['added_cpu'])} "
            f"cores, +{fmt(tel['added_rss'] / 2**20)} MiB",
            f"{fmt(tel['bare']['records_per_s'])}/s", (tel["ingest_ratio"] or 0) >= 0.7)
        add(f"config push, telemetry flowing at Envoy's pace (N={tel['n']}, 1 export/s each)",
            "<= 1.2x without", f"{fmt(tel['xds']['push_paced_s'])} s = {fmt(tel['push_ratio'])}x "
            f"(saturated: {fmt(tel['push_ratio_saturated'])}x)",
            f"{fmt(tel['xds']['push_quiet_s'])} s without", (tel["push_ratio"] or 9) <= 1.2)
    for t in (dev or {}).get("templates", []):
        add(f"edit-to-live, {t['language']} template (issue 14)", "reported",
            f"{fmt(t['edit_to_live_s_p50'])} s = build {fmt(t['build_s_p50'])} + validate "
            f"{fmt(t['validate_s_p50'])} + deploy+swap {fmt(t['deploy_swap_s_p50'])}", "-", None)
    if page:
        new, old = page["after"], page["before"]
        add(f"status page, first paint of the summary (N={page['n']})", "<= 1 s",
            f"{fmt(new['first_paint_s'])} s", f"{fmt(old['first_paint_s'])} s (full table)",
            new["first_paint_s"] <= 1)
        add(f"status page, all ACKed after the last ACK (N={page['n']})", "<= 1 s",
            f"{fmt(new['lag_after_last_ack_s'])} s", f"{fmt(old['lag_after_last_ack_s'])} s (full refetch)",
            new["lag_after_last_ack_s"] <= 1)
        add(f"status page, bytes received during a rollout (N={page['n']})", "less than full refetch",
            f"{new['rollout_bytes'] / 2**20:.2f} MiB", f"{old['rollout_bytes'] / 2**20:.2f} MiB (full refetch)",
            new["rollout_bytes"] < old["rollout_bytes"])
    pre = results.get("preflight")
    if pre:
        add(f"preflight dry run of new content ({pre['requests']} requests)", "<= 1 s p99",
            f"{fmt(pre['warm_p50_ms'])} ms p50, {fmt(pre['warm_p99_ms'])} ms p99; cold {fmt(pre['cold_s'])} s",
            f"sandbox Envoy {fmt(pre['envoy_rss_mib'])} MiB", pre["warm_p99_ms"] <= 1000)
    return rows


SUMMARY_HEAD = ["what", "target", "xds-server", "bare floor / reference", "met"]


def markdown(rows: list[list[Any]], info: dict[str, Any]) -> str:
    out = ["| " + " | ".join(SUMMARY_HEAD) + " |", "|" + "---|" * len(SUMMARY_HEAD)]
    out += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    out.append("")
    out.append(f"Machine: {info['nproc']} cores ({info['cpu']}), {info['mem_gib']} GiB, "
               f"Python {info['python']}, grpcio {info['grpcio']}, {info['date']}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small N everywhere (about 2 minutes)")
    ap.add_argument("--only", default="", help="comma-separated scenarios: " + ", ".join(scenarios(FULL)))
    ap.add_argument("--sizes", default="", help="fleet sizes, e.g. 1000,5000,10000")
    ap.add_argument("--summary", action="store_true",
                    help="only rebuild summary.json/summary.md from results/*.json")
    ap.add_argument("--inline", default="", help="1 MiB scenario sizes, e.g. 1000,5000")
    args = ap.parse_args(argv)
    if args.summary:
        found = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")
                 if p.stem not in ("summary",)}
        found = {k: v for k, v in found.items() if "error" not in v}
        info = next(iter(found.values()))["machine"]
        rows = summary(found)
        print(table("summary", SUMMARY_HEAD, rows))
        (RESULTS / "summary.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1, default=str))
        (RESULTS / "summary.md").write_text(markdown(rows, info) + "\n")
        return 0
    raise_fd_limit()
    from xds_server.log import configure_logging

    configure_logging("warning", "json")
    params = dict(QUICK if args.quick else FULL)
    if args.inline:
        params["inline"] = [int(x) for x in args.inline.split(",")]
    if args.sizes:
        params["sizes"] = [int(x) for x in args.sizes.split(",")]
    chosen = scenarios(params)
    names = [n for n in args.only.split(",") if n] or list(chosen)
    RESULTS.mkdir(exist_ok=True)
    info = machine()
    print(f"machine: {info}", flush=True)
    results: dict[str, Any] = {}
    for name in names:
        run, render = chosen[name]
        t0 = time.monotonic()
        print(f"\n... {name}", flush=True)
        try:
            res = run()
        except Exception as exc:  # one failed scenario must not lose the others
            import traceback

            traceback.print_exc()
            res = {"error": repr(exc)}
        res["wall_s"] = time.monotonic() - t0
        res["machine"] = info
        res["params"] = params
        results[name] = res
        (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
        if "error" not in res:
            print(table(f"{name} ({res['wall_s']:.0f} s)", *render(res)), flush=True)
    rows = summary(results)
    print(table("summary", SUMMARY_HEAD, rows))
    if not args.only:
        (RESULTS / "summary.json").write_text(json.dumps(
            {"machine": info, "params": params, "quick": args.quick, "rows": rows}, indent=1, default=str))
        (RESULTS / "summary.md").write_text(markdown(rows, info) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
