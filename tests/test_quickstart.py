"""The README quickstart, step by step as written, on free ports.

The steps are read from README.md (so the README and this test cannot drift apart) and run
as subprocesses: `make run`'s own command (`xds-server serve --config config/example.yaml`,
on a copy of that config with free ports and a temporary data dir), `xds-server envoy`,
`init`, `dev` in watch mode, curl (an HTTP GET), the edit, and curl again. The only
additions are the port options (`--xds-address`/`--listen`/`--admin`/`--module-server`,
`--server`) and a node_modules linked from the session's `npm ci` (see tests/fixtures/devkit.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest

from tests.fixtures.devkit import local_envoy
from tests.fixtures.envoy import wait_for, wait_for_header
from tests.fixtures.net import free_port, wait_ready

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parent.parent
EXPECTED = [
    "git clone REPOSITORY xds-server && cd xds-server && make run",
    ".venv/bin/xds-server envoy",
    ".venv/bin/xds-server init myfilter --language assemblyscript",
    ".venv/bin/xds-server dev myfilter --filter add-header",
    "curl -si 127.0.0.1:10000/",
    "myfilter/assembly/index.ts",
    "curl -si 127.0.0.1:10000/",
]


def quickstart_steps() -> list[str]:
    """The first code span of each numbered step of the README's Quickstart section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d+\. (.*(?:\n   .*)*)", section, flags=re.MULTILINE)
    return [re.findall(r"`([^`]+)`", step)[0] for step in steps]


def test_readme_lists_the_quickstart_this_test_runs() -> None:
    assert quickstart_steps() == EXPECTED
    make_run = (REPO / "Makefile").read_text().split("\nrun:", 1)[1].splitlines()[1].strip()
    assert make_run == "$(VENV)/bin/xds-server serve --config config/example.yaml"


def _example_config(tmp_path: Path, xds: int, admin: int) -> Path:
    text = (REPO / "config" / "example.yaml").read_text()
    text = text.replace("127.0.0.1:18000", f"127.0.0.1:{xds}").replace("127.0.0.1:18080", f"127.0.0.1:{admin}")
    text = text.replace("data_dir: ../var", f"data_dir: {tmp_path / 'var'}")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "add-header.wasm").write_bytes((REPO / "config" / "add-header.wasm").read_bytes())
    path = tmp_path / "config" / "example.yaml"
    path.write_text(text)
    return path


async def _spawn(*args: str, log: Path, cwd: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", *args, cwd=cwd, stdout=sink, stderr=sink,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def _stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
    return await asyncio.wait_for(proc.wait(), 30)


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _save(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def test_quickstart(tmp_path: Path, as_node_modules: Path) -> None:
    steps = quickstart_steps()
    xds, admin = free_port(), free_port()
    api = f"http://127.0.0.1:{admin}"
    # 1. make run (its command, checked against the Makefile above)
    assert steps[0].endswith("make run")
    serve_args = ["serve", "--config", "config/example.yaml"]
    config = _example_config(tmp_path, xds, admin)
    server = await _spawn(*serve_args, log=tmp_path / "server.log", cwd=config.parent.parent)
    try:
        await wait_ready(f"{api}/readyz", 30)  # make run's server
        # 2. xds-server envoy (in a second terminal)
        assert shlex.split(steps[1])[1:] == ["envoy"]
        async with local_envoy(tmp_path, xds_port=xds, admin_port=admin, node_id="local") as envoy:
            # 3. xds-server init myfilter --language assemblyscript
            init = await _spawn(*shlex.split(steps[2])[1:], log=tmp_path / "init.log", cwd=tmp_path)
            assert await init.wait() == 0, _read(tmp_path / "init.log")
            (tmp_path / "myfilter" / "node_modules").symlink_to(as_node_modules, target_is_directory=True)
            # 4. xds-server dev myfilter --filter add-header (keeps watching)
            dev_log = tmp_path / "dev.log"
            dev = await _spawn(*shlex.split(steps[3])[1:], "--server", api, log=dev_log, cwd=tmp_path)
            try:
                await wait_for(lambda: "local: ACK" in _read(dev_log), 180, interval=0.2, what="dev: ACK")
                # 5. curl shows the header
                _, headers, _ = await wait_for_header(envoy.url, "x-myfilter-version", "1")
                assert headers["x-myfilter"] == '{"greeting":"hello from xds-server"}'
                # 6. edit, save
                await asyncio.sleep(1.1)  # a save in a later second than the build (mtime resolution)
                _save(tmp_path / steps[5], 'const VERSION = "1";', 'const VERSION = "2";')
                # 7. curl shows the change
                await wait_for_header(envoy.url, "x-myfilter-version", "2", timeout=180)
                await wait_for(lambda: _read(dev_log).count("local: ACK") >= 2, 10, what="dev: second ACK")
            finally:
                code = await _stop(dev)
            assert code == 0, _read(dev_log)
            assert "stays at revision" in _read(dev_log)
            _, headers, _ = await wait_for_header(envoy.url, "x-myfilter-version", "2")
    finally:
        await _stop(server)
