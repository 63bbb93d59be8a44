"""Process plumbing: workers driven over a pipe, and /proc readings of a process."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, the peak) of `pid` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of `pid` to its current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _child(conn: Any, factory: str, loop_kind: str, kwargs: dict[str, Any]) -> None:
    raise_fd_limit()
    module, _, name = factory.rpartition(".")
    __import__(module)
    cls = getattr(sys.modules[module], name)
    if loop_kind == "uvloop":
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    else:
        runner = asyncio.run

    async def main() -> None:
        worker = cls(**kwargs)
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            cmd, args = msg
            if cmd == "exit":
                await worker.close()
                conn.send(("ok", None))
                return
            try:
                result = await getattr(worker, "cmd_" + cmd)(**args)
                conn.send(("ok", result))
            except Exception:
                conn.send(("error", traceback.format_exc()))

    runner(main())


class Worker:
    """A child process running `factory(**kwargs)`; `call("x", ...)` runs its `cmd_x`."""

    def __init__(self, factory: str, *, loop: str = "asyncio", **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child, factory, loop, kwargs), daemon=True)
        self.process.start()
        self.pid = self.process.pid
        assert self.pid is not None

    def send(self, cmd: str, **args: Any) -> None:
        self._conn.send((cmd, args))

    def recv(self, timeout: float = 600.0) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"worker {self.pid} did not answer in {timeout}s")
        status, result = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"worker {self.pid} failed:\n{result}")
        return result

    def call(self, cmd: str, timeout: float = 600.0, **args: Any) -> Any:
        self.send(cmd, **args)
        return self.recv(timeout)

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.call("exit", timeout=30)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


def call_all(workers: list[Worker], cmd: str, timeout: float = 600.0, **args: Any) -> list[Any]:
    """Send `cmd` to every worker at once, then gather the answers."""
    for w in workers:
        w.send(cmd, **args)
    return [w.recv(timeout) for w in workers]


def now() -> float:
    """CLOCK_MONOTONIC, the same clock in every process of the machine."""
    return time.monotonic()
