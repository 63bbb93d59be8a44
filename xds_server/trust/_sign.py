"""`xds-server sign`: cosign-format key-pair signatures pushed to the tag scheme."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import structlog

from xds_server.wasm import ImageReference, NotFound, RegistryClient
from xds_server.wasm.push import Layer, push_image

from ._cosign import (
    MAX_PAYLOAD_BYTES,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    sha256_digest,
    signature_tag,
    simple_signing_payload,
)
from ._keys import PrivateKey

__all__ = ["SignResult", "sign_image"]

log = structlog.get_logger(__name__)

_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class SignResult:
    """What `sign_image` did: the image digest signed, where the signature went, which key."""

    image: str
    digest: str
    signature_ref: str
    key_fingerprint: str
    signatures: int


async def sign_image(client: RegistryClient, ref: ImageReference, key: PrivateKey) -> SignResult:
    """Sign the manifest `ref` names (a tag is resolved to its digest first) and add the
    signature to `sha256-<hex>.sig`, keeping signatures already there (as cosign does).
    Signing the same digest twice with the same key adds nothing."""
    digest = ref.digest or (await client.get_manifest(ref)).digest
    payload = simple_signing_payload(ref, digest)
    signature = base64.b64encode(key.sign(payload)).decode()
    sig_ref = ImageReference(ref.registry, ref.repository, signature_tag(digest))
    layers: list[Layer] = []
    try:
        existing = await client.get_manifest(sig_ref)
    except NotFound:
        existing = None
    if existing is not None:
        for layer in existing.data.get("layers") or []:
            if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLE_SIGNING:
                continue
            data = await client.fetch_blob(sig_ref, str(layer.get("digest")), max_bytes=MAX_PAYLOAD_BYTES)
            annotations = layer.get("annotations") if isinstance(layer.get("annotations"), dict) else None
            layers.append(Layer(data, SIMPLE_SIGNING, annotations))
    # ECDSA signatures are randomized: one key's signature of one payload is kept once.
    mine = [la for la in layers if la.data == payload and _signed_by(la, key)]
    if not mine:
        layers.append(Layer(payload, SIMPLE_SIGNING, {SIGNATURE_ANNOTATION: signature}))
    config = json.dumps({
        "architecture": "", "os": "", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(la.data) for la in layers]},
    }, separators=(",", ":")).encode()
    await push_image(client, sig_ref, config=config, config_media_type=_OCI_CONFIG, layers=layers)
    log.info("image_signed", image=str(ref), digest=digest, signature=str(sig_ref),
             key=key.public.fingerprint)
    return SignResult(image=str(ref), digest=digest, signature_ref=str(sig_ref),
                      key_fingerprint=key.public.fingerprint, signatures=len(layers))


def _signed_by(layer: Layer, key: PrivateKey) -> bool:
    encoded = (layer.annotations or {}).get(SIGNATURE_ANNOTATION, "")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:
        return False
    return key.public.verify(signature, layer.data)
