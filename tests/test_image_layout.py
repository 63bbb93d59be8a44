"""The layout seam: each image layout is one object (media types, detect, extract, build),
and a new layout is one entry in the registry of layouts."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.registry import RegistryProcess, make_wasm
from xds_server.wasm import ModuleSource, ModuleStore, RegistryClient, UnsupportedLayout, image_layout, layouts, push
from xds_server.wasm.image_layout import (
    IMAGE_LAYOUTS,
    PUSH_LAYOUT_OBJECTS,
    Built,
    ImageLayout,
    ImageView,
    Layer,
)
from xds_server.wasm.layouts import detect_layout

push_module = importlib.import_module("xds_server.wasm.push")  # the package's `push` is the function


def _manifest(built: Built) -> dict[str, Any]:
    def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
        return {"mediaType": media_type, "size": len(data),
                "digest": "sha256:" + hashlib.sha256(data).hexdigest()}

    return {
        "schemaVersion": 2, "mediaType": built.manifest_media_type,
        "config": descriptor(built.config_media_type, built.config),
        "layers": [descriptor(layer.media_type, layer.data) for layer in built.layers],
    }


@pytest.mark.parametrize("push_name", sorted(PUSH_LAYOUT_OBJECTS))
def test_what_a_layout_builds_it_detects(push_name: str) -> None:
    layout = PUSH_LAYOUT_OBJECTS[push_name]
    wasm = make_wasm(f"seam-{push_name}")
    built = layout.build(wasm, root_ids=["r"], abi=["proxy_abi_version_0_2_1"], annotations=None)
    name, layer = detect_layout(_manifest(built))
    assert name == layout.name
    assert layer["digest"] == "sha256:" + hashlib.sha256(built.layers[-1].data).hexdigest()
    # Detection is the first match in order: no earlier layout claims this image.
    view = ImageView.of(built.config_media_type, _manifest(built)["layers"])
    matching = [candidate.name for candidate in IMAGE_LAYOUTS if candidate.detect(view)]
    assert matching[0] == layout.name


def test_layout_names_and_push_names_are_unique() -> None:
    names = [layout.name for layout in IMAGE_LAYOUTS]
    assert len(names) == len(set(names)) and tuple(names) == layouts.LAYOUTS
    assert tuple(PUSH_LAYOUT_OBJECTS) == push_module.PUSH_LAYOUTS
    assert {layout.name for layout in PUSH_LAYOUT_OBJECTS.values()} == set(names)


def test_wasme_build_carries_root_ids_and_abi() -> None:
    built = PUSH_LAYOUT_OBJECTS["wasme"].build(
        b"\0asm", root_ids=["a", "b"], abi=["proxy_abi_version_0_2_1"], annotations={"k": "v"}
    )
    assert built.config == (b'{"type":"envoy_proxy","abi_version":"0_2_1",'
                            b'"config":{"root_ids":["a","b"]}}')
    assert built.annotations == {"k": "v"}
    assert built.layers[0].annotations == {"org.opencontainers.image.title": "filter.wasm"}


def test_an_image_no_layout_claims_is_refused() -> None:
    view = ImageView.of("application/vnd.example.config", [{"mediaType": "text/plain"}])
    assert [layout.name for layout in IMAGE_LAYOUTS if layout.detect(view)] == []
    with pytest.raises(UnsupportedLayout, match="no wasm layout matches"):
        detect_layout({"config": {"mediaType": "application/vnd.example.config"},
                       "layers": [{"mediaType": "text/plain"}]})


class ExampleLayout(ImageLayout):
    """A made-up layout: one layer of its own media type, the module as is."""

    name = push_name = "example"
    LAYER = "application/vnd.example.module.v1+wasm"

    def detect(self, image: ImageView) -> Mapping[str, Any] | None:
        return image.by_type.get(self.LAYER)

    def build(self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
              annotations: Mapping[str, str] | None) -> Built:
        return Built(b"{}", "application/vnd.example.config.v1+json",
                     (Layer(wasm, self.LAYER),), annotations=annotations)


@pytest.fixture
def example_layout(monkeypatch: pytest.MonkeyPatch) -> ImageLayout:
    """The example layout added as one entry to each registry."""
    example = ExampleLayout()
    monkeypatch.setattr(layouts, "IMAGE_LAYOUTS", (*image_layout.IMAGE_LAYOUTS, example))
    monkeypatch.setattr(push_module, "PUSH_LAYOUT_OBJECTS",
                        {**image_layout.PUSH_LAYOUT_OBJECTS, "example": example})
    return example


@pytest.mark.registry
async def test_a_new_layout_is_one_entry(
    registry: RegistryProcess, tmp_path: Path, example_layout: ImageLayout
) -> None:
    wasm = make_wasm("example-layout")
    ref = f"{registry.host}/layouts/example:v1"
    async with RegistryClient() as client:
        pushed = await push(client, ref, wasm, layout="example")
    store = ModuleStore(tmp_path / "store")
    await store.start()
    try:
        module = await store.resolve(ModuleSource("image", ref))
    finally:
        await store.close()
    assert module.layout == "example" and module.read_bytes() == wasm
    assert module.sha256 == pushed.module_sha256
