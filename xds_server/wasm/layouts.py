"""The wasm image layouts, detected from media types, and fetching a module from an image.

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
from typing import Any

import structlog

from . import _json
from ._archive import extract_plugin
from .errors import InvalidModule, ModuleTooLarge, RegistryError, UnsupportedLayout
from .limits import DEFAULT_LIMITS, FetchLimits
from .reference import ImageReference
from .registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    ProgressCallback,
    RegistryClient,
)

__all__ = [
    "CNCF_CONFIG",
    "CNCF_LAYER",
    "COMPAT_ANNOTATION",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EMPTY_SHA256",
    "LAYOUTS",
    "NO_CONFIG_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_TAR",
    "OCI_MANIFEST",
    "UNKNOWN_CONFIG",
    "WASME_CONFIG",
    "WASME_LAYER",
    "WASM_TO_OCI_CONFIG",
    "WASM_TO_OCI_LAYER",
    "FetchedModule",
    "choose_index_entry",
    "detect_layout",
    "fetch_image_module",
    "wasme_root_ids",
]

log = structlog.get_logger(__name__)

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
LAYOUTS = ("wasme", "cncf", "wasm-to-oci", "compat")
"""Names of the image layouts, as reported in :attr:`FetchedModule.layout`."""

_TAR_LAYERS = (OCI_LAYER_TAR, OCI_LAYER_GZIP, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR)
_ARCHIVE_OVERHEAD = 2**20


@dataclass(frozen=True)
class FetchedModule:
    """Module bytes fetched from an image (digest-verified, not yet wasm-validated)."""

    data: bytes
    layout: str
    reference: str
    manifest_digest: str
    root_ids: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None  # hex of `data` when already verified (the layer is the module)


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
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    config_type = str((config or {}).get("mediaType", ""))
    raw_layers = manifest.get("layers")
    if isinstance(raw_layers, list) and len(raw_layers) > max_layers:
        raise ModuleTooLarge(f"image has {len(raw_layers)} layers, above the cap of {max_layers}")
    layers = _descriptors(manifest, "layers")
    if not layers:
        raise UnsupportedLayout("image has no layers")
    by_type: dict[str, Mapping[str, Any]] = {}
    for layer in layers:
        by_type.setdefault(str(layer.get("mediaType", "")), layer)
    if config_type == WASME_CONFIG:
        return "wasme", by_type.get(WASME_LAYER, layers[0])
    if config_type == CNCF_CONFIG or CNCF_LAYER in by_type:
        return "cncf", by_type.get(CNCF_LAYER, layers[0])
    if WASM_TO_OCI_LAYER in by_type:
        return "wasm-to-oci", by_type[WASM_TO_OCI_LAYER]
    if WASME_LAYER in by_type and config_type in NO_CONFIG_TYPES:
        return "wasme", by_type[WASME_LAYER]
    if str(layers[-1].get("mediaType", "")) in _TAR_LAYERS:
        return "compat", layers[-1]
    types = sorted({config_type, *by_type})
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


def _abi_versions(config: Mapping[str, Any]) -> tuple[str, ...]:
    return _string_list(config.get("abi_version")) or _string_list(config.get("abiVersions"))


def _has_runtime_config(config: Mapping[str, Any]) -> bool:
    """False for a config descriptor that means "no runtime config": the OCI empty
    descriptor, ORAS's unknown config type, or an empty blob (size 0, the empty digest)."""
    return bool(config.get("digest")) and not (
        config.get("mediaType") in NO_CONFIG_TYPES
        or config.get("size") == 0
        or config.get("digest") == EMPTY_SHA256
    )


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
) -> FetchedModule:
    """Fetch the module named by ``ref`` in whichever layout the image uses.

    Every manifest and blob is digest-verified; the layer is capped at ``max_bytes`` (plus
    tar overhead for compat layers) and a compat layer is extracted safely. Raises
    :class:`~xds_server.wasm.errors.WasmError` subclasses naming the reference and digest.
    """
    limits: FetchLimits = client.limits
    top, image = await _resolve_image_manifest(client, ref)
    pinned = ref.with_digest(top.digest)
    try:
        layout, layer = detect_layout(image.data, max_layers=limits.max_layers)
    except UnsupportedLayout as error:
        raise UnsupportedLayout(f"{pinned}: {error}") from None
    except ModuleTooLarge as error:
        raise ModuleTooLarge(f"{pinned}: {error}") from None
    layer_digest = str(layer.get("digest", ""))
    if not layer_digest.startswith("sha256:"):
        raise RegistryError(f"{pinned}: module layer has no sha256 digest")
    annotations: dict[str, str] = {}
    for source in (image.data.get("annotations"), layer.get("annotations")):
        if isinstance(source, dict):
            annotations.update({str(k): str(v) for k, v in source.items()})
    root_ids: tuple[str, ...] = ()
    config = image.data.get("config")
    if layout == "wasme" and isinstance(config, dict) and _has_runtime_config(config):
        raw = await client.fetch_blob(ref, str(config["digest"]), max_bytes=limits.max_config_bytes)
        try:
            parsed = _json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise InvalidModule(f"{pinned}: wasme config {config['digest']} is not JSON") from None
        if isinstance(parsed, dict):
            root_ids = wasme_root_ids(parsed)
            abi = _abi_versions(parsed)
            if abi:
                annotations.setdefault("abi_version", ",".join(abi))
    where = f"layer {layer_digest} of {pinned}"
    verified: str | None = None
    if layout == "compat":
        size = layer.get("size")
        cap = max_bytes + _ARCHIVE_OVERHEAD
        if isinstance(size, int) and size > cap:
            raise ModuleTooLarge(f"{where} is {size} bytes, above the cap of {cap} bytes")
        blob = await client.fetch_blob(ref, layer_digest, max_bytes=cap, progress=progress)
        data = extract_plugin(
            blob, max_bytes=max_bytes, where=where, max_members=limits.max_tar_members
        )
    else:
        size = layer.get("size")
        if isinstance(size, int) and size > max_bytes:
            raise ModuleTooLarge(f"{where} is {size} bytes, above the cap of {max_bytes} bytes")
        data = await client.fetch_blob(ref, layer_digest, max_bytes=max_bytes, progress=progress)
        verified = layer_digest.removeprefix("sha256:")  # checked while streaming
    return FetchedModule(
        data=data,
        layout=layout,
        reference=str(ref),
        manifest_digest=top.digest,
        root_ids=root_ids,
        annotations=annotations,
        sha256=verified,
    )


