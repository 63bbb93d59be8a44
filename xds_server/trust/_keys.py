"""Public and private keys of the key-pair signature formats: ECDSA P-256 and Ed25519.

Keys are PEM files: public keys in PKIX (`PUBLIC KEY`, what `cosign generate-key-pair`
writes to `cosign.pub`), private keys in PKCS#8 or SEC1 (`PRIVATE KEY`,
`EC PRIVATE KEY`), unencrypted. cosign's own encrypted private key format (`ENCRYPTED
COSIGN PRIVATE KEY`) is refused with a message saying how to export the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from ._errors import KeyFileError

__all__ = ["PrivateKey", "PublicKey", "load_private_key", "load_public_key", "public_key_from_pem"]

_PublicKeyTypes = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_PrivateKeyTypes = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _algorithm(key: object, where: str) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"{where}: ECDSA key on curve {key.curve.name}; only P-256 is supported")
        return "ecdsa-p256"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise KeyFileError(f"{where}: {type(key).__name__} is not an ECDSA P-256 or Ed25519 key")


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key. `name` is where it came from (the PEM file path),
    `fingerprint` the sha256 of its DER SubjectPublicKeyInfo (`sha256:<hex>`)."""

    name: str
    algorithm: str
    fingerprint: str
    key: _PublicKeyTypes

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when `signature` signs `message` (ECDSA: DER over SHA-256; Ed25519: pure)."""
        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                self.key.verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def verify_digest(self, signature: bytes, sha256: bytes) -> bool:
        """True when `signature` signs a message whose SHA-256 is `sha256` (ECDSA only:
        Ed25519 signs messages, not digests)."""
        if not isinstance(self.key, ec.EllipticCurvePublicKey):
            return False
        try:
            self.key.verify(signature, sha256, ec.ECDSA(Prehashed(hashes.SHA256())))
        except (InvalidSignature, ValueError):
            return False
        return True


def public_key_from_pem(data: bytes, *, name: str) -> PublicKey:
    """Parse a PKIX PEM public key; `KeyFileError` naming `name` when it is not one."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise KeyFileError(f"{name}: not a PEM public key ({error})") from None
    algorithm = _algorithm(key, name)
    assert isinstance(key, _PublicKeyTypes)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(name=name, algorithm=algorithm,
                     fingerprint="sha256:" + hashlib.sha256(der).hexdigest(), key=key)


def load_public_key(path: Path) -> PublicKey:
    """Read a PEM public key file (`KeyFileError` naming the file when it cannot)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"key file {path}: cannot read ({error.strerror or error})") from None
    return public_key_from_pem(data, name=str(path))


@dataclass(frozen=True)
class PrivateKey:
    """A signing key and its public half."""

    public: PublicKey
    key: _PrivateKeyTypes

    def sign(self, message: bytes) -> bytes:
        """Sign `message` (ECDSA: DER over SHA-256; Ed25519: pure), as cosign does."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(message, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(message)


def load_private_key(path: Path) -> PrivateKey:
    """Read an unencrypted PEM private key (PKCS#8 or SEC1), ECDSA P-256 or Ed25519."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"key file {path}: cannot read ({error.strerror or error})") from None
    if b"ENCRYPTED COSIGN PRIVATE KEY" in data:
        raise KeyFileError(
            f"key file {path}: an encrypted cosign key; export it as PKCS#8 PEM first "
            "(e.g. `cosign import-key-pair` from an unencrypted key, or use an unencrypted "
            "PKCS#8 key made with openssl)"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"key file {path}: not an unencrypted PEM private key ({error})") from None
    _algorithm(key, str(path))
    assert isinstance(key, _PrivateKeyTypes)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return PrivateKey(public=public_key_from_pem(pem, name=f"{path} (public half)"), key=key)
