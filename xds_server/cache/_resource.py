"""Immutable resources, serialized once per version."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

_TYPE_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One xDS resource type the server can serve, described as data.

    `full_state`: SotW responses must carry every resource of the type (LDS, CDS), and
    a removal is itself a change worth a response. For other types a SotW response
    carries the subscribed resources and removals are not announced.
    `service` / `stream_method` / `delta_method` / `fetch_method`: the type-specific
    gRPC service that serves it, besides ADS (empty when there is none).
    """

    type_url: str
    full_state: bool = False
    service: str = ""
    stream_method: str = ""
    delta_method: str = ""
    fetch_method: str = ""


class TypeRegistry:
    """The set of resource types served; lookups by type URL. Read-only after start."""

    def __init__(self, types: Iterable[ResourceType]) -> None:
        self._types = {t.type_url: t for t in types}
        self._rank = {url: i for i, url in enumerate(self._types)}

    def rank(self, type_url: str) -> int:
        """The type's position in registration order: when several types are due on one
        stream, lower ranks are sent first (Envoy's warming order)."""
        return self._rank.get(type_url, len(self._rank))

    def get(self, type_url: str) -> ResourceType | None:
        """The registered type, or None for a type URL this server does not serve."""
        return self._types.get(type_url)

    def __iter__(self) -> Any:
        return iter(self._types.values())

    def __contains__(self, type_url: object) -> bool:
        return type_url in self._types


@dataclass(frozen=True, slots=True, eq=False)
class Resource:
    """One version of one named resource. Must not be modified once created.

    `version` is derived from the content (type URL and deterministic serialization),
    so the same content always has the same version: across restarts and replicas.
    `aliases` are versions of equivalent content (the same behaviour, another encoding):
    a reconnecting client that presents one of them is current and gets nothing resent.
    `sotw_field` and `delta_field` are the resource pre-encoded as the `resources`
    field of a `DiscoveryResponse` / `DeltaDiscoveryResponse`, so a response for any
    number of streams is assembled by concatenation, never re-serialized per stream.
    """

    name: str
    type_url: str
    version: str
    body: bytes
    sotw_field: bytes
    delta_field: bytes
    aliases: frozenset[str] = frozenset()

    @classmethod
    def from_message(cls, name: str, message: Any) -> Resource:
        """Serialize `message` once (deterministically) and derive its version."""
        type_url = _TYPE_PREFIX + message.DESCRIPTOR.full_name
        body = message.SerializeToString(deterministic=True)
        return cls.from_bytes(name, type_url, body)

    @classmethod
    def from_bytes(cls, name: str, type_url: str, body: bytes) -> Resource:
        """Wrap an already serialized resource message of `type_url`."""
        digest = hashlib.sha256(type_url.encode() + b"\0" + body).hexdigest()
        version = digest[:16]
        packed = any_pb2.Any(type_url=type_url, value=body)
        sotw = discovery_pb2.DiscoveryResponse(resources=[packed]).SerializeToString()
        delta = discovery_pb2.DeltaDiscoveryResponse(
            resources=[discovery_pb2.Resource(name=name, version=version, resource=packed)]
        ).SerializeToString()
        return cls(name, type_url, version, body, sotw, delta)

    @property
    def size(self) -> int:
        """Serialized size of the resource in bytes."""
        return len(self.body)


def collection_version(versions: Mapping[str, str]) -> str:
    """The SotW `version_info` of a response carrying `versions` (name -> version).

    A single resource's response carries that resource's own version, so Envoy's
    config dump shows the filter version; several resources get a hash of the sorted
    pairs (memoized: every stream at the same point asks for the same one). Deterministic,
    so a reconnecting client presenting it can be recognized.
    """
    if not versions:
        return ""
    if len(versions) == 1:
        return next(iter(versions.values()))
    return _hash_pairs(tuple(sorted(versions.items())))


@functools.lru_cache(maxsize=4096)
def _hash_pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    h = hashlib.sha256()
    for name, version in pairs:
        h.update(name.encode())
        h.update(b"\0")
        h.update(version.encode())
        h.update(b"\n")
    return "set-" + h.hexdigest()[:16]
