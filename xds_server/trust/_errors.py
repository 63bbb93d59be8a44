"""The exception tree of the trust subsystem."""

from __future__ import annotations

__all__ = ["KeyFileError", "TrustError", "UntrustedImage"]


class TrustError(Exception):
    """Root of every error raised while loading keys, finding or checking signatures."""


class KeyFileError(TrustError):
    """A key file cannot be read or is not a supported key; the message names the file."""


class UntrustedImage(TrustError):
    """An image a `required` policy covers carries no valid signature.

    The message names the image (with its manifest digest), the policy (its `match`)
    and what was missing; `image`, `digest` and `policy` carry the same for callers.
    """

    def __init__(self, message: str, *, image: str, digest: str, policy: str) -> None:
        super().__init__(message)
        self.image = image
        self.digest = digest
        self.policy = policy
