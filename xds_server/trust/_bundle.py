"""Sigstore bundles attached to an image as OCI referrers (cosign 3's default).

A bundle referrer is a manifest whose `artifactType` is a Sigstore bundle type
(`application/vnd.dev.sigstore.bundle.v0.3+json`), whose `subject` is the signed image
manifest, and whose one layer is the bundle JSON. Referrers are listed through the OCI 1.1
referrers API or, for registries without it, the referrers tag schema (an index tagged
`sha256-<hex>`).

A bundle signs the image manifest either as a `messageSignature` over the manifest bytes
(its digest is the manifest digest) or as a `dsseEnvelope` holding an in-toto statement
whose subject digest is the manifest digest. Keyless bundles (a Fulcio certificate) are
verified with the `sigstore` library against the policy's trusted root, offline (chain,
SCT, transparency log inclusion, identity and issuer); key-pair bundles against the
policy's keys (signature only: no transparency log is consulted).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xds_server.wasm import ImageReference, NotFound, RegistryClient, WasmError

from ._keys import PublicKey
from ._policy import KeylessIdentity

__all__ = ["BUNDLE_MEDIA_PREFIX", "BUNDLE_MEDIA_TYPE", "BundleCheck", "find_bundles", "verify_bundle"]

BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MAX_BUNDLE_BYTES = 1 * 2**20
MAX_BUNDLES = 32
_IN_TOTO = "application/vnd.in-toto+json"
_EMPTY = "application/vnd.oci.empty.v1+json"


async def find_bundles(client: RegistryClient, ref: ImageReference, digest: str) -> list[bytes]:
    """The bundle JSON documents attached to manifest `digest` of `ref` (verified by digest
    while downloading; their signatures are not checked here)."""
    index = await client.get_referrers(ref, digest)
    if index is None:
        try:
            index = (await client.get_manifest(ref, digest.replace(":", "-"))).data
        except NotFound:
            return []
    entries = index.get("manifests")
    if not isinstance(entries, list):
        return []
    found = []
    # Some cosign versions list bundle referrers with the empty artifact type (cosign
    # issue 4422): those are opened too, and kept when their layer is a bundle.
    candidates = [e for e in entries if isinstance(e, dict) and (
        str(e.get("artifactType", "")).startswith(BUNDLE_MEDIA_PREFIX)
        or e.get("artifactType") in (None, "", _EMPTY))]
    for entry in candidates[:MAX_BUNDLES]:
        try:
            manifest = await client.get_manifest(ref, str(entry.get("digest", "")))
            subject = manifest.data.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            layers = [la for la in manifest.data.get("layers") or []
                      if isinstance(la, dict) and str(la.get("mediaType", "")).startswith(BUNDLE_MEDIA_PREFIX)]
            if layers:
                found.append(await client.fetch_blob(ref, str(layers[0].get("digest", "")),
                                                     max_bytes=MAX_BUNDLE_BYTES))
        except (NotFound, WasmError):
            continue
    return found


@dataclass(frozen=True)
class BundleCheck:
    """The outcome for one bundle: the signer when it verified, else why not."""

    ok: bool
    key: PublicKey | None = None
    identity: str = ""
    issuer: str = ""
    reason: str = ""


def _b64(value: object) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _statement_names(payload: bytes, digest: str) -> bool:
    try:
        statement = json.loads(payload)
    except ValueError:
        return False
    subjects = statement.get("subject") if isinstance(statement, dict) else None
    hex_digest = digest.removeprefix("sha256:")
    return isinstance(subjects, list) and any(
        isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get("sha256") == hex_digest
        for s in subjects)


def _pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _check_with_keys(doc: Mapping[str, Any], digest: str, manifest: bytes,
                     keys: Sequence[PublicKey]) -> BundleCheck:
    if not keys:
        return BundleCheck(False, reason="a key-pair bundle, but the policy names no keys")
    message = doc.get("messageSignature")
    envelope = doc.get("dsseEnvelope")
    if isinstance(message, dict):
        md = message.get("messageDigest")
        named = _b64(md.get("digest")).hex() if isinstance(md, dict) else digest.removeprefix("sha256:")
        if "sha256:" + named != digest:
            return BundleCheck(False, reason=f"bundle signs sha256:{named}, not {digest}")
        signature = _b64(message.get("signature"))
        for key in keys:
            if key.verify_digest(signature, bytes.fromhex(named)) or key.verify(signature, manifest):
                return BundleCheck(True, key=key)
        return BundleCheck(False, reason="bundle signature verifies with none of the policy's keys")
    if isinstance(envelope, dict):
        payload = _b64(envelope.get("payload"))
        payload_type = str(envelope.get("payloadType", ""))
        if payload_type != _IN_TOTO or not _statement_names(payload, digest):
            return BundleCheck(False, reason=f"bundle's DSSE statement does not name {digest}")
        pae = _pae(payload_type, payload)
        for sig in envelope.get("signatures") or []:
            signature = _b64(sig.get("sig")) if isinstance(sig, dict) else b""
            for key in keys:
                if key.verify(signature, pae):
                    return BundleCheck(True, key=key)
        return BundleCheck(False, reason="bundle's DSSE signature verifies with none of the policy's keys")
    return BundleCheck(False, reason="bundle has neither messageSignature nor dsseEnvelope")


def _check_keyless(raw: bytes, digest: str, keyless: KeylessIdentity) -> BundleCheck:
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity
    from sigstore_models.common.v1 import HashAlgorithm

    try:
        bundle = Bundle.from_json(raw)
        verifier = Verifier(trusted_root=TrustedRoot.from_file(str(keyless.trusted_root)))
        policy = Identity(identity=keyless.identity, issuer=keyless.issuer)
        if bundle._dsse_envelope is not None:
            payload_type, payload = verifier.verify_dsse(bundle, policy)
            if payload_type != _IN_TOTO or not _statement_names(payload, digest):
                return BundleCheck(False, reason=f"bundle's DSSE statement does not name {digest}")
        else:
            hashed = Hashed(algorithm=HashAlgorithm.SHA2_256,
                            digest=bytes.fromhex(digest.removeprefix("sha256:")))
            verifier.verify_artifact(hashed, bundle, policy)
    except (SigstoreError, ValueError, OSError) as error:
        return BundleCheck(False, reason=f"keyless bundle does not verify: {error}")
    except Exception as error:  # hostile input may reach corners of the library: a failed check
        return BundleCheck(False, reason=f"keyless bundle does not verify: {type(error).__name__}: {error}")
    return BundleCheck(True, identity=keyless.identity, issuer=keyless.issuer)


def verify_bundle(raw: bytes, digest: str, manifest: bytes, *, keys: Sequence[PublicKey],
                  keyless: KeylessIdentity | None) -> BundleCheck:
    """Check one bundle against the policy's keys and keyless identity.

    `manifest` are the bytes of the signed manifest (`digest` is their sha256): Ed25519
    message signatures sign them directly. Never raises on a malformed bundle: it is a
    failed check with the reason.
    """
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or not str(doc.get("mediaType", "")).startswith(BUNDLE_MEDIA_PREFIX):
            return BundleCheck(False, reason="not a Sigstore bundle")
        material = doc.get("verificationMaterial")
        keyless_material = isinstance(material, dict) and (
            "certificate" in material or "x509CertificateChain" in material)
        if keyless_material:
            if keyless is None:
                return BundleCheck(False, reason="a keyless bundle, but the policy has no keyless identity")
            return _check_keyless(raw, digest, keyless)
        return _check_with_keys(doc, digest, manifest, keys)
    except (ValueError, TypeError, AttributeError) as error:
        return BundleCheck(False, reason=f"malformed bundle: {error}")
