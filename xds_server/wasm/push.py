"""Publishing a wasm module to a registry in one of the image layouts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from ._validate import validate_module
from .errors import InvalidReference
from .image_layout import PUSH_LAYOUT_OBJECTS, Layer, compat_layer
from .reference import ImageReference, parse_reference
from .registry import OCI_MANIFEST, RegistryClient

__all__ = ["PUSH_LAYOUTS", "Layer", "PushResult", "compat_layer", "push", "push_image"]

log = structlog.get_logger(__name__)

PUSH_LAYOUTS = tuple(PUSH_LAYOUT_OBJECTS)
"""Layouts :func:`push` can write (``compat-docker``: compat with Docker media types)."""


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
    """Publish ``wasm`` under ``reference`` in ``layout`` (see :data:`PUSH_LAYOUTS`; the
    image is what that layout object's ``build`` makes).

    With ``validate`` the module must be a valid proxy-wasm module first
    (:class:`~xds_server.wasm.errors.InvalidModule` otherwise). The reference needs a tag.
    """
    ref = parse_reference(reference)
    if ref.digest:
        raise InvalidReference(f"push target {reference} must be a tag, not a digest")
    if layout not in PUSH_LAYOUT_OBJECTS:
        raise InvalidReference(
            f"layout {layout!r} is not one of {', '.join(PUSH_LAYOUT_OBJECTS)}"
        )
    abi: list[str] = []
    if validate:
        abi = validate_module(wasm, where=f"module to push to {ref}")
    module_sha = hashlib.sha256(wasm).hexdigest()
    built = PUSH_LAYOUT_OBJECTS[layout].build(
        wasm, root_ids=root_ids, abi=abi, annotations=annotations
    )
    digest = await push_image(
        client, ref, config=built.config, config_media_type=built.config_media_type,
        layers=built.layers, manifest_media_type=built.manifest_media_type,
        annotations=built.annotations,
    )
    log.info(
        "module_pushed", reference=str(ref), manifest_digest=digest,
        digest="sha256:" + module_sha, layout=layout,
    )
    return PushResult(str(ref), digest, module_sha, layout)
