"""Fetch safety: the guard on resolved addresses, caps on what registries send, timeouts.

Hostile registries here are small aiohttp apps on 127.0.0.1 (loopback is allowed by
default); the refused destinations are never connected to: the guard refuses before any
socket is opened, so these tests need no network and finish fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.fixtures.registry import make_wasm
from xds_server.wasm import (
    AddressPolicy,
    FetchGuard,
    FetchLimits,
    ModuleSource,
    ModuleStore,
    ModuleTooLarge,
    RegistryClient,
    RegistryError,
    RegistrySettings,
    RegistryUnavailable,
    UnsafeArchive,
    UnsafeDestination,
    parse_reference,
)
from xds_server.wasm._http import fetch_url
from xds_server.wasm.guard import GuardedConnector
from xds_server.wasm.image_layout import WASM_TO_OCI_LAYER
from xds_server.wasm.layouts import fetch_image_module
from xds_server.wasm.retry import RetryPolicy

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# A call that the client's own limits should end is also bounded by GUARD (far longer than
# those limits), so a missing limit fails the test instead of hanging it.
GUARD = 60.0
FAST = FetchLimits(connect_timeout=0.5, read_timeout=0.5, request_total=2.0, download_total=2.0)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the address policy ---------------------------------------------------------------


@pytest.mark.parametrize(("address", "reason"), [
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ("2002:a9fe:a9fe::1", "cloud metadata"),
    ("::169.254.169.254", "cloud metadata"),
    ("10.0.0.1", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "CGNAT"),
    ("fc00::1", "unique local"),
    ("fd12:3456::1", "unique local"),
])
def test_default_policy_refuses(address: str, reason: str) -> None:
    refusal = AddressPolicy().refusal(address)
    assert refusal is not None and reason in refusal, refusal


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "8.8.8.8", "1.1.1.1", "172.32.0.1", "192.0.2.2",
    "2606:4700:4700::1111", "::ffff:8.8.8.8",
])
def test_default_policy_allows(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_allow_private_never_allows_metadata_or_link_local() -> None:
    policy = AddressPolicy(allow_private=True)
    for address in ("10.0.0.1", "192.168.0.10", "100.64.1.1", "fc00::1"):
        assert policy.refusal(address) is None
    for address in ("169.254.169.254", "fd00:ec2::254", "fe80::1", "169.254.0.1", "0.0.0.0"):
        assert policy.refusal(address) is not None


def test_loopback_can_be_refused() -> None:
    policy = AddressPolicy(allow_loopback=False)
    assert "loopback" in (policy.refusal("127.0.0.1") or "")
    assert "loopback" in (policy.refusal("::1") or "")
    assert "loopback" in (policy.refusal("::ffff:127.0.0.1") or "")


def test_policy_chosen_by_host_and_port() -> None:
    private = AddressPolicy(allow_private=True)
    guard = FetchGuard({"reg.internal:5000": private, "other.internal": private,
                        "[fd00::5]:5000": private})
    assert guard.policy_for("reg.internal", 5000) is private
    assert guard.policy_for("REG.internal.", 5000) is private
    assert guard.policy_for("reg.internal", 443) == AddressPolicy()
    assert guard.policy_for("other.internal", 8443) is private
    assert guard.policy_for("fd00::5", 5000) is private
    assert guard.check_name("metadata.google.internal") is not None
    assert guard.check_name("Metadata.Google.Internal.") is not None
    assert guard.check_name("registry.example.com") is None


def test_socket_factory_refuses_forbidden_address_whatever_the_path() -> None:
    guard = FetchGuard()
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))
    with pytest.raises(UnsafeDestination, match="cloud metadata"):
        guard.socket_factory(info)
    ok = guard.socket_factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)))
    ok.close()


def test_registry_settings_carry_the_policy() -> None:
    settings = RegistrySettings(host="10.0.0.5:5000", allow_private=True, allow_loopback=False)
    assert settings.address_policy == AddressPolicy(allow_private=True, allow_loopback=False)
    assert RegistrySettings(host="x").address_policy == AddressPolicy()


# -- a scriptable fake registry on loopback --------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeRegistry:
    """Routes exact paths to handlers; counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        handler = self.routes.get(request.path)
        if handler is None:
            return web.json_response({"errors": [{"code": "NOT_FOUND"}]}, status=404)
        return await handler(request)

    def json(self, path: str, body: Any, *, content_type: str = OCI_MANIFEST) -> bytes:
        raw = json.dumps(body).encode()
        self.raw(path, raw, content_type=content_type)
        return raw

    def raw(self, path: str, raw: bytes, *, content_type: str = "application/octet-stream",
            status: int = 200, headers: dict[str, str] | None = None) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=raw, status=status, content_type=content_type,
                                headers=headers or {})
        self.routes[path] = handler

    def redirect(self, path: str, location: str) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=307, headers={"Location": location})
        self.routes[path] = handler

    def image(self, repo: str, wasm: bytes, *, tag: str = "v1",
              blob_path: bool = True) -> tuple[str, str]:
        """A wasm-to-oci image; returns (layer digest, blob path)."""
        layer = sha(wasm)
        config = b"{}"
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.wasm.config.v1+json", "digest": sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": WASM_TO_OCI_LAYER, "digest": layer, "size": len(wasm)}],
        }
        self.json(f"/v2/{repo}/manifests/{tag}", manifest)
        path = f"/v2/{repo}/blobs/{layer}"
        if blob_path:
            self.raw(path, wasm)
        return layer, path

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    registry = FakeRegistry()
    await registry.start()
    try:
        yield registry
    finally:
        await registry.stop()


def client(**kw: Any) -> RegistryClient:
    kw.setdefault("retries", 0)
    kw.setdefault("limits", FAST)
    return RegistryClient(**kw)


# -- refused destinations: URLs, registries, token realms, redirects ------------------------


async def test_url_source_to_metadata_is_refused(tmp_path: Path) -> None:
    async with client() as c:
        store = ModuleStore(tmp_path / "store", client=c)
        await store.start()
        url = "http://169.254.169.254/latest/meta-data/iam"
        with pytest.raises(UnsafeDestination) as info:  # refused before connecting, not timed out
            await asyncio.wait_for(store.resolve(ModuleSource("url", url, sha256="a" * 64)), GUARD)
        assert url in str(info.value) and "cloud metadata address" in str(info.value)
        assert info.value.address == "169.254.169.254"
        with pytest.raises(UnsafeDestination, match="metadata service name"):
            await store.resolve(ModuleSource(
                "url", "http://metadata.google.internal/computeMetadata/v1/", sha256="a" * 64))
        with pytest.raises(UnsafeDestination, match=r"\[fd00:ec2::254\].*cloud metadata"):
            await store.resolve(ModuleSource("url", "http://[fd00:ec2::254]/x", sha256="a" * 64))
        assert store.modules() == []
        await store.close()


async def test_registry_on_private_address_is_refused_unless_allowed() -> None:
    ref = parse_reference("10.255.255.1:5000/team/x:v1")
    async with client() as c:
        with pytest.raises(UnsafeDestination, match=r"10\.255\.255\.1.*private address"):
            await c.get_manifest(ref)
    settings = RegistrySettings(host="10.255.255.1:5000", allow_private=True, plain_http=True)
    async with client(registries=[settings], limits=FetchLimits(connect_timeout=0.2)) as c:
        with pytest.raises(RegistryError) as info:  # let through: whatever answers, or not
            await c.get_manifest(ref)
    assert not isinstance(info.value, UnsafeDestination)


class MapResolver(AbstractResolver):
    """Answers from a table; each name's answers rotate (a rebinding DNS server)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: dict[str, int] = {}

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        n = self.calls.get(host, 0)
        self.calls[host] = n + 1
        answers = self.table[host][min(n, len(self.table[host]) - 1)]
        return [ResolveResult(hostname=host, host=a, port=port,
                              family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                              proto=0, flags=0) for a in answers]

    async def close(self) -> None:
        pass


async def test_dns_rebinding_is_checked_on_every_connection(fake: FakeRegistry) -> None:
    # The name resolves to loopback first, then to the metadata address: each new
    # connection is checked on the address it actually uses.
    resolver = MapResolver({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    connector = GuardedConnector(FetchGuard(), resolver=resolver, use_dns_cache=False,
                                 force_close=True)
    fake.raw("/v2/", b"{}", content_type="application/json")
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://rebind.test:{fake.port}/v2/") as response:
            assert response.status == 200
        with pytest.raises(UnsafeDestination) as info:
            await session.get(f"http://rebind.test:{fake.port}/v2/")
    assert info.value.url == f"http://rebind.test:{fake.port}/v2/"
    assert "rebind.test (169.254.169.254) is a cloud metadata address" in str(info.value)
    assert fake.hits == ["/v2/"]


async def test_registry_name_resolving_to_metadata_is_refused(fake: FakeRegistry) -> None:
    fake.image("team/x", make_wasm("named"))
    resolver = MapResolver({"evil.test": [["169.254.169.254"]]})
    async with client(resolver=resolver) as c:
        with pytest.raises(UnsafeDestination, match=r"evil\.test \(169\.254\.169\.254\)"):
            await c.get_manifest(parse_reference(f"evil.test:{fake.port}/team/x:v1"))
    assert fake.hits == []


async def test_unsafe_answers_are_skipped_safe_ones_used(fake: FakeRegistry) -> None:
    fake.image("team/x", make_wasm("mixed"))
    resolver = MapResolver({"mixed.test": [["169.254.169.254", "10.0.0.1", "127.0.0.1"]]})
    host = f"mixed.test:{fake.port}"
    async with client(resolver=resolver, registries=[RegistrySettings(host, plain_http=True)]) as c:
        manifest = await c.get_manifest(parse_reference(f"{host}/team/x:v1"))
    assert manifest.media_type == OCI_MANIFEST


async def test_token_realm_on_metadata_address_is_refused(fake: FakeRegistry) -> None:
    for realm, reason in (("http://169.254.169.254/latest/api/token", "cloud metadata address"),
                          ("http://metadata.google.internal/token", "metadata service name"),
                          ("http://192.168.0.1:8080/token", "private address")):
        challenge = f'Bearer realm="{realm}",service="reg",scope="repository:team/x:pull"'
        fake.raw("/v2/team/x/manifests/v1", b"{}", status=401, content_type="application/json",
                 headers={"WWW-Authenticate": challenge})
        async with client() as c:
            with pytest.raises(UnsafeDestination) as info:
                await c.get_manifest(parse_reference(f"{fake.host}/team/x:v1"))
        assert realm.split("?")[0] in str(info.value) and reason in str(info.value)


async def test_token_realm_must_be_http(fake: FakeRegistry) -> None:
    fake.raw("/v2/team/x/manifests/v1", b"{}", status=401, content_type="application/json",
             headers={"WWW-Authenticate": 'Bearer realm="file:///etc/passwd"'})
    async with client() as c:
        with pytest.raises(RegistryError, match="not http"):
            await c.get_manifest(parse_reference(f"{fake.host}/team/x:v1"))


async def test_blob_redirect_to_metadata_is_refused(fake: FakeRegistry) -> None:
    wasm = make_wasm("redirected")
    _, path = fake.image("team/x", wasm, blob_path=False)
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    fake.redirect(path, target)
    ref = parse_reference(f"{fake.host}/team/x:v1")
    async with client() as c:
        with pytest.raises(UnsafeDestination) as info:
            await fetch_image_module(c, ref, max_bytes=2**20)
    assert info.value.url == target and "cloud metadata address" in str(info.value)
    # A redirect to storage that the guard allows is followed.
    fake.raw("/storage/blob", wasm)
    fake.redirect(path, f"http://{fake.host}/storage/blob")
    async with client() as c:
        fetched = await fetch_image_module(c, ref, max_bytes=2**20)
    assert fetched.data == wasm and "/storage/blob" in fake.hits
    # A redirect to a private address: refused without connecting.
    fake.redirect(path, "http://10.20.30.40/bucket/blob")
    async with client() as c:
        with pytest.raises(UnsafeDestination, match=r"http://10\.20\.30\.40/bucket/blob"):
            await fetch_image_module(c, ref, max_bytes=2**20)


async def test_redirect_chain_is_capped(fake: FakeRegistry) -> None:
    for i in range(10):
        fake.redirect(f"/r{i}", f"http://{fake.host}/r{i + 1}")
    async with client() as c:
        with pytest.raises(RegistryError, match="redirect"):
            await fetch_url(c.session, f"http://{fake.host}/r0", sha256="0" * 64, max_bytes=100,
                            retry=RetryPolicy(retries=0), limits=FAST)
    assert "/r6" not in fake.hits  # the default cap: 5 redirects


# -- caps --------------------------------------------------------------------------------


async def test_manifest_size_cap(fake: FakeRegistry) -> None:
    big = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (4 * 2**20)}
    fake.json("/v2/team/x/manifests/v1", big)
    async with client() as c:
        with pytest.raises(ModuleTooLarge, match="above the cap of 4194304"):
            await c.get_manifest(parse_reference(f"{fake.host}/team/x:v1"))

    async def chunked(request: web.Request) -> web.StreamResponse:  # no Content-Length
        response = web.StreamResponse(headers={"Content-Type": OCI_MANIFEST})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(70):
            await response.write(b" " * 65536)
        return response

    fake.routes["/v2/team/x/manifests/v2"] = chunked
    async with client() as c:
        with pytest.raises(ModuleTooLarge, match="larger than the cap"):
            await c.get_manifest(parse_reference(f"{fake.host}/team/x:v2"))


async def test_layer_and_index_entry_caps(fake: FakeRegistry) -> None:
    layer = {"mediaType": WASM_TO_OCI_LAYER, "digest": "sha256:" + "1" * 64, "size": 1}
    fake.json("/v2/team/x/manifests/v1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                          "config": {}, "layers": [layer] * 65})
    entry = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1}
    fake.json("/v2/team/x/manifests/v2", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": [entry] * 257}, content_type=OCI_INDEX)
    fake.json("/v2/team/x/manifests/v3", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                          "manifests": [{"digest": "sha256:../../x"}]},
              content_type=OCI_INDEX)
    async with client() as c:
        with pytest.raises(ModuleTooLarge, match="65 layers, above the cap of 64"):
            await fetch_image_module(c, parse_reference(f"{fake.host}/team/x:v1"), max_bytes=100)
        with pytest.raises(ModuleTooLarge, match="257 manifests, above the cap of 256"):
            await fetch_image_module(c, parse_reference(f"{fake.host}/team/x:v2"), max_bytes=100)
        with pytest.raises(RegistryError, match="sha256"):
            await fetch_image_module(c, parse_reference(f"{fake.host}/team/x:v3"), max_bytes=100)


async def test_token_response_cap(fake: FakeRegistry) -> None:
    fake.raw("/token", json.dumps({"token": "t" * (70 * 1024)}).encode(),
             content_type="application/json")
    challenge = f'Bearer realm="http://{fake.host}/token",service="reg"'
    fake.raw("/v2/team/x/manifests/v1", b"{}", status=401, content_type="application/json",
             headers={"WWW-Authenticate": challenge})
    async with client() as c:
        with pytest.raises(ModuleTooLarge, match=r"token response .* above the cap of 65536"):
            await c.get_manifest(parse_reference(f"{fake.host}/team/x:v1"))


async def test_hostile_manifest_bodies_give_clear_errors(fake: FakeRegistry) -> None:
    cases = {
        "deep": (b"[" * 200_000 + b"]" * 200_000, OCI_MANIFEST, "not JSON"),
        "html": (b"<html>login</html>", "text/html", "served as 'text/html'"),
        "binary": (b"\xff\xfe\x00garbage", OCI_MANIFEST, "not JSON"),
        "list": (b"[1, 2]", OCI_MANIFEST, "not a JSON object"),
        "mismatch": (json.dumps({"mediaType": OCI_INDEX}).encode(), OCI_MANIFEST,
                     "declares mediaType"),
        "badtype": (json.dumps({"mediaType": 7}).encode(), OCI_MANIFEST, "not a string"),
    }
    async with client() as c:
        for tag, (raw, ctype, message) in cases.items():
            fake.raw(f"/v2/team/x/manifests/{tag}", raw, content_type=ctype)
            with pytest.raises(RegistryError, match=message):
                await c.get_manifest(parse_reference(f"{fake.host}/team/x:{tag}"))


async def test_huge_error_body_is_not_read_whole(fake: FakeRegistry) -> None:
    fake.raw("/v2/team/x/manifests/v1", b"E" * (8 * 2**20), status=400,
             content_type="text/plain")
    async with client() as c:
        with pytest.raises(RegistryError) as info:
            await c.get_manifest(parse_reference(f"{fake.host}/team/x:v1"))
    assert len(str(info.value)) < 1000


async def test_tar_member_count_cap() -> None:
    import io
    import tarfile

    from xds_server.wasm._archive import extract_plugin

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for i in range(2001):
            archive.addfile(tarfile.TarInfo(f"d/{i}"), io.BytesIO(b""))
    with pytest.raises(UnsafeArchive, match="more than 2000 tar entries"):
        extract_plugin(buffer.getvalue(), max_bytes=2**20, where="layer", max_members=2000)


# -- timeouts ------------------------------------------------------------------------------


async def hang_forever(request: web.Request) -> web.StreamResponse:
    """A handler that never answers (until the fake registry stops)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_registry_that_never_answers_times_out(fake: FakeRegistry) -> None:
    """The client's own timeout ends the request: a timeout error, well before GUARD."""
    fake.routes["/v2/team/x/manifests/v1"] = hang_forever
    async with client() as c:
        with pytest.raises(RegistryUnavailable, match=r"unreachable after 1 attempts .*Timeout"):
            await asyncio.wait_for(c.get_manifest(parse_reference(f"{fake.host}/team/x:v1")), GUARD)


async def test_trickling_blob_hits_the_total_timeout(fake: FakeRegistry) -> None:
    wasm = make_wasm("trickle", padding_bytes=4096)
    _, path = fake.image("team/x", wasm, blob_path=False)

    sent: list[int] = []

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(wasm))})
        await response.prepare(request)
        for byte in wasm:  # one byte every 0.2 s: about 14 minutes for the whole blob
            await response.write(bytes([byte]))
            sent.append(1)
            await asyncio.sleep(0.2)  # far below the read timeout: only the total one ends it
        return response

    fake.routes[path] = trickle
    limits = FetchLimits(read_timeout=GUARD, request_total=GUARD, download_total=1.0)
    async with client(limits=limits) as c:
        with pytest.raises(RegistryUnavailable, match=r"download failed .*Timeout"):
            await asyncio.wait_for(fetch_image_module(
                c, parse_reference(f"{fake.host}/team/x:v1"), max_bytes=2**20), GUARD)
    assert 0 < sum(sent) < len(wasm)  # cut off mid-body


async def test_slow_token_service_times_out(fake: FakeRegistry) -> None:
    fake.routes["/token"] = hang_forever
    fake.raw("/v2/team/x/manifests/v1", b"{}", status=401, content_type="application/json",
             headers={"WWW-Authenticate": f'Bearer realm="http://{fake.host}/token"'})
    async with client() as c:
        with pytest.raises(RegistryUnavailable, match=r"token service .*Timeout"):
            await asyncio.wait_for(c.get_manifest(parse_reference(f"{fake.host}/team/x:v1")), GUARD)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="max_layers"):
        FetchLimits(max_layers=0)
    t = FetchLimits().timeout(download=True)
    assert t.total == 900.0 and t.sock_read == 30.0 and t.sock_connect == 30.0
