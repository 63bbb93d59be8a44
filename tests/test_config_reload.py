"""The config file, changed under a running server: watched (on by default) or reloaded on
SIGHUP. A valid edit is served; an invalid one is logged as `config_rejected` and the
running config stays; a reload that fails unexpectedly is logged (`config_reload_failed`)
and the server keeps serving and watching.

The first two tests run a real `xds-server serve` child process (JSON logs to a file), a
real Envoy, and a real xDS gRPC stream for SIGHUP; the last runs the server in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from structlog.testing import capture_logs

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port, wait_ready
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.xds_client import XdsClient, ack, node, sotw_request
from xds_server.bootstrap import BootstrapOptions, bootstrap_yaml
from xds_server.config import Config

HEADER = "x-wasm-filter"


@dataclass
class ServeProcess:
    """A running `xds-server serve --config PATH` and where its JSON log goes."""

    proc: asyncio.subprocess.Process
    config: Path
    log: Path
    xds_port: int
    admin_port: int

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log records whose event is `name`, in order."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == name:
                found.append(record)
        return found

    async def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        """Wait until `name` has been logged `count` times; return the last such record."""
        await wait_for(lambda: len(self.events(name)) >= count, 30, what=f"log event {name} x{count}")
        return self.events(name)[-1]

    async def filter_view(self, name: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.admin_port}/api/v1/filters/{name}"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            view: dict[str, Any] = await resp.json()
            return view


def write_filters(cfg: Path, module: Path, **server: Any) -> None:
    """Replace `cfg` atomically (as editors and config maps do) with one filter "hdr"."""
    tmp = cfg.with_suffix(".new")
    write_config(tmp, [{"name": "hdr", "source": {"file": str(module)}}], **server)
    os.replace(tmp, cfg)


@asynccontextmanager
async def serve(cfg: Path, xds_port: int, admin_port: int) -> AsyncIterator[ServeProcess]:
    """Run `xds-server serve` on `cfg` until the block ends (then SIGTERM, exit 0)."""
    log = cfg.with_suffix(".log")
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xds_server", "serve", "--config", str(cfg), "--log-format", "json",
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
    server = ServeProcess(proc, cfg, log, xds_port, admin_port)
    try:
        await wait_ready(f"http://127.0.0.1:{admin_port}/readyz", 30)
        yield server
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def modules(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for tag in ("v1", "v2"):
        out[tag] = tmp_path / f"{tag}.wasm"
        out[tag].write_bytes(header_filter(HEADER, tag))
    return out


async def test_watched_config_file_edit_is_served_and_bad_edit_is_rejected(tmp_path: Path) -> None:
    mods = modules(tmp_path)
    xds, admin, listen = free_port(), free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    server_opts = {"xds_address": f"127.0.0.1:{xds}", "admin_address": f"127.0.0.1:{admin}",
                   "watch_config": True}
    write_filters(cfg, mods["v1"], **server_opts)
    async with serve(cfg, xds, admin) as server:
        boot = bootstrap_yaml(BootstrapOptions(
            node_id="e1", filters=["hdr"], xds_addresses=[f"127.0.0.1:{xds}"],
            listen=f"127.0.0.1:{listen}", admin="127.0.0.1:0", module_server=f"127.0.0.1:{admin}"))
        async with EnvoyProcess(boot, tmp_path) as envoy:
            url = f"http://127.0.0.1:{listen}/"
            await wait_for_header(url, HEADER, "v1", timeout=30)
            # An edit: picked up without a signal, served to the running Envoy.
            write_filters(cfg, mods["v2"], **server_opts)
            await wait_for_header(url, HEADER, "v2", timeout=30)
            assert (await server.wait_event("config_reloaded"))["path"] == str(cfg)
            served = (await server.filter_view("hdr"))["revision"]
            # A bad edit: rejected and logged; Envoy and the server keep the running config.
            cfg.write_text("filters:\n- name: hdr\n  source: {}\n")
            rejected = await server.wait_event("config_rejected")
            assert rejected["path"] == str(cfg) and "source" in rejected["error"]
            await wait_for_header(url, HEADER, "v2", timeout=10)
            assert (await server.filter_view("hdr"))["revision"] == served
            await wait_ready(f"http://127.0.0.1:{admin}/readyz", 10)
            # The watcher survives the bad edit: the next good one is served.
            write_filters(cfg, mods["v1"], **server_opts)
            await wait_for_header(url, HEADER, "v1", timeout=30)
            assert (await envoy.server_info())["state"] == "LIVE"
        assert len(server.events("config_reloaded")) == 2


async def test_sighup_reloads_the_config_file(tmp_path: Path) -> None:
    mods = modules(tmp_path)
    xds, admin = free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    server_opts = {"xds_address": f"127.0.0.1:{xds}", "admin_address": f"127.0.0.1:{admin}",
                   "watch_config": False}
    write_filters(cfg, mods["v1"], **server_opts)
    async with serve(cfg, xds, admin) as server:
        client = XdsClient(f"127.0.0.1:{xds}")
        stream = client.sotw()
        try:
            await stream.send(sotw_request(["hdr"], node_msg=node("e1")))
            first = await stream.recv(30)
            await stream.send(ack(first, ["hdr"]))
            # With watching off, an edit is applied on SIGHUP and pushed to the open stream.
            write_filters(cfg, mods["v2"], **server_opts)
            server.proc.send_signal(signal.SIGHUP)
            pushed = await stream.recv(30)
            assert pushed.version_info != first.version_info
            assert (await server.wait_event("config_reloaded"))["path"] == str(cfg)
            await stream.send(ack(pushed, ["hdr"]))
            view = await server.filter_view("hdr")
            assert view["revision"] == 2 and view["specs"][0]["version"] == pushed.version_info
            # A bad file on SIGHUP: rejected and logged; nothing changes, nothing is pushed.
            cfg.write_text("server: {xds_address: 'nonsense'}\nfilters: []\n")
            server.proc.send_signal(signal.SIGHUP)
            rejected = await server.wait_event("config_rejected")
            assert rejected["path"] == str(cfg) and "xds_address" in rejected["error"]
            assert (await server.filter_view("hdr"))["revision"] == 2
            assert stream.responses.empty() and stream.error is None
        finally:
            stream.cancel()
            await client.close()
        assert server.proc.returncode is None  # SIGHUP did not stop it


def rewrite(path: Path, filters: list[dict[str, Any]], bump: int) -> None:
    """Rewrite the config's filters with an mtime that surely differs."""
    doc = yaml.safe_load(path.read_text())
    doc["filters"] = filters
    path.write_text(yaml.safe_dump(doc))
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + bump))


async def test_a_failing_reload_is_logged_and_watching_goes_on(tmp_path: Path) -> None:
    a = tmp_path / "a.wasm"
    a.write_bytes(header_filter("x-wasm-filter", "A"))
    cfg = write_config(tmp_path / "config.yaml", [], watch_config=True)
    with capture_logs() as logs:
        async with running_server(cfg) as app:
            real_apply = app.apply
            calls = 0

            async def buggy_apply(config: Config) -> None:  # a bug in the reload path
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise RuntimeError("injected reload bug")
                await real_apply(config)

            app.apply = buggy_apply  # type: ignore[method-assign]
            rewrite(cfg, [{"name": "one", "source": {"file": str(a)}}], bump=10)
            await wait_for(lambda: any(e["event"] == "config_reload_failed" for e in logs), 20,
                           what="config_reload_failed")
            failed = next(e for e in logs if e["event"] == "config_reload_failed")
            assert failed["error"] == "injected reload bug" and failed["path"] == str(cfg.resolve())
            assert failed["log_level"] == "error"
            assert "one" not in app.controller.filters

            rewrite(cfg, [{"name": "two", "source": {"file": str(a)}}], bump=20)
            await wait_for(lambda: "two" in app.controller.filters, 20, what="reload")  # still watching
            assert calls == 2
