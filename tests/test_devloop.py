"""`dev --once` end to end: both templates built here with their real toolchains, deployed
through the real server's admin API to a real Envoy run by `xds-server envoy`.

Each test checks the example's headers and its counter in Envoy's /stats, that an edit
shows up on the next `dev --once`, and that a build error and a module Envoy NACKs each
leave the previous version serving (and `dev --once` exit 1 saying why).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.fixtures.devkit import LocalEnvoy, local_envoy, new_project, xs
from tests.fixtures.envoy import http_get, wait_for, wait_for_header
from tests.fixtures.server import running_server, write_config

pytestmark = pytest.mark.envoy

REPO = Path(__file__).resolve().parent.parent
CONFIGURATION = {"greeting": "hello from xds-server"}
CONFIG_HEADER = json.dumps(CONFIGURATION, separators=(",", ":"))


def _config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.yaml", [{
        "name": "add-header", "source": {"file": str(REPO / "config" / "add-header.wasm")},
        "configuration": CONFIGURATION,
    }])


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


async def _dev_once(project: Path, api: str, *, ok: bool = True) -> str:
    result = await xs("dev", str(project), "--filter", "add-header", "--server", api, "--once", ok=ok)
    if not ok:
        assert result.code == 1, (result.out, result.err)
    return result.out + result.err


async def _served_sha(api: str) -> str:
    result = await xs("filters", "--server", api, "--output", "json")
    (view,) = json.loads(result.out)["filters"]
    return str(view["specs"][0]["module"]["sha256"])


async def _check_example(envoy: LocalEnvoy, name: str, version: str) -> None:
    _, headers, _ = await wait_for_header(envoy.url, f"x-{name}-version", version, timeout=15)
    assert headers[f"x-{name}"] == CONFIG_HEADER  # from the plugin configuration
    assert headers[f"x-{name}-user-agent"].startswith("Python/")  # a request header, read back
    for _ in range(10):  # a runtime trap (e.g. in the language runtime) shows after a few requests
        status, again, _ = await http_get(envoy.url)
        assert status == 200 and again[f"x-{name}-version"] == version, (status, again)
    metric = f"wasmcustom.{name.replace('-', '_')}_requests"
    counts = await envoy.stats(metric)
    assert counts.get(metric, 0) >= 11, counts


async def _refused_changes(envoy: LocalEnvoy, api: str, name: str, source: Path, *,
                           break_build: tuple[str, str], nack: tuple[str, str], compiler_says: str) -> None:
    """A build error, then a module Envoy NACKs: version 2 keeps serving throughout."""
    good = await _served_sha(api)
    original = _read(source)
    _edit(source, *break_build)
    out = await _dev_once(source.parent.parent, api, ok=False)
    assert compiler_says in out and "build failed" in out, out
    assert await _served_sha(api) == good
    _, headers, _ = await http_get(envoy.url)
    assert headers[f"x-{name}-version"] == "2"

    _write(source, original)
    _edit(source, *nack)
    out = await _dev_once(source.parent.parent, api, ok=False)
    assert "NACK of version" in out and "Unable to create Wasm plugin add-header" in out, out
    assert "rolled back" in out, out
    await wait_for(lambda: _served_sha_is(api, good), 10, what="server back on the good module")
    for _ in range(3):
        status, headers, _ = await http_get(envoy.url)
        assert status == 200 and headers[f"x-{name}-version"] == "2"
    _write(source, original)


async def _run_test_sh(project: Path, envoy: LocalEnvoy, api: str) -> str:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENVOY_URL": envoy.url,
           "XDS_SERVER_URL": api, "FILTER": "add-header"}
    proc = await asyncio.create_subprocess_exec("sh", "test.sh", cwd=project, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _served_sha_is(api: str, sha: str) -> bool:
    return await _served_sha(api) == sha


async def test_c_template_dev_once(tmp_path: Path) -> None:
    async with running_server(_config(tmp_path)) as app:
        api = f"http://127.0.0.1:{app.admin_port}"
        async with local_envoy(tmp_path, xds_port=app.xds_port, admin_port=app.admin_port) as envoy:
            project = await new_project(tmp_path / "cfilter", "c")
            out = await _dev_once(project, api)
            assert "dev-1: ACK" in out, out
            await _check_example(envoy, "cfilter", "1")

            source = project / "src" / "filter.c"
            _edit(source, '#define VERSION "1"', '#define VERSION "2"')
            await _dev_once(project, api)
            await _check_example(envoy, "cfilter", "2")

            await _refused_changes(
                envoy, api, "cfilter", source,
                break_build=('#define VERSION "2"', '#define VERSION "2"\nnot C at all'),
                compiler_says="src/filter.c:",
                nack=("size_t vm_configuration_size) {\n  return 1;", "size_t vm_configuration_size) {\n  return 0;"),
            )
            # The project's own test command, against this Envoy and server.
            result = await _run_test_sh(project, envoy, api)
            assert "ok: " in result, result
            assert await envoy.stop() == 0
            assert "stopping Envoy" in envoy.log() and "envoy | " in envoy.log()


async def test_assemblyscript_template_dev_once(tmp_path: Path, as_node_modules: Path) -> None:
    async with running_server(_config(tmp_path)) as app:
        api = f"http://127.0.0.1:{app.admin_port}"
        async with local_envoy(tmp_path, xds_port=app.xds_port, admin_port=app.admin_port) as envoy:
            project = await new_project(tmp_path / "asfilter", "assemblyscript", as_node_modules)
            out = await _dev_once(project, api)
            assert "dev-1: ACK" in out, out
            await _check_example(envoy, "asfilter", "1")

            source = project / "assembly" / "index.ts"
            _edit(source, 'const VERSION = "1";', 'const VERSION = "2";')
            await _dev_once(project, api)
            await _check_example(envoy, "asfilter", "2")

            await _refused_changes(
                envoy, api, "asfilter", source,
                break_build=('const VERSION = "2";', 'const VERSION: i32 = "2";'),
                compiler_says="ERROR TS2322",
                nack=("class FilterRoot extends RootContext {\n",
                      "class FilterRoot extends RootContext {\n"
                      "  onConfigure(configuration_size: u32): bool { return false; }\n"),
            )


async def test_dev_watch_follows_access_logs_and_restore_puts_back_the_start(tmp_path: Path) -> None:
    """Watch mode: the first round deploys, access logs and health (Envoy with --telemetry)
    are printed, an edit redeploys, a module that traps (ACKed) shows FAILING, and Ctrl-C
    with --restore brings back the start revision."""
    async with running_server(_config(tmp_path)) as app:
        api = f"http://127.0.0.1:{app.admin_port}"
        start_sha = await _served_sha(api)
        async with local_envoy(tmp_path, xds_port=app.xds_port, admin_port=app.admin_port,
                               extra=("--telemetry", "--telemetry-interval", "1s")) as envoy:
            project = await new_project(tmp_path / "watched", "c")
            log = tmp_path / "dev.log"
            with log.open("wb") as sink:
                dev = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "xds_server", "dev", str(project), "--filter", "add-header",
                    "--server", api, "--restore", stdout=sink, stderr=sink,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            try:
                await wait_for(lambda: "watching" in _read(log), 60, interval=0.1, what="dev watching")
                await _check_example(envoy, "watched", "1")
                await wait_for(lambda: "  log | " in _read(log), 30, interval=0.2, what="an access-log line")
                await wait_for(lambda: re.search(r"  health \| .*revision 2: [1-9]\d* requests, 0 5xx", _read(log)),
                               30, interval=0.2, what="a health line for revision 2")
                await asyncio.sleep(1.1)  # a later mtime than the first build's sources
                _edit(project / "src" / "filter.c", '#define VERSION "1"', '#define VERSION "2"')
                await wait_for_header(envoy.url, "x-watched-version", "2", timeout=60)
                # A module that traps at run time: Envoy ACKs it, health shows it failing.
                await asyncio.sleep(1.1)
                _edit(project / "src" / "filter.c", "proxy_action_t proxy_on_response_headers(uint32_t context_id, "
                      "size_t num_headers, int end_of_stream) {\n",
                      "proxy_action_t proxy_on_response_headers(uint32_t context_id, "
                      "size_t num_headers, int end_of_stream) {\n  __builtin_trap();\n")
                await wait_for(lambda: _read(log).count(": ACK, running version") >= 3, 60, what="trap ACKed")
                for _ in range(3):
                    await http_get(envoy.url)
                await wait_for(lambda: "FAILING (the module fails at run time" in _read(log), 30, interval=0.2,
                               what="health FAILING")
            finally:
                if dev.returncode is None:
                    dev.send_signal(signal.SIGINT)
                code = await asyncio.wait_for(dev.wait(), 30)
            assert code == 0, _read(log)
            assert "restored revision 1's content" in _read(log), _read(log)
            assert await _served_sha(api) == start_sha
            await wait_for_header(envoy.url, "x-wasm-filter", "add-header")
