"""Signature policies: which images need whose signature. First match wins."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xds_server.wasm import ImageReference

from ._keys import PublicKey, load_public_key

__all__ = ["KeylessIdentity", "TrustPolicies", "TrustPolicy", "image_name"]


def image_name(ref: ImageReference) -> str:
    """`host/repository` of a reference: what a policy's `match` glob is matched against."""
    return f"{ref.registry}/{ref.repository}"


@dataclass(frozen=True)
class KeylessIdentity:
    """A keyless (Fulcio certificate) signer: the OIDC `issuer` and the certificate's
    subject alternative name `identity` (both exact), checked against the Sigstore
    trusted root in `trusted_root` (a `trusted_root.json`, read at verify time, no network)."""

    issuer: str
    identity: str
    trusted_root: Path


@dataclass(frozen=True)
class TrustPolicy:
    """One `verify` entry: `match` (a glob over `host/repository`; `*` also crosses `/`),
    the trusted `keys`, an optional `keyless` identity, and whether a valid signature is
    `required` (else a signature is checked and recorded when present)."""

    match: str
    keys: tuple[PublicKey, ...] = ()
    keyless: KeylessIdentity | None = None
    required: bool = True

    def covers(self, ref: ImageReference) -> bool:
        """True when this policy's glob matches the image's `host/repository`."""
        return fnmatch.fnmatchcase(image_name(ref), self.match)

    def describe(self) -> str:
        """What the policy trusts, for messages: `keys a.pem, b.pem; keyless ISSUER/ID`."""
        parts = []
        if self.keys:
            parts.append("keys " + ", ".join(k.name for k in self.keys))
        if self.keyless is not None:
            parts.append(f"keyless identity {self.keyless.identity} from {self.keyless.issuer}")
        return "; ".join(parts) or "nothing"

    @classmethod
    def load(cls, match: str, *, keys: Sequence[Path] = (), keyless: KeylessIdentity | None = None,
             required: bool = True) -> TrustPolicy:
        """Build a policy, reading its key files (`KeyFileError` naming a bad file)."""
        return cls(match=match, keys=tuple(load_public_key(p) for p in keys), keyless=keyless,
                   required=required)


@dataclass(frozen=True)
class TrustPolicies:
    """The ordered `verify` list. Immutable; safe to share between tasks."""

    policies: tuple[TrustPolicy, ...] = ()

    def policy_for(self, ref: ImageReference) -> TrustPolicy | None:
        """The first policy whose `match` covers `ref`, or None."""
        return next((p for p in self.policies if p.covers(ref)), None)
