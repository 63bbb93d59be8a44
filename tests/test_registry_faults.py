"""The registry down, slow or lying during a deploy, with a real Envoy on the previous
version: the running version keeps serving, the API answers 422 with the cause, nothing
bad is stored, and once the fault clears the same deploy goes through.

The server pulls through :class:`RegistryProxy` (in front of the real registry); its module
store is given short timeouts and one retry so each fault ends in seconds.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.envoy import EnvoyProcess, http_get, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryProcess, RegistryProxy
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.wasm import ModuleStore, RegistryClient, push

HEADER = "x-wasm-filter"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FAULTS: dict[str, tuple[Callable[[RegistryProxy, str], Any], str]] = {
    # name: (inject(proxy, v2 layer digest), what the 422 message must say)
    "down": (lambda p, d: setattr(p, "down", True), "answered 503 after 2 attempts"),
    "refused": (lambda p, d: None, "unreachable after 2 attempts"),  # the proxy stops below
    "slow": (lambda p, d: setattr(p, "delay", 3.0), "unreachable after 2 attempts"),
    "wrong_digest": (lambda p, d: p.corrupt.add(d), "failed verification: expected sha256:"),
    "truncated": (lambda p, d: p.truncate.add(d), "download failed after 2 attempts"),
    "wrong_content_type": (lambda p, d: p.content_types.__setitem__("/manifests/", "text/html"),
                           "was served as 'text/html', not a manifest media type"),
}


def _clear(proxy: RegistryProxy) -> None:
    proxy.down = False
    proxy.delay = 0.0
    proxy.corrupt.clear()
    proxy.truncate.clear()
    proxy.content_types.clear()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_registry_fault_during_deploy(
    fault: str, tmp_path: Path, registry: RegistryProcess, registry_proxy: RegistryProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fail fast: one retry and 1 s timeouts from the config; short backoff for the test.
    monkeypatch.setattr("xds_server.controller._store.ModuleStore", functools.partial(
        ModuleStore, backoff_base=0.05, backoff_max=0.1))
    v1, v2 = header_filter(HEADER, "v1"), header_filter(HEADER, f"v2-{fault}")
    repo = f"team/faults-{fault.replace('_', '-')}"
    async with RegistryClient() as client:
        await push(client, f"{registry.host}/{repo}:v1", v1, layout="wasme")
        await push(client, f"{registry.host}/{repo}:v2", v2, layout="wasme")
    proxy = registry_proxy
    xds_port, admin_port, listen = free_port(), free_port(), free_port()
    cfg = write_config(tmp_path / "config.yaml", [], xds_address=f"127.0.0.1:{xds_port}",
                       admin_address=f"127.0.0.1:{admin_port}", fetch_retries=1, fetch_timeout=1.0)
    api = f"http://127.0.0.1:{admin_port}/api/v1/filters/hdr"
    async with running_server(cfg) as app, aiohttp.ClientSession() as http:

        async def deploy(tag: str) -> tuple[int, Any]:
            body = {"source": {"image": f"{proxy.host}/{repo}:{tag}"}}
            async with http.put(api, json=body, headers={"X-Actor": "faults"}) as r:
                return r.status, await r.json()

        status, view = await deploy("v1")
        assert status == 201, view
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=listen)
        async with EnvoyProcess(boot, tmp_path):
            url = f"http://127.0.0.1:{listen}/"
            await wait_for_header(url, HEADER, "v1", timeout=15)

            inject, cause = FAULTS[fault]
            if fault == "refused":
                await proxy.stop()
            else:
                inject(proxy, f"sha256:{_sha(v2)}")
            status, error = await deploy("v2")

            # The API answers 422 with the cause, naming the image.
            assert status == 422, error
            message = error["error"]["message"]
            assert cause in message, message
            assert f"{proxy.host}/{repo}:v2" in message, message
            if fault == "wrong_digest":
                assert f"expected sha256:{_sha(v2)}" in message
                assert "received sha256:" in message.split("expected", 1)[1]

            # The running version keeps serving, unchanged.
            status_code, headers, _ = await http_get(url)
            assert status_code == 200 and headers.get(HEADER) == "v1"
            async with http.get(api) as r:
                view = await r.json()
            assert view["revision"] == 1, view
            assert view["specs"][0]["module"]["sha256"] == _sha(v1)
            async with http.get(api + "/history") as r:
                assert [h["revision"] for h in (await r.json())["history"]] == [1]

            # Nothing bad is stored: only v1's module, no partial files, no v2 reference.
            store_dir = tmp_path / "data" / "modules"
            blobs = sorted(p.name for p in (store_dir / "blobs" / "sha256").iterdir())
            assert blobs == [_sha(v1)], blobs
            index = json.loads((store_dir / "index.json").read_text())
            assert not [k for k in index["refs"] if k.endswith(":v2")], index["refs"]

            # Once the registry behaves, the same deploy goes through.
            if fault == "refused":
                await proxy.start(proxy.port)
            _clear(proxy)
            status, view = await deploy("v2")
            assert status == 200, view
            await wait_for_header(url, HEADER, f"v2-{fault}", timeout=15)
