"""Trust in modules before they run: signature policies, discovery and verification.

`ImageVerifier` checks an image's signatures (cosign's tag scheme with key pairs;
Sigstore bundles attached as OCI referrers, key-pair or keyless) against the first
`TrustPolicy` that covers it and returns a `Verdict`, or raises `UntrustedImage` when a
`required` policy finds no valid signature. `sign_image` writes cosign-format
signatures. Imports only `xds_server.wasm` (the registry client).
"""

from ._bundle import BUNDLE_MEDIA_TYPE, find_bundles, verify_bundle
from ._cosign import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING,
    CosignSignature,
    find_signatures,
    payload_digest,
    signature_tag,
    simple_signing_payload,
)
from ._errors import KeyFileError, TrustError, UntrustedImage
from ._keys import PrivateKey, PublicKey, load_private_key, load_public_key, public_key_from_pem
from ._policy import KeylessIdentity, TrustPolicies, TrustPolicy, image_name
from ._sign import SignResult, sign_image
from ._verdict import Verdict
from ._verify import ImageVerifier, list_signatures

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "CosignSignature",
    "ImageVerifier",
    "KeyFileError",
    "KeylessIdentity",
    "PrivateKey",
    "PublicKey",
    "SignResult",
    "TrustError",
    "TrustPolicies",
    "TrustPolicy",
    "UntrustedImage",
    "Verdict",
    "find_bundles",
    "find_signatures",
    "image_name",
    "list_signatures",
    "load_private_key",
    "load_public_key",
    "payload_digest",
    "public_key_from_pem",
    "sign_image",
    "signature_tag",
    "simple_signing_payload",
    "verify_bundle",
]
