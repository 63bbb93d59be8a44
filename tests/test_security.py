"""Transport security, node identity binding, admin tokens and limits, with real peers."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import yaml
from envoy.config.core.v3 import extension_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.extension.v3 import config_discovery_pb2_grpc
from structlog.testing import capture_logs

from tests.fixtures.envoy import EnvoyProcess, wait_for, wait_for_header
from tests.fixtures.net import free_port
from tests.fixtures.pki import Pki, make_pki
from tests.fixtures.server import running_server, server_bootstrap, write_config
from tests.fixtures.wasm_filters import header_filter
from tests.xds_client import Stream, node, sotw_request
from xds_server.admin._auth import hash_token
from xds_server.cache import TYPED_EXTENSION_CONFIG

READ_TOKEN = "read-token-0123456789abcdef"
WRITE_TOKEN = "write-token-0123456789abcdef"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki", {"e1": "spiffe://fleet/e1", "e2": "spiffe://fleet/e2"})


def secure_config(tmp_path: Path, pki: Pki, module: Path, **extra: Any) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        [{"name": "hdr", "source": {"file": str(module)}, "configuration": {"api_key": "s3cr3t"}}],
        xds_tls={"cert_file": str(pki.server_cert), "key_file": str(pki.server_key),
                 "client_ca_file": str(pki.ca)},
        node_identity=[{"san": "spiffe://fleet/e1", "node_id": "e1"},
                       {"san": "spiffe://fleet/e2", "node_id": "e2*"}],
        **extra,
    )


def channel(port: int, pki: Pki, client: tuple[Path, Path] | None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", "localhost")])


async def first_response(ch: grpc.aio.Channel, node_id: str, timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    """The server's answer to an ECDS request for "hdr" as `node_id`: the first response, or
    the error status the stream ended with. Fails the test if neither comes in `timeout`."""
    stream = Stream(config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub(ch).StreamExtensionConfigs())
    await stream.send(sotw_request(["hdr"], node_msg=node(node_id)))
    got = asyncio.ensure_future(stream.responses.get())
    ended = asyncio.ensure_future(stream.done.wait())
    try:
        await asyncio.wait({got, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if got.done():
            return got.result()
        if stream.error is not None:
            return stream.error
        raise AssertionError(f"node {node_id}: no response and no error status within {timeout}s")
    finally:
        got.cancel()
        ended.cancel()
        stream.cancel()


def assert_served(resp: Any) -> None:
    """`resp` is a DiscoveryResponse carrying the "hdr" filter."""
    assert isinstance(resp, discovery_pb2.DiscoveryResponse), f"not served: {resp!r}"
    assert [r.type_url for r in resp.resources] == [TYPED_EXTENSION_CONFIG], resp
    config = extension_pb2.TypedExtensionConfig()
    resp.resources[0].Unpack(config)
    assert config.name == "hdr", config.name


async def test_mtls_and_node_identity(tmp_path: Path, pki: Pki) -> None:
    module = tmp_path / "a.wasm"
    module.write_bytes(header_filter("x-wasm-filter", "A"))
    async with running_server(secure_config(tmp_path, pki, module)) as app:
        port = app.xds_port
        # The right certificate for the node: served.
        async with channel(port, pki, pki.clients["e1"]) as ch:
            assert_served(await first_response(ch, "e1"))
        # Another node's id with e1's certificate: PERMISSION_DENIED, logged.
        with capture_logs() as logs:
            async with channel(port, pki, pki.clients["e1"]) as ch:
                err = await first_response(ch, "e2-edge")
        assert isinstance(err, grpc.aio.AioRpcError)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not allowed" in (err.details() or "")
        assert any(e["event"] == "node_identity_refused" for e in logs)
        async with channel(port, pki, pki.clients["e2"]) as ch:
            assert_served(await first_response(ch, "e2-edge"))
        # No client certificate, or one from another CA: refused at the handshake.
        for client in (None, pki.rogue_client):
            async with channel(port, pki, client) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub(ch) \
                        .FetchExtensionConfigs(sotw_request(["hdr"], node_msg=node("e1")), timeout=3)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_real_envoy_over_mtls(tmp_path: Path, pki: Pki) -> None:
    module = tmp_path / "a.wasm"
    module.write_bytes(header_filter("x-wasm-filter", "A"))
    port = free_port()
    async with running_server(secure_config(tmp_path, pki, module)) as app:
        cert, key = pki.clients["e1"]
        boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port,
                                tls_ca=str(pki.ca), tls_cert=str(cert), tls_key=str(key),
                                tls_sni="localhost")
        async with EnvoyProcess(boot, tmp_path):
            await wait_for_header(f"http://127.0.0.1:{port}/", "x-wasm-filter", "A")


async def test_admin_tokens_roles_and_redaction(tmp_path: Path) -> None:
    a, b = tmp_path / "a.wasm", tmp_path / "b.wasm"
    a.write_bytes(header_filter("x-wasm-filter", "A"))
    b.write_bytes(header_filter("x-wasm-filter", "B"))
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [
        {"name": "dashboard", "role": "read", "sha256": hash_token(READ_TOKEN)},
        {"name": "ci", "role": "write", "sha256": hash_token(WRITE_TOKEN)},
    ]}))
    assert READ_TOKEN not in tokens.read_text()
    cfg = write_config(tmp_path / "config.yaml",
                       [{"name": "hdr", "source": {"file": str(a)}, "configuration": {"api_key": "s3cr3t"},
                         "env": {"DB_PASSWORD": "hunter2"}}],
                       admin_tokens_file=str(tokens))
    with capture_logs() as logs:
        async with running_server(cfg) as app, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{app.admin_port}"

            def auth(t: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {t}"}

            async with http.get(f"{base}/api/v1/filters") as r:
                assert r.status == 401 and "bearer token" in (await r.json())["error"]["message"]
            async with http.get(f"{base}/api/v1/filters", headers=auth("wrong-token-xxxxxxxx")) as r:
                assert r.status == 401
            async with http.get(f"{base}/api/v1/filters", headers=auth(READ_TOKEN)) as r:
                body = await r.text()
                assert r.status == 200 and "s3cr3t" not in body and "hunter2" not in body
                assert "<redacted" in body
            async with http.get(f"{base}/api/v1/filters/hdr/history", headers=auth(READ_TOKEN)) as r:
                assert r.status == 200 and "s3cr3t" not in await r.text()
            spec = {"source": {"file": str(b)}}
            async with http.put(f"{base}/api/v1/filters/hdr", json=spec, headers=auth(READ_TOKEN)) as r:
                assert r.status == 403 and "role 'write'" in (await r.json())["error"]["message"]
            async with http.put(f"{base}/api/v1/filters/hdr", json=spec,
                                headers={**auth(WRITE_TOKEN), "X-Actor": "alice"}) as r:
                assert r.status == 200, await r.text()
            async with http.get(f"{base}/api/v1/filters/hdr/history", headers=auth(WRITE_TOKEN)) as r:
                history = (await r.json())["history"]
            assert history[0]["author"].startswith("ci (alice)")
            for path in ("/healthz", "/readyz", "/metrics"):
                async with http.get(base + path) as r:
                    assert r.status == 200, path
            # The admin gRPC API follows the same roles and redaction.
            from google.protobuf.json_format import MessageToJson

            from xds_server.admin.v1 import admin_pb2, admin_pb2_grpc

            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as ch:
                stub: Any = admin_pb2_grpc.AdminServiceStub(ch)  # type: ignore[no-untyped-call]
                read_md = (("authorization", f"Bearer {READ_TOKEN}"),)
                got = await stub.GetHistory(admin_pb2.GetHistoryRequest(name="hdr"), metadata=read_md)
                text = MessageToJson(got)  # revision 1 carried the secret configuration
                assert "redacted" in text and "s3cr3t" not in text and "hunter2" not in text
                full = await stub.GetHistory(admin_pb2.GetHistoryRequest(name="hdr"),
                                             metadata=(("authorization", f"Bearer {WRITE_TOKEN}"),))
                assert "s3cr3t" in MessageToJson(full)
                await stub.GetFilter(admin_pb2.GetFilterRequest(name="hdr"), metadata=read_md)
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.DeleteFilter(admin_pb2.DeleteFilterRequest(name="hdr"),
                                            metadata=(("authorization", f"Bearer {READ_TOKEN}"),))
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    rendered = repr(logs)
    assert READ_TOKEN not in rendered and WRITE_TOKEN not in rendered and "s3cr3t" not in rendered


async def test_admin_without_tokens_binds_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "config.yaml", [], admin_address=f"0.0.0.0:{port}")
    with capture_logs() as logs:
        async with running_server(cfg) as app:
            (site,) = app._admin_runner.sites
            assert site.name.startswith("http://127.0.0.1:")
    event = next(e for e in logs if e["event"] == "admin_loopback_only")
    assert event["bound"] == "127.0.0.1"


async def test_admin_over_tls(tmp_path: Path, pki: Pki) -> None:
    cfg = write_config(tmp_path / "config.yaml", [],
                       admin_tls={"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)})
    async with running_server(cfg) as app:
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        async with aiohttp.ClientSession() as http, \
                http.get(f"https://localhost:{app.admin_port}/healthz", ssl=ctx) as r:
            assert r.status == 200
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{app.admin_port}/healthz") as r:
                    await r.read()


async def test_request_rate_and_stream_limits(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.yaml", [],
                       limits={"requests_per_second": 1, "request_burst": 3, "max_streams": 2})
    async with running_server(cfg) as app, grpc.aio.insecure_channel(f"127.0.0.1:{app.xds_port}") as ch:
        stub = config_discovery_pb2_grpc.ExtensionConfigDiscoveryServiceStub(ch)
        flood = Stream(stub.StreamExtensionConfigs())
        for i in range(4):  # a burst of 3 allowed, the 4th request is refused
            await flood.send(sotw_request([f"n{i}"], node_msg=node("flooder")))
        err = await flood.closed_with()
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in (err.details() or "")
        held = [Stream(stub.StreamExtensionConfigs()) for _ in range(2)]
        for i, s in enumerate(held):
            await s.send(sotw_request(["x"], node_msg=node(f"n{i}")))
        # Both held streams are registered (the refused flood stream is gone) before the next.
        await wait_for(lambda: app.xds.stream_count == 2, 30, what="two streams held")
        extra = Stream(stub.StreamExtensionConfigs())
        await extra.send(sotw_request(["x"], node_msg=node("n3")))
        err = await extra.closed_with()
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 2 streams" in (err.details() or "")
        for s in held:
            s.cancel()


async def test_admin_tokens_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDS_SERVER_ADMIN_TOKENS", f"ops:write:{hash_token(WRITE_TOKEN)}")
    async with running_server(write_config(tmp_path / "config.yaml", [])) as app, \
            aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{app.admin_port}/api/v1/filters"
        async with http.get(base) as r:
            assert r.status == 401
        async with http.get(base, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}) as r:
            assert r.status == 200


async def test_bad_token_environment_is_a_clear_startup_error(tmp_path: Path) -> None:
    import os
    import sys

    cfg = write_config(tmp_path / "config.yaml", [])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xds_server", "serve", "--config", str(cfg),
        env={**os.environ, "XDS_SERVER_ADMIN_TOKENS": f"ops:write:{WRITE_TOKEN}"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = err.decode()
    assert "XDS_SERVER_ADMIN_TOKENS" in text and "sha256" in text
    assert WRITE_TOKEN not in text  # the mistaken plain token is not echoed


async def test_real_envoy_with_another_nodes_certificate_gets_nothing(tmp_path: Path, pki: Pki) -> None:
    """Envoy says it is node e1 but presents e2's certificate (SAN spiffe://fleet/e2): every
    stream it opens is refused (node_identity_refused), and it never receives the filter."""
    module = tmp_path / "a.wasm"
    module.write_bytes(header_filter("x-wasm-filter", "A"))
    port = free_port()
    with capture_logs() as logs:
        async with running_server(secure_config(tmp_path, pki, module)) as app:
            cert, key = pki.clients["e2"]
            boot = server_bootstrap(app, node_id="e1", filters=["hdr"], listen_port=port,
                                    tls_ca=str(pki.ca), tls_cert=str(cert), tls_key=str(key),
                                    tls_sni="localhost")
            async with EnvoyProcess(boot, tmp_path) as envoy:

                def refusals() -> list[MutableMapping[str, Any]]:
                    return [e for e in logs if e["event"] == "node_identity_refused"]

                # Envoy retries its stream; each attempt is refused.
                await envoy.wait_for(lambda: len(refusals()) >= 2, 30, what="two refused streams")
                await envoy.wait_for(lambda: "not allowed" in envoy.log_text(), 30,
                                     what="Envoy logging the refusal")
                assert {e["node_id"] for e in refusals()} == {"e1"}
                assert "spiffe://fleet/e2" in refusals()[0]["reason"]
                dump = await envoy.config_dump("ecds_filters")
                assert "x-wasm-filter" not in str(dump) and "hdr" not in str(dump)
                assert "e1" not in app.status.proxies
                with pytest.raises(OSError):  # the listener waits for its filter: not bound
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
