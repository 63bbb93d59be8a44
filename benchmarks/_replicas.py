"""Issue 8: convergence across replicas. A change accepted by replica 1 -> every proxy of
the fleet (spread over 3 replicas sharing PostgreSQL) received it. Baseline in the same
run: one replica on SQLite with the whole fleet."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from benchmarks._harness import med, ratio
from benchmarks._proc import Worker, call_all, now

FIXED1 = {"kind": "fixed", "names": ["f0"]}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _module(tmp: Path, tag: str) -> Path:
    from tests.fixtures.wasm_filters import header_filter

    p = tmp / f"{tag}.wasm"
    p.write_bytes(header_filter("x-bench", tag))
    return p


class _Replica:
    def __init__(self, name: str, tmp: Path, database_url: str, module: Path) -> None:
        self.name, self.xds, self.admin = name, _free_port(), _free_port()
        cfg = {"server": {"xds_address": f"127.0.0.1:{self.xds}", "admin_address": f"127.0.0.1:{self.admin}",
                          "data_dir": str(tmp / f"data-{name}"), "database_url": database_url,
                          "replica_id": name, "log_level": "warning", "watch_config": False,
                          "limits": {"requests_per_second": 1000, "request_burst": 1000}},
               "filters": [{"name": "f0", "source": {"file": str(module)}}]}
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self.proc = subprocess.Popen([sys.executable, "-m", "xds_server", "serve", "--config", str(path),
                                      "--log-format", "json"], stdout=subprocess.DEVNULL,
                                     stderr=open(tmp / f"{name}.log", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"replica {name} did not start") from None
                time.sleep(0.2)

    def put(self, module: Path) -> float:
        body = json.dumps({"source": {"file": str(module)}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/api/v1/filters/f0", data=body,
                                     method="PUT", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
        return now()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _run(n: int, pushes: int, database_url: str, count: int, tmp: Path) -> dict[str, Any]:
    v0 = _module(tmp, "v0")
    replicas = [_Replica(f"r{i + 1}", tmp, database_url, v0) for i in range(count)]
    gens = [Worker("benchmarks._fleet.FleetWorker") for _ in range(max(1, math.ceil(n / 5000)))]
    try:
        per = n // len(gens)
        offset = 0
        for gi, g in enumerate(gens):
            # spread each generator's clients over the replicas, one connect call per replica
            share = per + (n - per * len(gens) if gi == len(gens) - 1 else 0)
            chunk = share // count
            for ri, r in enumerate(replicas):
                k = chunk + (share - chunk * count if ri == count - 1 else 0)
                g.call("connect", target=f"127.0.0.1:{r.xds}", n=k, offset=offset, sub=FIXED1, modes=[0, 1, 2, 3])
                offset += k

        def reached(k: int) -> tuple[int, float]:
            parts = call_all(gens, "stats", k=k)
            return sum(p["n"] for p in parts), max(p["last"] for p in parts)

        deadline = time.monotonic() + 300
        while reached(1)[0] < n and time.monotonic() < deadline:
            time.sleep(0.1)
        runs = []
        for v in range(1, pushes + 1):
            t0 = replicas[0].put(_module(tmp, f"v{v}"))
            deadline = time.monotonic() + 120
            while True:
                got, last = reached(v + 1)
                if got >= n or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            runs.append({"received": got, "converged_s": last - t0 if got >= n else None})
        return {"n": n, "replicas": count, "runs": runs,
                "converged_s": med([r["converged_s"] for r in runs])}
    finally:
        for g in gens:
            g.close()
        for r in replicas:
            r.stop()


def replicas(n: int, pushes: int = 3) -> dict[str, Any]:
    """Convergence with 3 PostgreSQL replicas vs one SQLite replica, same fleet size."""
    from tests.fixtures.postgres import PostgresServer

    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2, PostgresServer.start() as pg:
        url = pg.create_database("bench")
        single = _run(n, pushes, f"sqlite:///{Path(d1) / 'state.db'}", 1, Path(d1))
        three = _run(n, pushes, url, 3, Path(d2))
    return {"single": single, "three": three, "ratio": ratio(three["converged_s"], single["converged_s"])}


def replicas_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    head = ["setup", "proxies", "change accepted -> all received (median s)", "ratio"]
    s, t = res["single"], res["three"]
    return head, [["1 replica, SQLite", s["n"], s["converged_s"], 1.0],
                  ["3 replicas, PostgreSQL", t["n"], t["converged_s"], res["ratio"]]]
