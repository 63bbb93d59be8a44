"""The outcome of checking an image against its policy, as recorded in revisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Who signed manifest `digest` of `image`, under which policy.

    `verified` is True when a signature verified; then `format` is `cosign` (tag scheme)
    or `bundle` (a Sigstore bundle referrer), and the signer is `key` (a key file and its
    fingerprint) or `identity`/`issuer` (keyless). When False, `reason` says what was
    missing (only possible under a policy that is not `required`).
    """

    image: str
    digest: str
    policy: str
    verified: bool
    format: str = ""
    key: str = ""
    key_fingerprint: str = ""
    identity: str = ""
    issuer: str = ""
    reason: str = ""

    @property
    def signer(self) -> str:
        """One line: `key cosign.pub (sha256:…)`, `identity ID (issuer ISS)` or `unsigned`."""
        if not self.verified:
            return "unverified"
        if self.key:
            return f"key {self.key} ({self.key_fingerprint[:19]})"
        return f"identity {self.identity} (issuer {self.issuer})"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (revisions, the API)."""
        return {k: v for k, v in {
            "image": self.image, "digest": self.digest, "policy": self.policy,
            "verified": self.verified, "format": self.format, "key": self.key,
            "key_fingerprint": self.key_fingerprint, "identity": self.identity,
            "issuer": self.issuer, "reason": self.reason, "signer": self.signer,
        }.items() if v != ""}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of `to_dict` (unknown keys ignored)."""
        fields = ("image", "digest", "policy", "format", "key", "key_fingerprint", "identity",
                  "issuer", "reason")
        return cls(verified=bool(data.get("verified")),
                   **{f: str(data.get(f, "")) for f in fields})
