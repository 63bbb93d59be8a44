"""Hostile inputs, property-based: every parser answers with its own clear error, never a
crash, a hang or a memory blow-up. Then each atheris fuzz target in fuzz/ runs briefly.

Each property is bounded (``max_examples``, ``deadline``) so the file runs well under a
minute; the fuzzers in fuzz/ run the same parsers for as long as one wants (SECURITY.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from aiohttp.abc import AbstractResolver, ResolveResult
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.net import free_port
from tests.fixtures.server import running_server, write_config
from tests.xds_client import XdsClient, delta_request, node, sotw_request
from xds_server.cache import ECDS, TYPED_EXTENSION_CONFIG, ResourceCache
from xds_server.config import ConfigError, FilterSpec, load_config, parse_config, parse_filter_spec
from xds_server.status import StatusTracker
from xds_server.wasm import (
    InvalidModule,
    InvalidReference,
    ModuleStore,
    ModuleTooLarge,
    RegistryError,
    UnsupportedLayout,
    parse_reference,
)
from xds_server.wasm._archive import extract_plugin
from xds_server.wasm.image_layout import wasme_root_ids
from xds_server.wasm.layouts import choose_index_entry, detect_layout
from xds_server.wasm.registry import parse_manifest
from xds_server.xds import XdsService

ROOT = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | \
    st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=30,
)

# -- image references ----------------------------------------------------------------

reference_alphabet = st.sampled_from([*list("abcz09.-_:/@[]AZ"), "sha256:", "oci://", "a" * 64])


@FAST
@given(st.text(max_size=300) | st.lists(reference_alphabet, max_size=40).map("".join))
def test_reference_parses_or_says_why(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference as error:
        assert str(error)
        return
    assert parse_reference(str(ref)) == ref  # canonical form round-trips
    assert ref.tag or ref.digest


def test_reference_of_megabytes_is_refused_quickly() -> None:
    for text in ("a/" * 500_000 + "b", "x" * 2_000_000, "a@sha256:" + "f" * 1_000_000):
        with pytest.raises(InvalidReference):
            parse_reference(text)


# -- manifests, indexes, runtime configs ----------------------------------------------

descriptor = st.fixed_dictionaries({}, optional={
    "mediaType": st.sampled_from([
        "application/vnd.module.wasm.content.layer.v1+wasm", "application/wasm",
        "application/vnd.wasm.content.layer.v1+wasm", "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip", "x/y",
    ]) | json_values,
    "digest": st.just("sha256:" + "a" * 64) | json_values,
    "size": st.integers() | json_values,
    "annotations": json_values,
    "platform": st.fixed_dictionaries({}, optional={"os": json_values, "architecture": json_values}),
})
manifest_like: Any = st.fixed_dictionaries({}, optional={
    "mediaType": json_values,
    "config": st.fixed_dictionaries({}, optional={"mediaType": st.sampled_from([
        "application/vnd.module.wasm.config.v1+json", "application/vnd.wasm.config.v0+json",
    ]) | json_values, "digest": json_values}) | json_values,
    "layers": st.lists(descriptor, max_size=8) | st.just([{}] * 65) | json_values,
    "manifests": st.lists(descriptor, max_size=8) | st.just([{}] * 257) | json_values,
}) | json_values


@FAST
@given(manifest_like)
def test_layout_detection_on_random_json(doc: Any) -> None:
    if not isinstance(doc, dict):
        doc = {"layers": doc}
    try:
        layout, layer = detect_layout(doc)
    except (UnsupportedLayout, ModuleTooLarge) as error:
        assert str(error)
        return
    assert layout in ("wasme", "cncf", "wasm-to-oci", "compat") and isinstance(layer, dict)


@FAST
@given(manifest_like)
def test_index_entry_choice_on_random_json(doc: Any) -> None:
    if not isinstance(doc, dict):
        doc = {"manifests": doc}
    try:
        entry = choose_index_entry(doc, parse_reference("r.example/x:v1"))
    except (UnsupportedLayout, ModuleTooLarge):
        return
    assert isinstance(entry, dict)


@FAST
@given(st.binary(max_size=2000) | manifest_like.map(lambda d: json.dumps(d).encode()),
       st.sampled_from(["", "application/json", "text/html",
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json"]))
def test_manifest_bytes_parse_or_registry_error(raw: bytes, content_type: str) -> None:
    try:
        media_type, _, _, data = parse_manifest(raw, content_type, what="m", digest="sha256:x")
    except RegistryError as error:
        assert str(error)
        return
    assert isinstance(data, dict) and media_type


@FAST
@given(json_values | st.fixed_dictionaries({}, optional={
    "config": st.fixed_dictionaries({}, optional={"root_ids": json_values, "rootIds": json_values}),
    "rootIds": json_values, "root_ids": json_values}))
def test_wasme_root_ids_on_random_json(doc: Any) -> None:
    ids = wasme_root_ids(doc if isinstance(doc, dict) else {"config": doc})
    assert isinstance(ids, tuple) and all(isinstance(i, str) and i for i in ids)


# -- tar layers ----------------------------------------------------------------------


@st.composite
def tar_layers(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=draw(st.sampled_from(
            [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]))) as archive:
        for _ in range(draw(st.integers(0, 8))):
            name = draw(st.sampled_from(["plugin.wasm", "a/plugin.wasm", "../plugin.wasm",
                                         "/plugin.wasm", "x", "a/../../b"]) | st.text(
                                             "abc./", min_size=1, max_size=30))
            info = tarfile.TarInfo(name)
            info.type = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE,
                                              tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE]))
            info.linkname = draw(st.text("abc./", max_size=10))
            body = draw(st.binary(max_size=64)) if info.type == tarfile.REGTYPE else b""
            info.size = len(body)
            try:
                archive.addfile(info, io.BytesIO(body))
            except (ValueError, UnicodeError):
                continue
    data = buffer.getvalue()
    if draw(st.booleans()):  # flip some bytes
        flips = draw(st.lists(st.tuples(st.integers(0, max(len(data) - 1, 0)),
                                        st.integers(0, 255)), max_size=4))
        mutable = bytearray(data)
        for at, value in flips:
            if mutable:
                mutable[at] = value
        data = bytes(mutable)
    return data


@FAST
@given(st.binary(max_size=4096) | tar_layers())
def test_tar_layer_extracts_or_says_why(data: bytes) -> None:
    try:
        module = extract_plugin(data, max_bytes=1024, where="layer")
    except (InvalidModule, ModuleTooLarge) as error:  # UnsafeArchive is an InvalidModule
        assert str(error) and len(str(error)) < 2000
        return
    assert len(module) <= 1024


def test_tar_layer_with_huge_member_count_is_refused() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        empty = tarfile.TarInfo("d/x")
        for i in range(12_000):
            empty.name = f"d/{i}"
            archive.addfile(empty)
    with pytest.raises(InvalidModule, match="more than 10000 tar entries"):
        extract_plugin(buffer.getvalue(), max_bytes=2**20, where="layer")


def test_gzip_bomb_layer_is_refused() -> None:
    import gzip
    bomb = gzip.compress(b"\0" * (64 * 2**20))
    with pytest.raises(InvalidModule, match="decompression bomb"):
        extract_plugin(bomb, max_bytes=2**20, where="layer")


# -- filter specs and config files ----------------------------------------------------

spec_like = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["f", "a/b", ""]) | json_values,
    "type": st.sampled_from(["http", "network"]) | json_values,
    "source": st.fixed_dictionaries({}, optional={
        "file": st.sampled_from(["x.wasm"]) | json_values,
        "image": st.sampled_from(["127.0.0.1:1/x:v1"]) | json_values,
        "url": st.sampled_from(["http://127.0.0.1:1/x"]) | json_values,
        "sha256": st.just("a" * 64) | json_values,
    }) | json_values,
    "sha256": json_values, "root_id": json_values, "vm_id": json_values,
    "configuration": json_values, "env": json_values,
    "failure_policy": st.sampled_from(["FAIL_CLOSED", "FAIL_OPEN"]) | json_values,
    "pull_policy": json_values, "delivery": json_values, "on_nack": json_values,
    "selector": st.fixed_dictionaries({}, optional={"node_id": json_values,
                                                    "metadata": json_values}) | json_values,
    "canary": json_values,
}) | json_values


@FAST
@given(spec_like)
def test_filter_spec_parses_or_config_error(data: Any) -> None:
    try:
        spec = parse_filter_spec(data, where="hostile", path="filters[0]")
    except ConfigError as error:
        assert "hostile" in str(error)
        return
    assert isinstance(spec, FilterSpec)


@FAST
@given(st.fixed_dictionaries({}, optional={
    "server": st.dictionaries(st.sampled_from(["xds_address", "admin_address", "data_dir",
                                               "log_level", "max_module_bytes", "limits", "tls"]),
                              json_values, max_size=4) | json_values,
    "registries": st.lists(st.dictionaries(st.sampled_from(["host", "plain_http", "username"]),
                                           json_values), max_size=3) | json_values,
    "filters": st.lists(spec_like, max_size=3) | json_values,
}) | json_values)
def test_config_parses_or_config_error(data: Any) -> None:
    try:
        parse_config(data, where="hostile.yaml")
    except ConfigError as error:
        assert "hostile.yaml" in str(error)


@SLOW
@given(st.text(max_size=400) | json_values.map(yaml.safe_dump))
def test_config_file_text_loads_or_config_error(tmp_path_factory: pytest.TempPathFactory,
                                                 text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_bytes(text.encode("utf-8", "replace"))
    try:
        load_config(path)
    except ConfigError as error:
        assert str(path) in str(error)


def test_config_file_not_utf8_is_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe filters: []")
    with pytest.raises(ConfigError):
        load_config(path)


def test_yaml_alias_bomb_is_a_config_error_or_bounded(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [*{chr(96 + i)}, *{chr(96 + i)}, "
                     f"*{chr(96 + i)}, *{chr(96 + i)}, *{chr(96 + i)}]")
    lines.append("filters: *i")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError):  # aliases share objects: no expansion in memory
        load_config(path)


# -- admin API request bodies on a real server ----------------------------------------


class NoDns(AbstractResolver):
    """Every name fails to resolve at once: hostile specs naming registries stay local."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        raise OSError(f"no DNS in this test ({host})")

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server in a thread of its own (hypothesis examples are synchronous); its
    module store fails fast (no retries, 1 s timeouts, no DNS)."""
    import functools
    import threading

    import xds_server.controller._store as store_module

    patch = pytest.MonkeyPatch()
    patch.setattr(store_module, "ModuleStore", functools.partial(
        ModuleStore, retries=0, request_timeout=1.0, resolver=NoDns()))

    cfg = write_config(tmp_path_factory.mktemp("admin") / "config.yaml", [],
                       admin_address=f"127.0.0.1:{free_port()}")
    port = load_config(cfg).server.admin_address.rsplit(":", 1)[1]
    ready = threading.Event()
    failure: list[BaseException] = []
    stop: list[asyncio.Event] = []
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        stop.append(asyncio.Event())
        try:
            async with running_server(cfg):
                ready.set()
                await stop[0].wait()
        except BaseException as error:  # surfaced below
            failure.append(error)
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30) and not failure, failure
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(30)
        patch.undo()


def _put(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": content_type, "X-Actor": "fuzz"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@SLOW
@given(st.one_of(
    spec_like.map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"specs": st.lists(spec_like, max_size=3) | json_values}).map(
        lambda d: json.dumps(d).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[]", b"null", b'"x"', b"1e999999", b"[" * 500,
                     b'{"specs": []}', b"\xff\xfe"]),
), st.sampled_from(["hostile", "a" * 300, "x%20y", "..", "f.wasm"]))
def test_admin_put_answers_4xx_json(admin_url: str, body: bytes, name: str) -> None:
    status, data = _put(f"{admin_url}/api/v1/filters/{name}", body)
    assert 400 <= status < 500, (status, data)
    assert isinstance(data, dict) and data["error"]["message"], data


envoy_like = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=20) | json_values,
    "cluster_name": st.text(max_size=20) | json_values,
    "address": json_values,
    "virtual_hosts": st.lists(json_values, max_size=3) | json_values,
    "filter_chains": st.lists(st.fixed_dictionaries({}, optional={"filters": json_values}), max_size=2),
    "typed_config": st.fixed_dictionaries({"@type": st.text(max_size=80)}),
    "selector": json_values,
    "type": st.sampled_from(["EDS", "STATIC", "NOPE"]) | json_values,
})


@SLOW
@given(st.one_of(
    envoy_like.map(lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({"specs": st.lists(envoy_like, max_size=3) | json_values}).map(
        lambda d: json.dumps(d).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"[]", b"null", b"1e999999", b"[" * 500, b'{"specs": []}', b"\xff",
                     b'{"name": "hostile.resource-7", "metadata": '
                     + b'{"filter_metadata": ' * 400 + b"{}" + b"}" * 401]),
), st.sampled_from(["listeners", "routes", "clusters", "endpoints", "secrets"]))
def test_admin_resource_put_answers_4xx_json(admin_url: str, body: bytes, kind: str) -> None:
    """Envoy resources through the API: hostile bodies are refused with a JSON 4xx."""
    status, data = _put(f"{admin_url}/api/v1/resources/{kind}/hostile.resource-7", body)
    assert 400 <= status < 500, (status, data)
    assert isinstance(data, dict) and data["error"]["message"], data


def test_admin_put_deeply_nested_json_is_400(admin_url: str) -> None:
    status, data = _put(f"{admin_url}/api/v1/filters/deep", b"[" * 100_000)
    assert status == 400, (status, data)


def test_admin_still_works_after_hostile_bodies(admin_url: str, tmp_path: Path) -> None:
    from tests.fixtures.wasm_filters import header_filter

    module = tmp_path / "good.wasm"
    module.write_bytes(header_filter("x-good", "1"))
    status, data = _put(f"{admin_url}/api/v1/filters/good",
                        json.dumps({"source": {"file": str(module)}}).encode())
    assert status in (200, 201), data


# -- DiscoveryRequests on a real gRPC server ------------------------------------------


@pytest.fixture
async def xds_server() -> AsyncIterator[tuple[XdsService, XdsClient, ResourceCache]]:
    from tests.test_xds_protocol import tec
    from xds_server.cache import Variant
    from xds_server.nodes import NodeSelector

    cache = ResourceCache()
    cache.set(TYPED_EXTENSION_CONFIG, "f1", [Variant(NodeSelector(), tec("f1", "one"))])
    service = XdsService(cache, types=[ECDS], callbacks=StatusTracker())
    server = grpc.aio.server()
    service.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = XdsClient(f"127.0.0.1:{port}")
    try:
        yield service, client, cache
    finally:
        await client.close()
        await server.stop(0)


names = st.lists(st.text(max_size=30), max_size=20) | st.integers(9_990, 10_010).map(
    lambda n: [f"n{i}" for i in range(n)]) | st.integers(1, 5).map(lambda n: ["é" * 70_000] * n)
requests = st.builds(
    lambda ns, ty, ver, nonce, nid, err: (ns, ty, ver, nonce, nid, err),
    names,
    st.sampled_from([TYPED_EXTENSION_CONFIG, "", "type.googleapis.com/x.Y", "\0" * 5]) |
    st.text(max_size=50),
    st.text(max_size=40), st.text(max_size=40), st.text(max_size=60),
    st.none() | st.text(max_size=100),
)


async def _normal_request_works(client: XdsClient) -> None:
    s = client.sotw()
    await s.send(sotw_request(["f1"], node_msg=node("after")))
    response = await s.recv(10)
    assert response.type_url == TYPED_EXTENSION_CONFIG and response.resources
    s.cancel()


async def _one_stream(client: XdsClient, delta: bool, message: Any) -> None:
    s = client.delta() if delta else client.sotw()
    await s.send(message)
    with contextlib.suppress(TimeoutError):  # still open after 0.2 s: it keeps working
        await asyncio.wait_for(s.done.wait(), 0.2)
    if s.error is not None:
        assert s.error.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.PERMISSION_DENIED), s.error
        assert s.error.details()
    s.cancel()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(requests, st.booleans())
async def test_random_discovery_requests(
    xds_server: tuple[XdsService, XdsClient, ResourceCache], request_fields: tuple[Any, ...],
    delta: bool,
) -> None:
    _, client, _ = xds_server
    ns, type_url, version, nonce, node_id, error = request_fields
    if delta:
        message = delta_request(subscribe=ns, unsubscribe=ns[:3], node_msg=node(node_id),
                                nonce=nonce, type_url=type_url, error=error)
    else:
        message = sotw_request(ns, version=version, nonce=nonce, node_msg=node(node_id),
                               type_url=type_url, error=error)
    await _one_stream(client, delta, message)
    await _normal_request_works(client)


async def test_huge_names_and_millions_of_names(
    xds_server: tuple[XdsService, XdsClient, ResourceCache],
) -> None:
    service, client, _ = xds_server
    cases = [
        sotw_request(["n" * 1_000_000], node_msg=node("huge-name")),
        sotw_request([f"{i}" for i in range(1_000_000)], node_msg=node("many")),
        sotw_request([""] * 20_000, node_msg=node("empty-names")),
        delta_request(subscribe=[f"{i}" for i in range(1_000_000)], node_msg=node("many-d")),
        sotw_request(["f1"], node_msg=node("x" * 1_000_000)),
    ]
    for i, message in enumerate(cases):
        await _one_stream(client, i == 3, message)
    await _normal_request_works(client)
    for _ in range(100):
        if service.stream_count == 0:
            break
        await asyncio.sleep(0.02)
    assert service.stream_count == 0


async def test_raw_garbage_frames(xds_server: tuple[XdsService, XdsClient, ResourceCache]) -> None:
    _, client, _ = xds_server
    method = "/envoy.service.extension.v3.ExtensionConfigDiscoveryService/StreamExtensionConfigs"
    for payload in (b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x12" + b"\xff" * 9, b""):
        call = client.channel.stream_stream(
            method, request_serializer=lambda b: b,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString)()
        await call.write(payload)
        try:
            await asyncio.wait_for(call.read(), 1.0)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        except TimeoutError:
            pass  # an empty message is a valid, empty request: the stream waits
        call.cancel()
    await _normal_request_works(client)


# -- the atheris fuzz targets, briefly ------------------------------------------------


@pytest.mark.parametrize("target", ["reference", "manifest", "tar", "filter_spec",
                                    "discovery_request", "signature"])
def test_fuzz_target_runs_clean(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / f"fuzz_{target}.py"), "-runs=20000",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr or "stat::number_of_executed_units" in result.stderr, \
        result.stderr[-2000:]
    assert not list(tmp_path.iterdir()), "crash artifacts written"

