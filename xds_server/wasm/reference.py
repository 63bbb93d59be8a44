"""OCI/Docker image references: parsing and normalisation.

Grammar (as in distribution's ``reference`` package): ``[host[:port]/]path[:tag][@digest]``.
The first path component is a registry host when it contains ``.`` or ``:``, is
``localhost``, or is a bracketed IPv6 address; otherwise the registry is Docker Hub
(``docker.io``) and a single-component name gets the ``library/`` prefix. Without tag and
digest the tag is ``latest``. An ``oci://`` or ``docker://`` prefix is accepted and dropped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import InvalidReference

__all__ = [
    "DOCKER_HUB",
    "ImageReference",
    "is_loopback_host",
    "normalize_sha256",
    "parse_reference",
]

DOCKER_HUB = "docker.io"
"""Canonical name of Docker Hub in references."""

_DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_HOST = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$"
)
_SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")


def normalize_sha256(value: str, *, what: str = "digest") -> str:
    """Return the lower-case 64-hex form of a sha256 given as ``hex`` or ``sha256:hex``.

    Raises :class:`InvalidReference` naming ``what`` when the value is not a sha256.
    """
    text = value.strip()
    if text.lower().startswith("sha256:"):
        text = text[len("sha256:") :]
    text = text.lower()
    if not _SHA256_HEX.match(text):
        raise InvalidReference(f"{what} {value!r} is not a sha256 digest (64 hex digits)")
    return text


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (``name[:port]``) names this machine: ``localhost``, 127/8, ::1."""
    name = host
    if name.startswith("["):
        name = name[1 : name.index("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() == "localhost" or name.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ImageReference:
    """A parsed, normalised image reference. Immutable.

    ``registry`` is ``host[:port]`` as written (``docker.io`` for Docker Hub),
    ``repository`` the full path, ``tag`` and ``digest`` (``sha256:<hex>``) optional but
    never both absent after parsing.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def endpoint_host(self) -> str:
        """The host to contact: ``registry-1.docker.io`` for Docker Hub, else ``registry``."""
        return _DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str:
        """The digest when there is one, else the tag: what ``/manifests/<id>`` asks for."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageReference:
        """A copy naming ``digest`` (keeps the tag for display)."""
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse an image reference; raise :class:`InvalidReference` saying which part is wrong."""
    original = text
    raw = text.strip()
    for prefix in ("oci://", "docker://"):
        if raw.startswith(prefix):
            raw = raw[len(prefix) :]
    if not raw:
        raise InvalidReference("empty image reference")
    digest: str | None = None
    if "@" in raw:
        raw, _, digest_text = raw.partition("@")
        algorithm, _, hex_part = digest_text.partition(":")
        if algorithm != "sha256":
            raise InvalidReference(
                f"image reference {original!r}: unsupported digest {digest_text!r} "
                "(expected sha256:<64 hex>)"
            )
        digest = "sha256:" + normalize_sha256(hex_part, what=f"digest of {original!r}")
    tag: str | None = None
    last_slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > last_slash:
        raw, tag = raw[:colon], raw[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidReference(f"image reference {original!r}: invalid tag {tag!r}")
    parts = raw.split("/")
    first = parts[0]
    if len(parts) > 1 and (
        "." in first or ":" in first or first == "localhost" or first.startswith("[")
    ):
        registry = first
        path = parts[1:]
        if not _HOST.match(registry):
            raise InvalidReference(
                f"image reference {original!r}: invalid registry host {registry!r}"
            )
    else:
        registry = DOCKER_HUB
        path = parts
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    for component in path:
        if not _COMPONENT.match(component):
            raise InvalidReference(
                f"image reference {original!r}: invalid repository component {component!r} "
                "(lower-case letters, digits and separators . _ __ -)"
            )
    repository = "/".join(path)
    if len(registry) + 1 + len(repository) > 255:
        raise InvalidReference(f"image reference {original!r}: name longer than 255 characters")
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry, repository, tag, digest)
