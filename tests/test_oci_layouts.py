"""Every wasm image layout, pushed to a real registry, resolves to the exact module bytes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import oras.client
import pytest
from structlog.testing import capture_logs

from tests.fixtures.registry import RegistryProcess, make_wasm
from xds_server.wasm import (
    InvalidModule,
    ModuleSource,
    ModuleStore,
    ModuleTooLarge,
    RegistryClient,
    UnsafeArchive,
    UnsupportedLayout,
    push,
)
from xds_server.wasm.image_layout import (
    CNCF_CONFIG,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_LAYER_TAR,
    WASME_CONFIG,
    WASME_LAYER,
)
from xds_server.wasm.push import Layer, compat_layer, push_image
from xds_server.wasm.reference import parse_reference
from xds_server.wasm.registry import OCI_INDEX

pytestmark = pytest.mark.registry


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(retries=1, backoff_base=0.01, backoff_max=0.02) as c:
        yield c


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ModuleStore]:
    s = ModuleStore(tmp_path / "store", retries=1, backoff_base=0.01, backoff_max=0.02)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.mark.parametrize("layout", ["wasme", "cncf", "wasm-to-oci", "compat", "compat-docker"])
async def test_each_layout_resolves_to_exact_bytes(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore, layout: str
) -> None:
    wasm = make_wasm(f"layout-{layout}")
    ref = f"{registry.host}/layouts/{layout}:v1"
    pushed = await push(client, ref, wasm, layout=layout, root_ids=["my_root"])

    module = await store.resolve(ModuleSource("image", ref))

    assert module.read_bytes() == wasm
    assert module.layout == layout.removesuffix("-docker")
    assert module.manifest_digest == pushed.manifest_digest
    assert module.sha256 == pushed.module_sha256
    assert module.root_ids == (("my_root",) if layout == "wasme" else ())
    if layout == "compat":
        assert module.annotations["module.wasm.image/variant"] == "compat"
    assert list((store.root / "blobs" / "sha256").glob(".tmp-*")) == []  # streamed, installed


@pytest.mark.parametrize(
    "config",
    [
        {"type": "envoy_proxy", "abi_version": "v0.2.1", "config": {"root_ids": ["snake"]}},
        {"type": "envoy_proxy", "abiVersions": ["v0-abc"], "config": {"rootIds": ["camel"]}},
        {"type": "envoy_proxy", "abiVersions": ["v0-abc"], "rootIds": ["top"]},
    ],
)
async def test_wasme_root_ids_in_either_spelling(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore,
    config: dict[str, object],
) -> None:
    wasm = make_wasm("wasme-spelling")
    ref = parse_reference(f"{registry.host}/layouts/wasme-spelling:{len(json.dumps(config))}")
    await push_image(
        client, ref, config=json.dumps(config).encode(), config_media_type=WASME_CONFIG,
        layers=[Layer(wasm, WASME_LAYER)],
    )
    module = await store.resolve(ModuleSource("image", str(ref)))
    assert module.read_bytes() == wasm
    assert len(module.root_ids) == 1
    assert module.root_ids[0] in ("snake", "camel", "top")


async def test_wasme_config_that_is_not_json_leaves_no_layer_behind(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore,
) -> None:
    """The config blob downloads while the layer streams to a temp file in the store: when
    the config is refused, the layer's file goes too and nothing is stored."""
    wasm = make_wasm("wasme-bad-config")
    ref = parse_reference(f"{registry.host}/layouts/wasme-bad-config:v1")
    await push_image(client, ref, config=b"not json", config_media_type=WASME_CONFIG,
                     layers=[Layer(wasm, WASME_LAYER)])
    with pytest.raises(InvalidModule, match=r"wasme config .* is not JSON"):
        await store.resolve(ModuleSource("image", str(ref)))
    assert list((store.root / "blobs" / "sha256").iterdir()) == []


async def test_image_index_chooses_wasm_entry(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    linux = make_wasm("index-linux")
    wasm = make_wasm("index-wasm")
    base = f"{registry.host}/layouts/index"
    linux_push = await push(client, f"{base}:linux", linux, layout="compat")
    wasm_push = await push(client, f"{base}:wasm", wasm, layout="cncf")
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": linux_push.manifest_digest, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": wasm_push.manifest_digest, "size": 1,
             "platform": {"os": "wasip1", "architecture": "wasm"}},
        ],
    }
    raw = json.dumps(index).encode()
    # Descriptor sizes must be right for the registry to accept the index.
    for entry in index["manifests"]:  # type: ignore[attr-defined]
        manifest = await client.get_manifest(parse_reference(base + ":x"), entry["digest"])
        entry["size"] = len(manifest.raw)
    raw = json.dumps(index).encode()
    index_digest = await client.push_manifest(parse_reference(f"{base}:multi"), raw, OCI_INDEX)

    with capture_logs() as logs:
        module = await store.resolve(ModuleSource("image", f"{base}:multi"))

    assert module.read_bytes() == wasm
    assert module.manifest_digest == index_digest
    chosen = [e for e in logs if e["event"] == "image_index_entry_chosen"]
    assert chosen and chosen[0]["reason"] == "wasm"
    assert chosen[0]["digest"] == wasm_push.manifest_digest


async def test_oversized_module_is_refused(
    registry: RegistryProcess, client: RegistryClient, tmp_path: Path
) -> None:
    wasm = make_wasm("big", padding_bytes=20_000)
    ref = f"{registry.host}/bad/big:v1"
    await push(client, ref, wasm)
    store = ModuleStore(tmp_path / "s", max_module_bytes=10_000, retries=0)
    await store.start()
    try:
        with pytest.raises(ModuleTooLarge, match=r"above the cap of 10000") as info:
            await store.resolve(ModuleSource("image", ref))
        assert "bad/big:v1" in str(info.value)
    finally:
        await store.close()


async def test_non_wasm_blob_is_refused(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    ref = f"{registry.host}/bad/notwasm:v1"
    await push(client, ref, b"#!/bin/sh\necho not wasm\n", validate=False)
    with pytest.raises(InvalidModule, match="is not a WebAssembly module") as info:
        await store.resolve(ModuleSource("image", ref))
    assert "bad/notwasm:v1" in str(info.value) and "sha256:" in str(info.value)


async def test_wasm_without_proxy_abi_is_refused(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    ref = f"{registry.host}/bad/noabi:v1"
    await push(client, ref, make_wasm("noabi", abi=False), validate=False)
    with pytest.raises(InvalidModule, match="proxy_abi_version_"):
        await store.resolve(ModuleSource("image", ref))


async def test_truncated_wasm_fails_validation(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    ref = f"{registry.host}/bad/truncated:v1"
    await push(client, ref, make_wasm("trunc")[:-3], validate=False)
    with pytest.raises(InvalidModule, match="failed WebAssembly validation"):
        await store.resolve(ModuleSource("image", ref))


def _tar(entries: list[tuple[str, bytes | None, str | None]]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data, link in entries:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type = tarfile.SYMTYPE
                info.linkname = link
                archive.addfile(info)
            else:
                info.size = len(data or b"")
                archive.addfile(info, io.BytesIO(data or b""))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "layer", "media_type", "error", "message"),
    [
        ("traversal", _tar([("../plugin.wasm", make_wasm("t"), None)]), OCI_LAYER_TAR,
         UnsafeArchive, "escapes the extraction directory"),
        ("absolute", _tar([("/etc/plugin.wasm", make_wasm("t"), None)]), OCI_LAYER_TAR,
         UnsafeArchive, "escapes the extraction directory"),
        ("symlink", _tar([("plugin.wasm", None, "/etc/passwd")]), OCI_LAYER_TAR,
         UnsafeArchive, "links are refused"),
        ("bomb", __import__("gzip").compress(_tar([("plugin.wasm", b"\0" * 3_000_000, None)])),
         OCI_LAYER_GZIP, UnsafeArchive, "decompression bomb"),
        ("empty", compat_layer(b"x", name="other.wasm")[0], OCI_LAYER_GZIP,
         InvalidModule, "no plugin.wasm"),
    ],
)
async def test_unsafe_compat_layers_are_refused(
    registry: RegistryProcess, client: RegistryClient, tmp_path: Path,
    name: str, layer: bytes, media_type: str, error: type[Exception], message: str,
) -> None:
    ref = parse_reference(f"{registry.host}/bad/tar-{name}:v1")
    await push_image(
        client, ref, config=b'{"architecture":"amd64","os":"linux"}',
        config_media_type=OCI_CONFIG, layers=[Layer(layer, media_type)],
    )
    store = ModuleStore(tmp_path / "s", max_module_bytes=100_000, retries=0)
    await store.start()
    try:
        with pytest.raises(error, match=message) as info:
            await store.resolve(ModuleSource("image", str(ref)))
        assert f"bad/tar-{name}:v1" in str(info.value)
    finally:
        await store.close()


async def test_unknown_layout_is_refused(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    ref = parse_reference(f"{registry.host}/bad/unknown:v1")
    await push_image(
        client, ref, config=b"{}", config_media_type="application/vnd.example.config+json",
        layers=[Layer(b"hello", "application/vnd.example.thing")],
    )
    with pytest.raises(UnsupportedLayout, match="no wasm layout matches"):
        await store.resolve(ModuleSource("image", str(ref)))


async def test_cncf_config_alone_selects_cncf(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore
) -> None:
    wasm = make_wasm("cncf-config")
    ref = parse_reference(f"{registry.host}/layouts/cncf-config:v1")
    await push_image(
        client, ref, config=b"{}", config_media_type=CNCF_CONFIG,
        layers=[Layer(wasm, "application/vnd.wasm.content.layer.v1+wasm")],
    )
    module = await store.resolve(ModuleSource("image", str(ref)))
    assert module.layout == "cncf" and module.read_bytes() == wasm


async def test_oras_pushed_image_with_empty_config_is_wasme_without_root_ids(
    registry: RegistryProcess, store: ModuleStore, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `oras push` writes with `/dev/null` as config: an empty config blob."""
    wasm = make_wasm("oras-empty-config")
    monkeypatch.chdir(tmp_path)
    await asyncio.to_thread(Path("filter.wasm").write_bytes, wasm)
    ref = f"{registry.host}/layouts/oras-empty:v1"
    oras_client = oras.client.OrasClient(hostname=registry.host, insecure=True)
    await asyncio.to_thread(
        oras_client.push,
        files=["filter.wasm:application/vnd.module.wasm.content.layer.v1+wasm"],
        target=ref,
        manifest_config="/dev/null:application/vnd.module.wasm.config.v1+json",
    )
    module = await store.resolve(ModuleSource("image", ref))
    assert module.read_bytes() == wasm
    assert module.layout == "wasme" and module.root_ids == ()


@pytest.mark.parametrize(
    ("config", "media_type"),
    [
        (b"", WASME_CONFIG),
        (b"{}", WASME_CONFIG),
        (b"{}", "application/vnd.oci.empty.v1+json"),
        (b"", "application/vnd.unknown.config.v1+json"),
        (b"{}", "application/vnd.unknown.config.v1+json"),
    ],
)
async def test_configs_that_mean_none_give_no_root_ids(
    registry: RegistryProcess, client: RegistryClient, store: ModuleStore,
    config: bytes, media_type: str,
) -> None:
    wasm = make_wasm("no-config")
    tag = f"{media_type.split('.')[1]}-{len(config)}"
    ref = parse_reference(f"{registry.host}/layouts/no-config:{tag}")
    await push_image(
        client, ref, config=config, config_media_type=media_type,
        layers=[Layer(wasm, WASME_LAYER)],
    )
    module = await store.resolve(ModuleSource("image", str(ref)))
    assert module.read_bytes() == wasm
    assert module.layout == "wasme" and module.root_ids == ()
