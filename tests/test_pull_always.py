"""pull_policy Always: a moved tag becomes a new revision; a registry outage changes nothing."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.registry import RegistryProcess, RegistryProxy
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from xds_server.wasm import RegistryClient, push

HEADER = "x-wasm-filter"


async def test_tag_update_and_registry_outage(
    tmp_path: Path, registry: RegistryProcess, registry_proxy: RegistryProxy
) -> None:
    repo = "team/moving"
    async with RegistryClient() as client:
        await push(client, f"{registry.host}/{repo}:latest", header_filter(HEADER, "v1"))
    cfg = write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"image": f"{registry_proxy.host}/{repo}:latest"},
          "pull_policy": "Always"}],
        resolve_interval=1,
    )
    port = free_port()
    async with running_server(cfg) as app, EnvoyProcess(server_bootstrap(app, node_id="e1", filters=["hdr"],
                                             listen_port=port), tmp_path) as envoy:
        url = f"http://127.0.0.1:{port}/"
        await wait_for_header(url, HEADER, "v1")
        async with RegistryClient() as client:
            await push(client, f"{registry.host}/{repo}:latest", header_filter(HEADER, "v2"))
        await wait_for_header(url, HEADER, "v2", timeout=15)
        history = (await app.controller.state.history("hdr"))
        assert history[0].action == "tag-update" and history[0].author == "system:pull-always"

        # Registry down: the tag moves behind its back, Envoy stays on v2, the server retries.
        registry_proxy.down = True
        before = registry_proxy.count("/manifests/latest")
        async with RegistryClient() as client:
            await push(client, f"{registry.host}/{repo}:latest", header_filter(HEADER, "v3"))
        # The server keeps trying (two refreshes reached the proxy) while Envoy stays on v2.
        await wait_for(lambda: registry_proxy.count("/manifests/latest") >= before + 2, 30,
                       what="two refresh attempts against the downed registry")
        await wait_for_header(url, HEADER, "v2", timeout=10)
        assert app.controller.filters["hdr"].revision.revision == history[0].revision  # type: ignore[union-attr]
        registry_proxy.down = False
        await wait_for_header(url, HEADER, "v3", timeout=15)
        assert (await envoy.server_info())["state"] == "LIVE"


async def test_config_filter_retried_until_registry_is_back(
    tmp_path: Path, registry: RegistryProcess, registry_proxy: RegistryProxy
) -> None:
    """Registry down at start-up: not ready (503) and retried; once it is back, served."""
    async with RegistryClient() as client:
        await push(client, f"{registry.host}/team/late:v1", header_filter(HEADER, "late"))
    registry_proxy.down = True
    cfg = write_config(tmp_path / "config.yaml",
                       [{"name": "hdr", "source": {"image": f"{registry_proxy.host}/team/late:v1"}}])
    port = free_port()
    async with running_server(cfg) as app:
        status, body = await readyz(app.admin_port)
        assert status == 503 and "hdr" in body
        assert app.controller.filters["hdr"].error
        registry_proxy.down = False
        async with EnvoyProcess(server_bootstrap(app, node_id="e1", filters=["hdr"],
                                                 listen_port=port), tmp_path):
            await wait_for_header(f"http://127.0.0.1:{port}/", HEADER, "late", timeout=30)
        status, _ = await readyz(app.admin_port)
        assert status == 200
        assert (await app.controller.state.history("hdr"))[0].author == "system:retry"


async def readyz(port: int) -> tuple[int, str]:
    from tests.fixtures.envoy import http_get

    status, _, body = await http_get(f"http://127.0.0.1:{port}/readyz")
    return status, body.decode()
