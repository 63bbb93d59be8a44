"""A server process (xds-server or bare) plus load-generator processes, driven from here."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from benchmarks._proc import Worker, call_all, cpu_seconds, now, reset_peak_rss, rss_bytes
from benchmarks._resources import SMALL

SERVER_FACTORY = {"xds": "benchmarks._servers.XdsServerWorker",
                  "bare": "benchmarks._servers.BareServerWorker"}
CLIENTS_PER_GENERATOR = 5000


class Bench:
    """One server of `kind` and ceil(n / 5000) fleet processes (or `generators`)."""

    def __init__(self, kind: str, *, n: int, loop: str = "asyncio", generators: int = 0,
                 write_slots: int | None = None, telemetry: bool = False) -> None:
        self.kind = kind
        self.server = Worker(SERVER_FACTORY[kind], loop=loop)
        self.port = self.server.call("start", write_slots=write_slots, telemetry=telemetry)
        count = generators or max(1, math.ceil(n / CLIENTS_PER_GENERATOR))
        self.gens = [Worker("benchmarks._fleet.FleetWorker") for _ in range(count)]
        self.n = 0

    @property
    def pid(self) -> int:
        return self.server.pid  # type: ignore[return-value]

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def set(self, names: list[str], version: int = 0, kind: str = SMALL) -> None:
        self.server.call("set", names=names, version=version, kind=kind)

    def connect(self, n: int, sub: dict[str, Any], modes: tuple[int, ...] = (0, 1, 2, 3),
                timeout: float = 120.0) -> dict[str, Any]:
        """Open `n` clients at once (a reconnect storm); wait until each has its first response."""
        per = [n // len(self.gens) + (1 if i < n % len(self.gens) else 0) for i in range(len(self.gens))]
        offset = 0
        for gen, count in zip(self.gens, per, strict=True):
            gen.send("connect", target=f"127.0.0.1:{self.port}", n=count, offset=offset,
                     sub=sub, modes=list(modes))
            offset += count
        starts = [g.recv() for g in self.gens]
        self.n = n
        done = self.wait(1, n, timeout=timeout)
        return {"seconds": done["last"] - min(starts), **done}

    def stats(self, k: int) -> dict[str, Any]:
        parts = call_all(self.gens, "stats", k=k)
        return {"n": sum(p["n"] for p in parts), "last": max(p["last"] for p in parts),
                "errors": sum(p["err_n"] for p in parts),
                "error_samples": [e for p in parts for e in p["errors"]][:3]}

    def acks(self) -> dict[str, float]:
        return self.server.call("acks")  # type: ignore[no-any-return]

    def wait(self, k: int, expected: int, *, acks: int = 0, timeout: float = 120.0) -> dict[str, Any]:
        """Poll until `expected` clients have their k-th response and `acks` ACKs arrived."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats(k)
            a = self.acks() if acks else {"acks": 0, "last": 0.0}
            if s["n"] >= expected and a["acks"] >= acks:
                return {**s, "acks": a["acks"], "ack_last": a["last"], "complete": True}
            if time.monotonic() > deadline:
                return {**s, "acks": a["acks"], "ack_last": a["last"], "complete": False}
            time.sleep(0.01)

    def push(self, name: str, version: int, *, k: int, expected: int, acks: int,
             kind: str = SMALL, timeout: float = 120.0, peak: bool = False) -> dict[str, Any]:
        """Push a new version; time until `expected` clients got their k-th response and ACKed."""
        if peak:
            reset_peak_rss(self.pid)
        rss0, cpu0 = self.rss(), self.cpu()
        t0 = self.server.call("push", name=name, version=version, kind=kind)
        done = self.wait(k, expected, acks=acks, timeout=timeout)
        cpu1 = self.cpu()
        out = {
            "received_s": done["last"] - t0 if done["n"] else None,
            "acked_s": (done["ack_last"] - t0) if done["acks"] else None,
            "cpu_s": cpu1 - cpu0,
            "received": done["n"], "acked": done["acks"], "complete": done["complete"],
            "errors": done["errors"], "rss_before": rss0,
        }
        if peak:
            out["peak_rss_growth"] = rss_bytes(self.pid, "VmHWM") - rss0
        return out

    def counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for part in call_all(self.gens, "counts"):
            out.update({int(k): v for k, v in part.items()})
        return out

    def profile(self, fn: Any) -> tuple[Any, str]:
        self.server.call("profile_start")
        try:
            result = fn()
        finally:
            text = self.server.call("profile_stop")
        return result, text

    def close(self) -> None:
        for g in self.gens:
            g.close()
        self.server.close()


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def pct(values: list[float], p: float) -> float:
    vals = sorted(values)
    return vals[min(len(vals) - 1, max(0, math.ceil(p / 100 * len(vals)) - 1))]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def now_s() -> float:
    return now()
