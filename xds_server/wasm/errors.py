"""The exception tree of the wasm subsystem.

Every error raised by :mod:`xds_server.wasm` derives from :class:`WasmError`. Messages name
what was wrong and where (the reference, the digest); they never contain credentials.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "InvalidModule",
    "InvalidReference",
    "ModuleTooLarge",
    "NotFound",
    "RegistryError",
    "RegistryUnavailable",
    "StoreError",
    "UnsafeArchive",
    "UnsafeDestination",
    "UnsupportedLayout",
    "VerificationError",
    "WasmError",
]


class WasmError(Exception):
    """Root of every error raised while resolving, verifying, storing or pushing a module."""


class InvalidReference(WasmError, ValueError):
    """An image reference, URL or digest string does not follow its grammar."""


class RegistryError(WasmError):
    """A registry answered with an error, or could not be used.

    ``status`` is the HTTP status when there was a response, else ``None``.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(RegistryError):
    """The registry or its token service refused the credentials (401/403), or could not
    be authenticated with.

    :attr:`refused` is true when the answer was that these credentials (or anonymous
    access) may not read the image: such an answer is never papered over with a stored
    copy.
    """

    @property
    def refused(self) -> bool:
        """True for a 401 or 403 answer: the credentials in use may not read the image."""
        return self.status in (401, 403)


class NotFound(RegistryError):
    """The repository, manifest or blob does not exist (404)."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached or kept failing (connection errors, 429, 5xx)
    after every retry."""


class UnsafeDestination(RegistryError):
    """The fetch guard refused a destination: a link-local, cloud-metadata, unspecified,
    multicast, broadcast or reserved address, or a private or loopback one that the
    destination's policy does not allow. Never retried.

    ``url`` is the URL being fetched (the redirect target for a redirect, the realm for a
    token request), ``host`` the host name in it, ``address`` the refused IP (``None``
    when the name itself is refused) and ``reason`` what kind of address it is.
    """

    def __init__(
        self, *, url: str, host: str, address: str | None, reason: str
    ) -> None:
        where = host if address is None or address == host else f"{host} ({address})"
        super().__init__(f"refusing to fetch {url}: {where} is {reason}")
        self.url = url
        self.host = host
        self.address = address
        self.reason = reason

    def for_url(self, url: str) -> UnsafeDestination:
        """The same refusal, naming ``url``."""
        return UnsafeDestination(url=url, host=self.host, address=self.address, reason=self.reason)


class VerificationError(WasmError):
    """Content does not match the digest it was promised under.

    Carries ``expected`` and ``received`` digests and the ``reference`` being resolved.
    """

    def __init__(self, what: str, *, reference: str, expected: str, received: str) -> None:
        super().__init__(
            f"{what} of {reference} failed verification: expected {expected}, received {received}"
        )
        self.reference = reference
        self.expected = expected
        self.received = received


class ModuleTooLarge(WasmError):
    """A blob, module, archive, manifest, index or token response exceeds its cap (size,
    layer count, index entries, tar members)."""


class InvalidModule(WasmError):
    """The content is not a usable proxy-wasm module (bad magic, fails validation, no
    ``proxy_abi_version_*`` export, no module in the image)."""


class UnsupportedLayout(InvalidModule):
    """The image's media types match none of the wasm image layouts we read."""


class UnsafeArchive(InvalidModule):
    """A tar layer holds path traversal, absolute paths, links, or expands beyond the cap."""


class StoreError(WasmError):
    """The module store could not write a verified module (disk full, permissions): the
    module is not stored and nothing that was stored before changes."""
