"""cosign's key-pair signatures in its tag scheme (sigstore/cosign `specs/SIGNATURE_SPEC.md`).

Image `host/repo@sha256:<hex>` has its signatures in the manifest tagged
`host/repo:sha256-<hex>.sig`: one layer per signature, media type
`application/vnd.dev.cosign.simplesigning.v1+json`, whose blob is the simple-signing
payload and whose annotation `dev.cosignproject.cosign/signature` is the base64
signature of that blob (ECDSA P-256: DER over SHA-256; Ed25519: over the bytes).
The payload names the signed manifest digest in `critical.image.docker-manifest-digest`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xds_server.wasm import ImageReference, NotFound, RegistryClient, WasmError

__all__ = [
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "CosignSignature",
    "find_signatures",
    "payload_digest",
    "signature_tag",
    "simple_signing_payload",
]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
_PAYLOAD_TYPE = "cosign container image signature"
MAX_PAYLOAD_BYTES = 64 * 2**10
MAX_SIGNATURES = 64


def signature_tag(digest: str) -> str:
    """`sha256-<hex>.sig`: the tag holding the signatures of manifest `digest`."""
    return digest.replace(":", "-") + ".sig"


def simple_signing_payload(ref: ImageReference, digest: str) -> bytes:
    """The simple-signing payload cosign signs for manifest `digest` of `ref`."""
    doc = {
        "critical": {
            "identity": {"docker-reference": f"{ref.registry}/{ref.repository}"},
            "image": {"docker-manifest-digest": digest},
            "type": _PAYLOAD_TYPE,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def payload_digest(payload: bytes) -> str | None:
    """The manifest digest a simple-signing payload names, or None when it is not one."""
    try:
        doc = json.loads(payload)
    except ValueError:
        return None
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict) or critical.get("type") != _PAYLOAD_TYPE:
        return None
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    return digest if isinstance(digest, str) else None


@dataclass(frozen=True)
class CosignSignature:
    """One signature layer: the payload bytes, the decoded signature (empty when the
    annotation is missing or not base64) and the payload's layer digest."""

    payload: bytes
    signature: bytes
    layer_digest: str


def _layers(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    return [la for la in layers[:MAX_SIGNATURES] if isinstance(la, dict) and la.get("mediaType") == SIMPLE_SIGNING]


async def find_signatures(client: RegistryClient, ref: ImageReference, digest: str) -> list[CosignSignature]:
    """The cosign signatures stored for manifest `digest` of `ref` (none: an empty list).

    Each payload blob is verified against its layer digest while it downloads; the
    signatures themselves are not checked here.
    """
    sig_ref = ImageReference(ref.registry, ref.repository, signature_tag(digest))
    try:
        manifest = await client.get_manifest(sig_ref)
    except NotFound:
        return []
    found = []
    for layer in _layers(manifest.data):
        layer_digest = str(layer.get("digest", ""))
        annotations = layer.get("annotations")
        encoded = annotations.get(SIGNATURE_ANNOTATION, "") if isinstance(annotations, dict) else ""
        try:
            signature = base64.b64decode(str(encoded), validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        try:
            payload = await client.fetch_blob(sig_ref, layer_digest, max_bytes=MAX_PAYLOAD_BYTES)
        except (NotFound, WasmError):
            continue
        found.append(CosignSignature(payload=payload, signature=signature, layer_digest=layer_digest))
    return found


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
