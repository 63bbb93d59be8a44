"""Node identity and node selectors: which Envoys a filter variant targets.

Pure data and matching; no I/O. Used by the cache (to resolve a resource name for a
node), by the config (to validate selectors) and by the status views.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["AllOf", "NodeIdSet", "NodeInfo", "NodeSelector", "Selector", "selectors_overlap"]

_WILDCARDS = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What the server knows of one Envoy: taken from the first request's `node` field.

    `metadata` holds the node's metadata struct as plain Python values (never mutated).
    """

    id: str = ""
    cluster: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    user_agent: str = ""
    user_agent_version: str = ""
    locality: str = ""

    @classmethod
    def from_proto(cls, node: Any) -> NodeInfo:
        """Build from an `envoy.config.core.v3.Node` message (only the fields we use)."""
        from google.protobuf.json_format import MessageToDict

        metadata: dict[str, Any] = {}
        if node.HasField("metadata"):
            metadata = MessageToDict(node.metadata)
        version = ""
        if node.HasField("user_agent_build_version"):
            v = node.user_agent_build_version.version
            version = f"{v.major_number}.{v.minor_number}.{v.patch}"
        elif node.user_agent_version:
            version = node.user_agent_version
        locality = ""
        if node.HasField("locality"):
            loc = node.locality
            locality = "/".join(p for p in (loc.region, loc.zone, loc.sub_zone) if p)
        return cls(
            id=node.id,
            cluster=node.cluster,
            metadata=metadata,
            user_agent=node.user_agent_name,
            user_agent_version=version,
            locality=locality,
        )


def _lookup(metadata: Mapping[str, Any], dotted: str) -> Any:
    """Return the value at a dotted path (`a.b.c`) in nested metadata, or None."""
    cur: Any = metadata
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


@dataclass(frozen=True, slots=True)
class NodeSelector:
    """Selects nodes by id glob, cluster glob and exact metadata values.

    Globs use shell syntax (`*`, `?`, `[...]`). Metadata keys may be dotted paths into
    nested metadata; values compare as strings. An empty selector matches every node.
    """

    node_id: str = "*"
    cluster: str = "*"
    metadata: Mapping[str, str] = field(default_factory=dict)

    def matches(self, node: NodeInfo) -> bool:
        """True when `node` satisfies every part of this selector."""
        if self.node_id != "*" and not fnmatch.fnmatchcase(node.id, self.node_id):
            return False
        if self.cluster != "*" and not fnmatch.fnmatchcase(node.cluster, self.cluster):
            return False
        for key, want in self.metadata.items():
            got = _lookup(node.metadata, key)
            if got is None or _as_text(got) != want:
                return False
        return True

    def describe(self) -> str:
        """A short human-readable form, e.g. `cluster=prod-* node_id=* role=edge`."""
        parts = [f"node_id={self.node_id}", f"cluster={self.cluster}"]
        parts += [f"{k}={v}" for k, v in sorted(self.metadata.items())]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The selector as plain JSON data (the config/API form)."""
        out: dict[str, Any] = {"node_id": self.node_id, "cluster": self.cluster}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _globs_disjoint(a: str, b: str) -> bool:
    """True when no string can match both globs (a conservative test).

    Literal patterns are compared exactly or matched against the other glob. For two
    wildcard patterns, the literal prefixes before the first wildcard and the literal
    suffixes after the last one must be compatible, or the globs are disjoint.
    """
    a_wild, b_wild = bool(_WILDCARDS.search(a)), bool(_WILDCARDS.search(b))
    if not a_wild and not b_wild:
        return a != b
    if not a_wild:
        return not fnmatch.fnmatchcase(a, b)
    if not b_wild:
        return not fnmatch.fnmatchcase(b, a)
    pa, pb = _WILDCARDS.split(a, 1)[0], _WILDCARDS.split(b, 1)[0]
    if not (pa.startswith(pb) or pb.startswith(pa)):
        return True
    sa, sb = _WILDCARDS.split(a)[-1], _WILDCARDS.split(b)[-1]
    return not (sa.endswith(sb) or sb.endswith(sa))


def selectors_overlap(a: NodeSelector, b: NodeSelector) -> bool:
    """True unless the two selectors provably select disjoint sets of nodes.

    Two specs of one filter name with overlapping selectors would make the choice for a
    node ambiguous; the config rejects them. The test is conservative: selectors that
    might overlap count as overlapping.
    """
    if _globs_disjoint(a.node_id, b.node_id) or _globs_disjoint(a.cluster, b.cluster):
        return False
    return all(a.metadata[key] == b.metadata[key] for key in a.metadata.keys() & b.metadata.keys())


class Selector(Protocol):
    """Anything that decides whether a node is targeted. Implementations are immutable
    and compare equal when they select the same nodes by the same rule."""

    def matches(self, node: NodeInfo) -> bool:
        """True when `node` is selected."""
        ...

    def describe(self) -> str:
        """A short human-readable form."""
        ...


@dataclass(frozen=True, slots=True)
class AllOf:
    """Selects the nodes every one of `parts` selects (e.g. a canary within a selector)."""

    parts: tuple[Selector, ...]

    def matches(self, node: NodeInfo) -> bool:
        """True when every part matches."""
        return all(p.matches(node) for p in self.parts)

    def describe(self) -> str:
        """The parts joined with ` and `."""
        return " and ".join(f"({p.describe()})" for p in self.parts)


@dataclass(frozen=True, slots=True)
class NodeIdSet:
    """Selects exactly the nodes whose ids are in `ids`."""

    ids: frozenset[str]

    def matches(self, node: NodeInfo) -> bool:
        """True when the node's id is listed."""
        return node.id in self.ids

    def describe(self) -> str:
        """`node_id in {a, b}`."""
        return "node_id in {" + ", ".join(sorted(self.ids)) + "}"
