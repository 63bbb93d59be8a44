"""Detecting an image's wasm layout, and fetching a module from an image.

The layouts themselves are objects in :mod:`xds_server.wasm.image_layout`
(:data:`~xds_server.wasm.image_layout.IMAGE_LAYOUTS`, in detection order):

=============  ======================================================================
layout         detection
=============  ======================================================================
``wasme``      config ``application/vnd.module.wasm.config.v1+json`` (Solo.io
               WebAssembly Hub), or a ``...content.layer.v1+wasm`` layer with a config
               that means "none" (``application/vnd.oci.empty.v1+json``,
               ``application/vnd.unknown.config.v1+json``: ORAS); module in that layer;
               root ids from ``config.root_ids`` or ``rootIds``. An empty config blob
               or ``{}`` (ORAS with ``/dev/null``) means no root ids.
``cncf``       config ``application/vnd.wasm.config.v0+json`` or a layer
               ``application/wasm`` (CNCF TAG-Runtime wasm artifact).
``wasm-to-oci`` a layer ``application/vnd.wasm.content.layer.v1+wasm``.
``compat``     a Docker or OCI image whose last tar(.gz) layer holds ``plugin.wasm``
               (Istio "compat" variant).
=============  ======================================================================

An image index / manifest list is resolved to one entry: a wasm platform (``os`` wasi* or
``architecture`` wasm*) if any, else ``linux/amd64``, else the first; the choice is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from .errors import ModuleTooLarge, RegistryError, UnsupportedLayout
from .image_layout import IMAGE_LAYOUTS, ImageLayout, ImageView
from .limits import DEFAULT_LIMITS, FetchLimits
from .reference import ImageReference
from .registry import (
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    Manifest,
    ProgressCallback,
    RegistryClient,
)

__all__ = [
    "LAYOUTS",
    "FetchedModule",
    "choose_index_entry",
    "detect_layout",
    "fetch_image_module",
]

log = structlog.get_logger(__name__)

LAYOUTS = tuple(dict.fromkeys(layout.name for layout in IMAGE_LAYOUTS))
"""Names of the image layouts, as reported in :attr:`FetchedModule.layout`."""


@dataclass(frozen=True)
class FetchedModule:
    """Module bytes fetched from an image (digest-verified, not yet wasm-validated)."""

    data: bytes | bytearray  # a bytearray (streamed `into` a file) is not to be modified
    layout: str
    reference: str
    manifest_digest: str
    root_ids: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None  # hex of `data` when already verified (the layer is the module)
    path: Path | None = None  # a temp file holding `data` (not fsynced) when fetched `into`


def _descriptors(manifest: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = manifest.get(key) or []
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict)]


def detect_layout(
    manifest: Mapping[str, Any], *, max_layers: int = DEFAULT_LIMITS.max_layers
) -> tuple[str, Mapping[str, Any]]:
    """Return (layout name, descriptor of the layer holding the module) for an image
    manifest; raise :class:`UnsupportedLayout` when no layout matches and
    :class:`ModuleTooLarge` for more than ``max_layers`` layers."""
    layout, layer = _detect(manifest, max_layers=max_layers)
    return layout.name, layer


def _detect(
    manifest: Mapping[str, Any], *, max_layers: int
) -> tuple[ImageLayout, Mapping[str, Any]]:
    """The first layout of :data:`IMAGE_LAYOUTS` that matches, and its module layer."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    config_type = str((config or {}).get("mediaType", ""))
    raw_layers = manifest.get("layers")
    if isinstance(raw_layers, list) and len(raw_layers) > max_layers:
        raise ModuleTooLarge(f"image has {len(raw_layers)} layers, above the cap of {max_layers}")
    layers = _descriptors(manifest, "layers")
    if not layers:
        raise UnsupportedLayout("image has no layers")
    view = ImageView.of(config_type, layers)
    for layout in IMAGE_LAYOUTS:
        layer = layout.detect(view)
        if layer is not None:
            return layout, layer
    types = sorted({config_type, *view.by_type})
    raise UnsupportedLayout(f"no wasm layout matches media types {types}")


def choose_index_entry(
    index: Mapping[str, Any], ref: ImageReference, *,
    max_entries: int = DEFAULT_LIMITS.max_index_entries,
) -> Mapping[str, Any]:
    """The entry of an image index to use: a wasm platform, else linux/amd64, else the
    first. Raises :class:`UnsupportedLayout` for an empty index and
    :class:`ModuleTooLarge` for one with more than ``max_entries`` entries."""
    raw = index.get("manifests")
    if isinstance(raw, list) and len(raw) > max_entries:
        raise ModuleTooLarge(
            f"image index of {ref} lists {len(raw)} manifests, above the cap of {max_entries}"
        )
    entries = _descriptors(index, "manifests")
    if not entries:
        raise UnsupportedLayout(f"image index of {ref} lists no manifests")

    def platform(entry: Mapping[str, Any]) -> tuple[str, str]:
        p = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
        return str((p or {}).get("os", "")), str((p or {}).get("architecture", ""))

    reason = "first"
    chosen = entries[0]
    for entry in entries:
        os_name, arch = platform(entry)
        if os_name.startswith("wasi") or arch.startswith("wasm"):
            chosen, reason = entry, "wasm"
            break
    else:
        for entry in entries:
            if platform(entry) == ("linux", "amd64"):
                chosen, reason = entry, "linux/amd64"
                break
    os_name, arch = platform(chosen)
    log.info(
        "image_index_entry_chosen",
        reference=str(ref),
        digest=chosen.get("digest"),
        platform=f"{os_name}/{arch}",
        reason=reason,
        entries=len(entries),
    )
    return chosen


async def _resolve_image_manifest(
    client: RegistryClient, ref: ImageReference
) -> tuple[Manifest, Manifest]:
    """(top-level manifest, image manifest): equal unless the top is an index."""
    top = await client.get_manifest(ref)
    if top.media_type not in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        return top, top
    entry = choose_index_entry(top.data, ref, max_entries=client.limits.max_index_entries)
    digest = str(entry.get("digest", ""))
    if not digest.startswith("sha256:"):
        raise UnsupportedLayout(f"image index of {ref} names an entry without a sha256 digest")
    image = await client.get_manifest(ref, digest)
    if image.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        raise UnsupportedLayout(f"image index of {ref} points at another index {digest}")
    return top, image


async def fetch_image_module(
    client: RegistryClient,
    ref: ImageReference,
    *,
    max_bytes: int,
    progress: ProgressCallback | None = None,
    into: Path | None = None,
) -> FetchedModule:
    """Fetch the module named by ``ref`` in whichever layout the image uses.

    Every manifest and blob is digest-verified; the layer is capped at ``max_bytes`` (plus
    tar overhead for compat layers) and a compat layer is extracted safely. Raises
    :class:`~xds_server.wasm.errors.WasmError` subclasses naming the reference and digest.
    With ``into`` (a directory), a layer that is the module is streamed to a temp file
    there while it downloads (:attr:`FetchedModule.path`, not yet fsynced: the caller
    installs or removes it); the bytes are in :attr:`FetchedModule.data` either way.
    """
    limits: FetchLimits = client.limits
    top, image = await _resolve_image_manifest(client, ref)
    pinned = ref.with_digest(top.digest)
    try:
        layout, layer = _detect(image.data, max_layers=limits.max_layers)
    except UnsupportedLayout as error:
        raise UnsupportedLayout(f"{pinned}: {error}") from None
    except ModuleTooLarge as error:
        raise ModuleTooLarge(f"{pinned}: {error}") from None
    if not str(layer.get("digest", "")).startswith("sha256:"):
        raise RegistryError(f"{pinned}: module layer has no sha256 digest")
    extracted = await layout.extract(
        client, ref, image.data, layer, pinned=str(pinned), max_bytes=max_bytes,
        progress=progress, into=into,
    )
    annotations = dict(extracted.annotations)
    for source in (image.data.get("annotations"), layer.get("annotations")):
        if isinstance(source, dict):
            annotations.update({str(k): str(v) for k, v in source.items()})
    return FetchedModule(
        data=extracted.data,
        layout=layout.name,
        reference=str(ref),
        manifest_digest=top.digest,
        root_ids=extracted.root_ids,
        annotations=annotations,
        sha256=extracted.sha256,
        path=extracted.path,
    )
