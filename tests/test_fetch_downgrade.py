"""A registry on https that redirects to plain http is refused (no downgrade)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web

from tests.fixtures.net import free_port
from tests.fixtures.pki import make_pki
from xds_server.wasm import RegistryClient, RegistrySettings, parse_reference
from xds_server.wasm.errors import UnsafeDestination


async def test_https_to_http_redirect_is_refused(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", {})
    plain_port, tls_port = free_port(), free_port()
    hits: list[str] = []

    async def plain(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"schemaVersion": 2})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{plain_port}{request.path}")

    runners = []
    for handler, port, ctx in ((plain, plain_port, None), (redirect, tls_port, "tls")):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        ssl_ctx = None
        if ctx:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(pki.server_cert, pki.server_key)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_ctx).start()
        runners.append(runner)
    try:
        host = f"localhost:{tls_port}"
        async with RegistryClient(registries=[RegistrySettings(host=host, ca_file=str(pki.ca))],
                                  retries=0) as client:
            with pytest.raises(UnsafeDestination) as info:
                await client.get_manifest(parse_reference(f"{host}/team/x:v1"))
        assert "downgrade from https" in str(info.value)
        assert hits == []  # the plain-http target was never asked
    finally:
        for runner in runners:
            await runner.cleanup()
