"""Binding of TLS client identity to Envoy node ids (with mutual TLS)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence

from xds_server.config import IdentityRule
from xds_server.nodes import NodeInfo
from xds_server.xds import Authorizer

__all__ = ["make_authorizer", "peer_sans"]


def peer_sans(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """Subject alternative names (URI and DNS) of the peer certificate."""
    out: list[str] = []
    for key in ("x509_subject_alternative_name", "peer_dns"):
        for value in auth_context.get(key, ()):
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if text not in out:
                out.append(text)
    return out


def make_authorizer(rules: Sequence[IdentityRule]) -> Authorizer:
    """An authorizer allowing a node id when some rule's `san` glob matches one of the
    peer certificate's SANs and its `node_id` glob (with `{san}` replaced by that SAN)
    matches the node id. No certificate or no matching rule: refused."""

    def authorize(node: NodeInfo, auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
        sans = peer_sans(auth_context)
        if not sans:
            return f"node {node.id!r}: the client certificate has no subject alternative name"
        for rule in rules:
            for san in sans:
                if fnmatch.fnmatchcase(san, rule.san) and fnmatch.fnmatchcase(
                    node.id, rule.node_id.replace("{san}", san)
                ):
                    return None
        return (f"node {node.id!r} is not allowed for the client certificate "
                f"(SANs: {', '.join(sans)})")

    return authorize
