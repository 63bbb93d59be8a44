"""Scenarios 1-5 and the event-loop comparison: a fleet against xds-server and the bare floor."""

from __future__ import annotations

import time
from typing import Any

from benchmarks._harness import Bench, med, ratio
from benchmarks._resources import INLINE_1M, MEDIUM

FIXED3 = {"kind": "fixed", "names": ["f0", "f1", "f2"]}
FIXED1 = {"kind": "fixed", "names": ["f0"]}


def _shipped_loop(kind: str) -> str:
    """xds-server as `xds-server serve` runs it (uvloop when installed); the bare floor on
    grpc.aio's default asyncio loop, as the issue defines it."""
    if kind == "bare":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _fleet_run(kind: str, n: int, pushes: int, *, profile: bool = False,
               loop: str | None = None) -> dict[str, Any]:
    b = Bench(kind, n=n, loop=loop or _shipped_loop(kind))
    try:
        b.set(["f0", "f1", "f2"], 0)
        time.sleep(0.2)
        rss0 = b.rss()
        est = b.connect(n, FIXED3)
        time.sleep(0.5)
        rss1 = b.rss()
        runs = [b.push("f0", v, k=v + 1, expected=n, acks=n) for v in range(1, pushes + 1)]
        out: dict[str, Any] = {
            "establish_s": est["seconds"], "establish_complete": est["complete"],
            "establish_errors": est["errors"], "error_samples": est["error_samples"],
            "rss_per_proxy": (rss1 - rss0) / n, "rss_idle": rss0, "rss_connected": rss1,
            "generators": len(b.gens), "pushes": runs,
            "received_s": med([r["received_s"] for r in runs]),
            "acked_s": med([r["acked_s"] for r in runs]),
            "cpu_per_proxy_us": med([r["cpu_s"] / n * 1e6 for r in runs]),
        }
        if profile:
            v = pushes + 1
            run, text = b.profile(lambda: b.push("f0", v, k=v + 1, expected=n, acks=n))
            out["profile_push"] = run
            out["profile"] = text
        return out
    finally:
        b.close()


def fleet(sizes: list[int], pushes: int) -> dict[str, Any]:
    """Scenarios 1 and 2: a reconnect storm of N streams, then small-config pushes."""
    rows = []
    for n in sizes:
        bare = _fleet_run("bare", n, pushes)
        xds = _fleet_run("xds", n, pushes, profile=n == max(sizes))
        rows.append({
            "n": n, "bare": bare, "xds": xds,
            "establish_ratio": ratio(xds["establish_s"], bare["establish_s"]),
            "received_ratio": ratio(xds["received_s"], bare["received_s"]),
            "acked_ratio": ratio(xds["acked_s"], bare["acked_s"]),
        })
    return {"rows": rows}


def fleet_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["N", "establish bare s", "xds s", "ratio", "push all-ACK bare s", "xds s", "ratio",
            "CPU/proxy/push bare us", "xds us", "RSS/proxy bare KiB", "xds KiB"]
    rows = [[r["n"], r["bare"]["establish_s"], r["xds"]["establish_s"], r["establish_ratio"],
             r["bare"]["acked_s"], r["xds"]["acked_s"], r["acked_ratio"],
             r["bare"]["cpu_per_proxy_us"], r["xds"]["cpu_per_proxy_us"],
             r["bare"]["rss_per_proxy"] / 1024, r["xds"]["rss_per_proxy"] / 1024] for r in res["rows"]]
    return head, rows


def event_loops(n: int, pushes: int) -> dict[str, Any]:
    """The same fleet run with the server on asyncio's loop and on uvloop."""
    out: dict[str, Any] = {"n": n}
    for loop in ("asyncio", "uvloop"):
        try:
            out[loop] = {k: _fleet_run(k, n, pushes, loop=loop) for k in ("bare", "xds")}
        except Exception as exc:  # uvloop missing
            out[loop] = {"error": str(exc)}
    return out


def loops_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["loop", "server", "establish s", "push all-ACK s", "CPU/proxy/push us"]
    rows = []
    for loop in ("asyncio", "uvloop"):
        for k in ("bare", "xds"):
            r = res[loop].get(k)
            if r:
                rows.append([loop, k, r["establish_s"], r["acked_s"], r["cpu_per_proxy_us"]])
    return head, rows


def inline_1mib(sizes: list[int]) -> dict[str, Any]:
    """Scenario 3: a 1 MiB inline module to N clients; time and peak RSS growth."""
    rows = []
    for n in sizes:
        row: dict[str, Any] = {"n": n}
        for kind in ("bare", "xds"):
            # ~2 MiB of client-side buffers per 1 MiB stream: one generator per 1,000 clients
            b = Bench(kind, n=n, write_slots=128, generators=max(1, -(-n // 1000)))
            try:
                b.set(["f0"], 0, INLINE_1M)
                est = b.connect(n, FIXED1, timeout=300)
                warm = b.push("f0", 1, k=2, expected=n, acks=n, kind=INLINE_1M, timeout=300)
                run = b.push("f0", 2, k=3, expected=n, acks=n, kind=INLINE_1M, timeout=300, peak=True)
                row[kind] = {"establish": est["seconds"], "warmup": warm, "run": run}
            finally:
                b.close()
        row["acked_ratio"] = ratio(row["xds"]["run"]["acked_s"], row["bare"]["run"]["acked_s"])
        rows.append(row)
    return {"rows": rows, "write_slots": 128}


def inline_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["N", "bare all-ACK s", "xds all-ACK s", "ratio", "bare peak RSS +MiB", "xds peak RSS +MiB"]
    rows = [[r["n"], r["bare"]["run"]["acked_s"], r["xds"]["run"]["acked_s"], r["acked_ratio"],
             r["bare"]["run"]["peak_rss_growth"] / 2**20, r["xds"]["run"]["peak_rss_growth"] / 2**20]
            for r in res["rows"]]
    return head, rows


def one_of_many(proxies: int, filters: int, per: int, pushes: int) -> dict[str, Any]:
    """Scenario 4: a change to one filter among many costs only its subscribers."""
    target = "f7"
    out: dict[str, Any] = {"proxies": proxies, "filters": filters, "per_proxy": per}
    # A: the full fleet.
    b = Bench("xds", n=proxies)
    try:
        b.set([f"f{i}" for i in range(filters)], 0)
        sub = {"kind": "spread", "filters": filters, "per": per}
        b.connect(proxies, sub)
        from benchmarks._fleet import subscriptions

        subscribers = sum(1 for i in range(proxies) if target in subscriptions(sub, i))
        runs = [b.push(target, v, k=v + 1, expected=subscribers, acks=subscribers)
                for v in range(1, pushes + 1)]
        counts = b.counts()
        others = sum(1 for i, c in counts.items() if target not in subscriptions(sub, i) and c != 1)
        out["many"] = {"subscribers": subscribers, "runs": runs, "non_subscribers_pushed": others,
                       "acked_s": med([r["acked_s"] for r in runs]),
                       "cpu_s": sum(r["cpu_s"] for r in runs)}
    finally:
        b.close()
    # B: that filter alone, to its subscribers only.
    b = Bench("xds", n=subscribers)
    try:
        b.set([target], 0)
        b.connect(subscribers, {"kind": "fixed", "names": [target]})
        runs = [b.push(target, v, k=v + 1, expected=subscribers, acks=subscribers)
                for v in range(1, pushes + 1)]
        out["alone"] = {"subscribers": subscribers, "runs": runs,
                        "acked_s": med([r["acked_s"] for r in runs]),
                        "cpu_s": sum(r["cpu_s"] for r in runs)}
    finally:
        b.close()
    out["time_ratio"] = ratio(out["many"]["acked_s"], out["alone"]["acked_s"])
    out["cpu_ratio"] = ratio(out["many"]["cpu_s"], out["alone"]["cpu_s"])
    return out


def one_of_many_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["setup", "subscribers", "median all-ACK s", "server CPU s (all pushes)", "others pushed"]
    m, a = res["many"], res["alone"]
    rows = [[f"{res['filters']} filters x {res['proxies']} proxies x {res['per_proxy']} subs",
             m["subscribers"], m["acked_s"], m["cpu_s"], m["non_subscribers_pushed"]],
            ["the filter alone", a["subscribers"], a["acked_s"], a["cpu_s"], 0],
            ["ratio", "", res["time_ratio"], res["cpu_ratio"], ""]]
    return head, rows


def slow_consumers(n: int, pushes: int, slow_every: int = 20) -> dict[str, Any]:
    """Scenario 5: 1 in `slow_every` clients stop reading; the others must still be served."""
    b = Bench("xds", n=n)
    try:
        b.set(["f0"], 0, MEDIUM)
        b.connect(n, FIXED1)
        base = [b.push("f0", v, k=v + 1, expected=n, acks=n, kind=MEDIUM) for v in (1, 2, 3)]
        rss_before = b.rss()
        call = b.gens
        for g in call:
            g.call("stall", every=slow_every)
        slow = len(range(0, n, slow_every))
        fast = n - slow
        # The slow clients read one more response, then stop reading.
        runs = [b.push("f0", 4, k=5, expected=n, acks=fast, kind=MEDIUM)]
        rss = [b.rss()]
        for v in range(5, 5 + pushes):
            runs.append(b.push("f0", v, k=v + 1, expected=fast, acks=fast, kind=MEDIUM))
            rss.append(b.rss())
        streams = b.server.call("streams")
        return {
            "n": n, "slow": slow, "fast": fast, "baseline": base, "runs": runs,
            "baseline_acked_s": med([r["acked_s"] for r in base]),
            "slow_phase_acked_s": med([r["acked_s"] for r in runs[1:]]),
            "max_acked_s": max((r["acked_s"] or 0.0) for r in runs[1:]),
            "all_complete": all(r["complete"] for r in runs),
            "rss_before": rss_before, "rss_growth_max": max(rss) - rss_before,
            "rss_growth_last": rss[-1] - rss_before, "rss_series": rss, "open_streams": streams,
            "payload_bytes": 256 * 2**10,
        } | {"ratio": ratio(med([r["acked_s"] for r in runs[1:]]), med([r["acked_s"] for r in base]))}
    finally:
        b.close()


def slow_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["N", "slow", "baseline all-ACK s", "with slow: median s", "max s", "ratio",
            "all served", "RSS growth max MiB", "last MiB"]
    return head, [[res["n"], res["slow"], res["baseline_acked_s"], res["slow_phase_acked_s"],
                   res["max_acked_s"], res["ratio"], res["all_complete"],
                   res["rss_growth_max"] / 2**20, res["rss_growth_last"] / 2**20]]
