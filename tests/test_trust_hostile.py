"""Issue 16: signature material comes from the registry, so from whoever controls it.
Random and hostile payloads and bundles end in a failed check with a reason, never in an
exception or a pass."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xds_server.trust import KeylessIdentity, payload_digest, public_key_from_pem, verify_bundle

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
DIGEST = "sha256:" + "ab" * 32
KEY = public_key_from_pem(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), name="k.pub")
KEYLESS = KeylessIdentity(issuer="https://i", identity="me@x", trusted_root=Path("/nonexistent/root.json"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
b64 = st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode())


def bundle_like() -> st.SearchStrategy[dict[str, Any]]:
    """Documents shaped like bundles, with hostile values where it matters."""
    material = st.one_of(
        st.fixed_dictionaries({"publicKey": st.fixed_dictionaries({"hint": st.text(max_size=8)})}),
        st.fixed_dictionaries({"certificate": st.fixed_dictionaries({"rawBytes": b64})}),
        json_values)
    content = st.one_of(
        st.fixed_dictionaries({"messageSignature": st.fixed_dictionaries({
            "messageDigest": st.fixed_dictionaries({"algorithm": st.just("SHA2_256"), "digest": b64 | json_values}),
            "signature": b64 | json_values})}),
        st.fixed_dictionaries({"dsseEnvelope": st.fixed_dictionaries({
            "payload": b64 | json_values, "payloadType": st.just("application/vnd.in-toto+json") | st.text(max_size=5),
            "signatures": st.lists(st.fixed_dictionaries({"sig": b64 | json_values}) | json_values, max_size=3)})}),
        st.dictionaries(st.text(max_size=12), json_values, max_size=3))
    return st.builds(lambda m, c: {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                   "verificationMaterial": m, **c}, material, content)


@FAST
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_payload_digest_never_raises(data: bytes) -> None:
    result = payload_digest(data)
    assert result is None or isinstance(result, str)


@FAST
@given(bundle_like() | json_values, st.booleans())
def test_hostile_bundles_fail_with_a_reason(doc: Any, keyless: bool) -> None:
    raw = json.dumps(doc).encode()
    check = verify_bundle(raw, DIGEST, b"manifest", keys=[KEY], keyless=KEYLESS if keyless else None)
    assert not check.ok and check.reason


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_are_not_bundles(raw: bytes) -> None:
    check = verify_bundle(raw, DIGEST, b"manifest", keys=[KEY], keyless=KEYLESS)
    assert not check.ok and check.reason
