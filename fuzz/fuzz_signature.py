"""Fuzz signature material from a registry: simple-signing payloads and Sigstore bundles
(key-pair path; the keyless path is the `sigstore` library's). payload_digest returns a
string or None; verify_bundle returns a failed check with a reason: nothing may raise,
and random input never verifies.

Run: .venv/bin/python fuzz/fuzz_signature.py [libFuzzer flags]
"""

import sys

import atheris
import cryptography  # noqa: F401  (dependencies: imported first, so only our code is instrumented)
import structlog  # noqa: F401
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

with atheris.instrument_imports():
    from xds_server.trust import payload_digest, public_key_from_pem, verify_bundle

KEY = public_key_from_pem(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), name="fuzz.pub")
DIGEST = "sha256:" + "ab" * 32


def test_one_input(data: bytes) -> None:
    result = payload_digest(data)
    if result is not None and not isinstance(result, str):
        raise AssertionError(result)
    check = verify_bundle(data, DIGEST, b"manifest", keys=[KEY], keyless=None)
    if check.ok or not check.reason:
        raise AssertionError(check)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
