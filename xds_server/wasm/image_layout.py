"""A wasm image layout as one object: its media types, how it is detected in a manifest,
how its module is extracted, and how an image is built in it for push.

:data:`IMAGE_LAYOUTS` lists the layouts in detection order; :data:`PUSH_LAYOUT_OBJECTS`
the ones :func:`~xds_server.wasm.push.push` can write, by name. A new layout is one
:class:`ImageLayout` subclass and one entry in each. Layout objects are immutable and
shared; ``extract`` may be called concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _json
from ._archive import extract_plugin
from .download import ProgressCallback
from .errors import InvalidModule, ModuleTooLarge
from .limits import ARCHIVE_OVERHEAD_BYTES
from .reference import ImageReference
from .registry import DOCKER_MANIFEST, OCI_MANIFEST, RegistryClient

__all__ = [
    "CNCF_CONFIG",
    "CNCF_LAYER",
    "COMPAT_ANNOTATION",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_LAYER_TAR",
    "EMPTY_SHA256",
    "IMAGE_LAYOUTS",
    "NO_CONFIG_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "PUSH_LAYOUT_OBJECTS",
    "PUSH_VARIANTS",
    "UNKNOWN_CONFIG",
    "WASME_CONFIG",
    "WASME_LAYER",
    "WASM_TO_OCI_CONFIG",
    "WASM_TO_OCI_LAYER",
    "Built",
    "Extracted",
    "ImageLayout",
    "ImageView",
    "Layer",
    "compat_layer",
    "wasme_root_ids",
]

WASME_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASME_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
CNCF_CONFIG = "application/vnd.wasm.config.v0+json"
CNCF_LAYER = "application/wasm"
WASM_TO_OCI_CONFIG = "application/vnd.wasm.config.v1+json"
WASM_TO_OCI_LAYER = "application/vnd.wasm.content.layer.v1+wasm"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
COMPAT_ANNOTATION = "module.wasm.image/variant"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
UNKNOWN_CONFIG = "application/vnd.unknown.config.v1+json"
NO_CONFIG_TYPES = (OCI_EMPTY, UNKNOWN_CONFIG)
"""Config media types that mean "no runtime config" (the OCI empty descriptor, and what
ORAS writes when no config type is given)."""
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
"""The digest of zero bytes: an empty config blob (ORAS with ``/dev/null`` as config)."""

_TAR_LAYERS = (OCI_LAYER_TAR, OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR)
_TITLE = "org.opencontainers.image.title"

Descriptor = Mapping[str, Any]


@dataclass(frozen=True)
class Layer:
    """A layer to push: bytes, media type and optional annotations."""

    data: bytes
    media_type: str
    annotations: Mapping[str, str] | None = None


@dataclass(frozen=True)
class ImageView:
    """What detection looks at in an image manifest: the config media type, the layer
    descriptors in order, and the first layer of each media type."""

    config_type: str
    layers: tuple[Descriptor, ...]
    by_type: Mapping[str, Descriptor]

    @classmethod
    def of(cls, config_type: str, layers: Sequence[Descriptor]) -> ImageView:
        """The view of a config media type and layer descriptors."""
        by_type: dict[str, Descriptor] = {}
        for layer in layers:
            by_type.setdefault(str(layer.get("mediaType", "")), layer)
        return cls(config_type, tuple(layers), by_type)


@dataclass(frozen=True)
class Extracted:
    """A module taken out of an image: its bytes, their sha256 (hex) when the fetch
    already verified it (the layer is the module), root ids and annotations found, and,
    when the layer was streamed to disk (``into``), the temp file holding the same bytes
    (not yet fsynced; the caller installs or removes it)."""

    data: bytes | bytearray  # a bytearray (streamed `into` a file) is not to be modified
    sha256: str | None = None
    root_ids: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    path: Path | None = None


@dataclass(frozen=True)
class Built:
    """An image to push: config blob and media type, layers, manifest media type and
    manifest annotations."""

    config: bytes
    config_media_type: str
    layers: tuple[Layer, ...]
    manifest_media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] | None = None


def _compact(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


class ImageLayout:
    """One wasm image layout. Subclasses set :attr:`name` (as reported in
    ``FetchedModule.layout``) and :attr:`push_name` (as :func:`push` takes it), and
    implement :meth:`detect` and :meth:`build`; :meth:`extract` reads the detected
    layer as the module (override for archives or runtime configs)."""

    name: str = ""
    push_name: str = ""

    def detect(self, image: ImageView) -> Descriptor | None:
        """The descriptor of the layer holding the module when ``image`` is in this
        layout, else ``None``."""
        raise NotImplementedError

    async def extract(
        self, client: RegistryClient, ref: ImageReference, image: Mapping[str, Any],
        layer: Descriptor, *, pinned: str, max_bytes: int, progress: ProgressCallback | None,
        into: Path | None = None,
    ) -> Extracted:
        """Fetch the module from ``layer`` (digest-verified while streaming, capped at
        ``max_bytes``); ``pinned`` (the reference by manifest digest) is named in errors.
        With ``into`` (a directory) a layer that is the module is also streamed to a temp
        file there (:attr:`Extracted.path`)."""
        where = f"layer {layer['digest']} of {pinned}"
        size = layer.get("size")
        if isinstance(size, int) and size > max_bytes:
            raise ModuleTooLarge(f"{where} is {size} bytes, above the cap of {max_bytes} bytes")
        digest = str(layer["digest"])
        body = await client.download_blob(
            ref, digest, max_bytes=max_bytes, into=into, keep=True, durable=False,
            progress=progress,
        )
        assert body.data is not None  # kept
        return Extracted(body.data, sha256=body.sha256, path=body.path)

    def build(
        self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
        annotations: Mapping[str, str] | None,
    ) -> Built:
        """The image holding ``wasm`` in this layout (``abi``: the module's
        ``proxy_abi_version_*`` exports)."""
        raise NotImplementedError


class WasmeLayout(ImageLayout):
    """Solo.io WebAssembly Hub: config ``application/vnd.module.wasm.config.v1+json``
    (root ids in ``config.root_ids`` or ``rootIds``), module in the
    ``...content.layer.v1+wasm`` layer. Also an image with that layer and a config that
    means "none" (:data:`NO_CONFIG_TYPES`); an empty config blob or ``{}`` means no
    root ids (ORAS with ``/dev/null``)."""

    name = push_name = "wasme"

    def detect(self, image: ImageView) -> Descriptor | None:
        if image.config_type == WASME_CONFIG:
            return image.by_type.get(WASME_LAYER, image.layers[0])
        if WASME_LAYER in image.by_type and image.config_type in NO_CONFIG_TYPES:
            return image.by_type[WASME_LAYER]
        return None

    async def extract(
        self, client: RegistryClient, ref: ImageReference, image: Mapping[str, Any],
        layer: Descriptor, *, pinned: str, max_bytes: int, progress: ProgressCallback | None,
        into: Path | None = None,
    ) -> Extracted:
        config = image.get("config")
        if not (isinstance(config, dict) and _has_runtime_config(config)):
            return await super().extract(
                client, ref, image, layer, pinned=pinned, max_bytes=max_bytes,
                progress=progress, into=into,
            )
        # The config blob downloads while the layer does: one round trip, not two.
        runtime = asyncio.ensure_future(self._runtime_config(client, ref, config, pinned))
        try:
            module = await super().extract(
                client, ref, image, layer, pinned=pinned, max_bytes=max_bytes,
                progress=progress, into=into,
            )
        except BaseException:
            runtime.cancel()
            with contextlib.suppress(BaseException):
                await runtime
            raise
        try:
            root_ids, annotations = await runtime
        except BaseException:
            if module.path is not None:
                with contextlib.suppress(OSError):
                    module.path.unlink()
            raise
        return Extracted(module.data, module.sha256, root_ids, annotations, path=module.path)

    @staticmethod
    async def _runtime_config(
        client: RegistryClient, ref: ImageReference, config: Descriptor, pinned: str
    ) -> tuple[tuple[str, ...], dict[str, str]]:
        """(root ids, annotations) from the wasme runtime config blob."""
        raw = await client.fetch_blob(
            ref, str(config["digest"]), max_bytes=client.limits.max_config_bytes
        )
        try:
            parsed = _json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise InvalidModule(f"{pinned}: wasme config {config['digest']} is not JSON") from None
        annotations: dict[str, str] = {}
        if not isinstance(parsed, dict):
            return (), annotations
        abi = _string_list(parsed.get("abi_version")) or _string_list(parsed.get("abiVersions"))
        if abi:
            annotations["abi_version"] = ",".join(abi)
        return wasme_root_ids(parsed), annotations

    def build(
        self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
        annotations: Mapping[str, str] | None,
    ) -> Built:
        config = _compact({
            "type": "envoy_proxy",
            "abi_version": ",".join(a.removeprefix("proxy_abi_version_") for a in abi),
            "config": {"root_ids": list(root_ids)},
        })
        return Built(config, WASME_CONFIG, (Layer(wasm, WASME_LAYER, {_TITLE: "filter.wasm"}),),
                     annotations=annotations)


class CncfLayout(ImageLayout):
    """CNCF TAG-Runtime wasm artifact: config ``application/vnd.wasm.config.v0+json`` or
    a layer ``application/wasm``."""

    name = push_name = "cncf"

    def detect(self, image: ImageView) -> Descriptor | None:
        if image.config_type == CNCF_CONFIG or CNCF_LAYER in image.by_type:
            return image.by_type.get(CNCF_LAYER, image.layers[0])
        return None

    def build(
        self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
        annotations: Mapping[str, str] | None,
    ) -> Built:
        config = _compact({"architecture": "wasm", "os": "wasip1",
                           "layerDigests": ["sha256:" + hashlib.sha256(wasm).hexdigest()]})
        return Built(config, CNCF_CONFIG, (Layer(wasm, CNCF_LAYER, {_TITLE: "module.wasm"}),),
                     annotations=annotations)


class WasmToOciLayout(ImageLayout):
    """wasm-to-oci: a layer ``application/vnd.wasm.content.layer.v1+wasm``."""

    name = push_name = "wasm-to-oci"

    def detect(self, image: ImageView) -> Descriptor | None:
        return image.by_type.get(WASM_TO_OCI_LAYER)

    def build(
        self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
        annotations: Mapping[str, str] | None,
    ) -> Built:
        return Built(b"{}", WASM_TO_OCI_CONFIG, (Layer(wasm, WASM_TO_OCI_LAYER),),
                     annotations=annotations)


class CompatLayout(ImageLayout):
    """Istio "compat": a Docker or OCI image whose last tar(.gz) layer holds
    ``plugin.wasm``. Pushed with OCI media types (annotated
    ``module.wasm.image/variant=compat``), or Docker ones when ``docker``."""

    name = "compat"

    def __init__(self, *, docker: bool = False) -> None:
        self.docker = docker
        self.push_name = "compat-docker" if docker else "compat"

    def detect(self, image: ImageView) -> Descriptor | None:
        last = image.layers[-1]
        return last if str(last.get("mediaType", "")) in _TAR_LAYERS else None

    async def extract(
        self, client: RegistryClient, ref: ImageReference, image: Mapping[str, Any],
        layer: Descriptor, *, pinned: str, max_bytes: int, progress: ProgressCallback | None,
        into: Path | None = None,
    ) -> Extracted:
        where = f"layer {layer['digest']} of {pinned}"
        size = layer.get("size")
        cap = max_bytes + ARCHIVE_OVERHEAD_BYTES
        if isinstance(size, int) and size > cap:
            raise ModuleTooLarge(f"{where} is {size} bytes, above the cap of {cap} bytes")
        blob = await client.fetch_blob(ref, str(layer["digest"]), max_bytes=cap,
                                       progress=progress)
        data = extract_plugin(
            blob, max_bytes=max_bytes, where=where, max_members=client.limits.max_tar_members
        )
        return Extracted(data)

    def build(
        self, wasm: bytes, *, root_ids: Sequence[str], abi: Sequence[str],
        annotations: Mapping[str, str] | None,
    ) -> Built:
        gz, tar = compat_layer(wasm)
        config = _compact({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
        })
        if self.docker:
            return Built(config, DOCKER_CONFIG, (Layer(gz, DOCKER_LAYER_GZIP),),
                         manifest_media_type=DOCKER_MANIFEST)
        merged = dict(annotations or {})
        merged.setdefault(COMPAT_ANNOTATION, "compat")
        return Built(config, OCI_CONFIG, (Layer(gz, OCI_LAYER_GZIP),), annotations=merged)


def compat_layer(wasm: bytes, *, name: str = "plugin.wasm") -> tuple[bytes, bytes]:
    """(gzipped tar, uncompressed tar) holding ``wasm`` as ``name``; deterministic."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = len(wasm)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(wasm))
    tar = buffer.getvalue()
    return gzip.compress(tar, mtime=0), tar


def _has_runtime_config(config: Mapping[str, Any]) -> bool:
    """False for a config descriptor that means "no runtime config": the OCI empty
    descriptor, ORAS's unknown config type, or an empty blob (size 0, the empty digest)."""
    return bool(config.get("digest")) and not (
        config.get("mediaType") in NO_CONFIG_TYPES
        or config.get("size") == 0
        or config.get("digest") == EMPTY_SHA256
    )


def _string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if isinstance(v, str) and v)
    return ()


def wasme_root_ids(config: Mapping[str, Any]) -> tuple[str, ...]:
    """Root ids of a wasme runtime config: ``config.root_ids``, ``config.rootIds``,
    ``rootIds`` or ``root_ids`` (first non-empty)."""
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    for source, key in (
        (inner, "root_ids"),
        (inner, "rootIds"),
        (config, "rootIds"),
        (config, "root_ids"),
    ):
        ids = _string_list((source or {}).get(key))
        if ids:
            return ids
    return ()


IMAGE_LAYOUTS: tuple[ImageLayout, ...] = (
    WasmeLayout(), CncfLayout(), WasmToOciLayout(), CompatLayout()
)
"""The layouts, in detection order: the first whose :meth:`~ImageLayout.detect` matches
reads the image."""

PUSH_VARIANTS: tuple[ImageLayout, ...] = (CompatLayout(docker=True),)
"""Layouts that push differently from their :data:`IMAGE_LAYOUTS` entry but read the
same (compat with Docker media types)."""

PUSH_LAYOUT_OBJECTS: Mapping[str, ImageLayout] = {
    layout.push_name: layout for layout in (*IMAGE_LAYOUTS, *PUSH_VARIANTS)
}
"""The layouts :func:`~xds_server.wasm.push.push` can write, by push name: every image
layout, and the push variants."""
