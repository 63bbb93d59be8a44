"""Publishing a wasm module to a registry in one of the image layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ._validate import validate_module
from .errors import InvalidReference
from .layouts import (
    CNCF_CONFIG,
    CNCF_LAYER,
    COMPAT_ANNOTATION,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    WASM_TO_OCI_CONFIG,
    WASM_TO_OCI_LAYER,
    WASME_CONFIG,
    WASME_LAYER,
)
from .reference import ImageReference, parse_reference
from .registry import RegistryClient

__all__ = ["PUSH_LAYOUTS", "Layer", "PushResult", "compat_layer", "push", "push_image"]

log = structlog.get_logger(__name__)

PUSH_LAYOUTS = ("wasme", "cncf", "wasm-to-oci", "compat", "compat-docker")
"""Layouts :func:`push` can write (``compat-docker``: compat with Docker media types)."""


@dataclass(frozen=True)
class Layer:
    """A layer to push: bytes, media type and optional annotations."""

    data: bytes
    media_type: str
    annotations: Mapping[str, str] | None = None


@dataclass(frozen=True)
class PushResult:
    """What was pushed: the reference, the manifest digest, the module's sha256 (hex)."""

    reference: str
    manifest_digest: str
    module_sha256: str
    layout: str


def _descriptor(media_type: str, data: bytes, annotations: Mapping[str, str] | None = None
                ) -> dict[str, Any]:
    descriptor: dict[str, Any] = {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    if annotations:
        descriptor["annotations"] = dict(annotations)
    return descriptor


async def push_image(
    client: RegistryClient,
    ref: ImageReference,
    *,
    config: bytes,
    config_media_type: str,
    layers: Sequence[Layer],
    manifest_media_type: str = OCI_MANIFEST,
    annotations: Mapping[str, str] | None = None,
) -> str:
    """Upload ``config`` and ``layers`` as blobs and put a manifest under ``ref``'s tag
    (or digest); return the manifest digest. Content is not validated."""
    await client.push_blob(ref, config)
    for layer in layers:
        await client.push_blob(ref, layer.data)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_media_type,
        "config": _descriptor(config_media_type, config),
        "layers": [_descriptor(la.media_type, la.data, la.annotations) for la in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    return await client.push_manifest(ref, raw, manifest_media_type)


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


async def push(
    client: RegistryClient,
    reference: str,
    wasm: bytes,
    *,
    layout: str = "wasme",
    root_ids: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    validate: bool = True,
) -> PushResult:
    """Publish ``wasm`` under ``reference`` in ``layout`` (see :data:`PUSH_LAYOUTS`).

    With ``validate`` the module must be a valid proxy-wasm module first
    (:class:`~xds_server.wasm.errors.InvalidModule` otherwise). The reference needs a tag.
    """
    ref = parse_reference(reference)
    if ref.digest:
        raise InvalidReference(f"push target {reference} must be a tag, not a digest")
    if layout not in PUSH_LAYOUTS:
        raise InvalidReference(f"layout {layout!r} is not one of {', '.join(PUSH_LAYOUTS)}")
    abi: list[str] = []
    if validate:
        abi = validate_module(wasm, where=f"module to push to {ref}")
    module_sha = hashlib.sha256(wasm).hexdigest()
    title = {"org.opencontainers.image.title": "filter.wasm"}
    if layout == "wasme":
        config = json.dumps(
            {"type": "envoy_proxy",
             "abi_version": ",".join(a.removeprefix("proxy_abi_version_") for a in abi),
             "config": {"root_ids": list(root_ids)}},
            separators=(",", ":"),
        ).encode()
        digest = await push_image(
            client, ref, config=config, config_media_type=WASME_CONFIG,
            layers=[Layer(wasm, WASME_LAYER, title)], annotations=annotations,
        )
    elif layout == "cncf":
        config = json.dumps(
            {"architecture": "wasm", "os": "wasip1",
             "layerDigests": ["sha256:" + module_sha]},
            separators=(",", ":"),
        ).encode()
        digest = await push_image(
            client, ref, config=config, config_media_type=CNCF_CONFIG,
            layers=[Layer(wasm, CNCF_LAYER, {"org.opencontainers.image.title": "module.wasm"})],
            annotations=annotations,
        )
    elif layout == "wasm-to-oci":
        digest = await push_image(
            client, ref, config=b"{}", config_media_type=WASM_TO_OCI_CONFIG,
            layers=[Layer(wasm, WASM_TO_OCI_LAYER)], annotations=annotations,
        )
    else:
        gz, tar = compat_layer(wasm)
        docker = layout == "compat-docker"
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "config": {},
             "rootfs": {"type": "layers",
                        "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}},
            separators=(",", ":"),
        ).encode()
        merged = dict(annotations or {})
        if not docker:
            merged.setdefault(COMPAT_ANNOTATION, "compat")
        digest = await push_image(
            client, ref, config=config,
            config_media_type=DOCKER_CONFIG if docker else OCI_CONFIG,
            layers=[Layer(gz, DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP)],
            manifest_media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
            annotations=None if docker else merged,
        )
    log.info(
        "module_pushed", reference=str(ref), manifest_digest=digest,
        digest="sha256:" + module_sha, layout=layout,
    )
    return PushResult(str(ref), digest, module_sha, layout)
