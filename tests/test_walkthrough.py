"""The README walkthrough, run as written: CLI commands against a real server, registry and Envoy."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryProcess
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import config_echo_filter, failing_filter, header_filter


async def xs(*args: str, server: str, ok: bool = True) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", *args,
        *(["--server", server] if args[0] not in ("push", "inspect", "pull") else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    code = proc.returncode or 0
    if ok:
        assert code == 0, (args, out.decode(), err.decode())
    return code, out.decode(), err.decode()


async def test_readme_walkthrough(tmp_path: Path, registry: RegistryProcess) -> None:
    v1, v2, broken = tmp_path / "v1.wasm", tmp_path / "v2.wasm", tmp_path / "broken.wasm"
    v1.write_bytes(header_filter("x-wasm-filter", "v1"))
    v2.write_bytes(config_echo_filter("x-wasm-config"))
    broken.write_bytes(failing_filter())
    reg = f"{registry.host}/walk"
    cfg = write_config(tmp_path / "config.yaml", [])
    port = free_port()
    async with running_server(cfg) as app:
        api = f"http://127.0.0.1:{app.admin_port}"
        await xs("push", str(v1), f"{reg}/hello:v1", server=api)
        await xs("push", str(v2), f"{reg}/hello:v2", "--layout", "cncf", server=api)
        await xs("push", str(broken), f"{reg}/broken:v1", server=api)
        _, out, _ = await xs("inspect", f"{reg}/hello:v2", server=api)
        assert json.loads(out)["layout"] == "cncf"

        async with EnvoyProcess(server_bootstrap(app, node_id="demo", filters=["hello"],
                                                 listen_port=port), tmp_path):
            url = f"http://127.0.0.1:{port}/"
            await xs("deploy", "hello", "--image", f"{reg}/hello:v1", "--config", '{"greeting":"hi"}',
                     server=api)
            await wait_for_header(url, "x-wasm-filter", "v1")

            async def status_shows(text: str, *flags: str) -> str | None:
                _, out, _ = await xs("status", *flags, server=api)
                return out if text in out else None

            await wait_for(lambda: status_shows("ACKED"), 10, what="status ACKED")
            await xs("deploy", "hello", "--image", f"{reg}/hello:v2", "--config", '{"greeting":"hi"}',
                     "--canary", "node_id=demo", server=api)
            await wait_for_header(url, "x-wasm-config", '{"greeting":"hi"}')
            await xs("promote", "hello", server=api)
            _, out, _ = await xs("history", "hello", "--output", "json", server=api)
            assert [h["action"] for h in json.loads(out)["history"]] == ["promote", "deploy", "deploy"]
            await xs("rollback", "hello", server=api)
            await wait_for_header(url, "x-wasm-filter", "v1")
            # `--to` takes a revision (`2`, `v2`) or an xDS version from `history`.
            _, out, _ = await xs("history", "hello", "--output", "json", server=api)
            v2_version = next(h["versions"][0] for h in json.loads(out)["history"] if h["action"] == "promote")
            await xs("rollback", "hello", "--to", v2_version, server=api)
            await wait_for_header(url, "x-wasm-config", '{"greeting":"hi"}')
            await xs("rollback", "hello", "--to", "v1", server=api)  # revision 1
            await wait_for_header(url, "x-wasm-filter", "v1")
            code, _, err = await xs("rollback", "hello", "--to", "feedfacefeedface", server=api, ok=False)
            assert code == 1 and "feedfacefeedface" in err

            await xs("deploy", "hello", "--image", f"{reg}/broken:v1", "--on-nack", "rollback",
                     server=api)

            async def auto_rolled_back() -> bool | None:
                _, out, _ = await xs("history", "hello", "--output", "json", server=api)
                return True if json.loads(out)["history"][0]["action"] == "auto-rollback" else None

            await wait_for(auto_rolled_back, 15, what="auto-rollback")
            await wait_for_header(url, "x-wasm-filter", "v1", timeout=2)
            # The proxy runs v1 again (ACKED); its last NACK stays visible with Envoy's message
            # in the proxy list (the summary groups the NACKs of the current version only).
            await wait_for(lambda: status_shows("Unable to create Wa", "--proxies"), 10, what="NACK in status")

            code, _, err = await xs("deploy", "hello", "--image", f"{reg}/hello:nope", server=api, ok=False)
            assert code == 1 and "error:" in err and "hello:nope" in err
            await wait_for_header(url, "x-wasm-filter", "v1", timeout=2)

            spec_file = tmp_path / "filters.yaml"
            spec_file.write_text(f"filters:\n  - name: hello\n    source: {{image: {reg}/hello:v1}}\n")
            await xs("apply", "-f", str(spec_file), server=api)
            await xs("delete", "hello", server=api)
            code, _, err = await xs("history", "nothere", server=api, ok=False)
            assert code == 1 and "nothere" in err
