"""Checking an image's signatures against the policy that covers it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from xds_server.wasm import ImageReference, RegistryClient

from ._bundle import find_bundles, verify_bundle
from ._cosign import find_signatures, payload_digest, signature_tag
from ._errors import UntrustedImage
from ._keys import PublicKey
from ._metrics import SIGNATURE_CHECKS
from ._policy import TrustPolicies, TrustPolicy, image_name
from ._verdict import Verdict

__all__ = ["ImageVerifier", "list_signatures"]

log = structlog.get_logger(__name__)


class ImageVerifier:
    """Finds an image's signatures in its registry and checks them against `policies`.

    Stateless between calls (safe to share); every call reads the registry anew, so a
    signature removed from the registry is no longer found.
    """

    def __init__(self, policies: TrustPolicies) -> None:
        self.policies = policies

    def policy_for(self, ref: ImageReference) -> TrustPolicy | None:
        """The policy covering `ref` (first match), or None."""
        return self.policies.policy_for(ref)

    async def verify(self, client: RegistryClient, ref: ImageReference, digest: str) -> Verdict | None:
        """The verdict for manifest `digest` of `ref`; None when no policy covers it.

        Raises `UntrustedImage` (naming the image, the policy and what was missing) when
        the policy is `required` and no signature verifies. Registry failures while
        looking for signatures propagate (`WasmError`): no verdict without looking.
        """
        policy = self.policy_for(ref)
        if policy is None:
            return None
        image = f"{image_name(ref)}@{digest}"
        try:
            verdict, missing = await self._check(client, ref, digest, policy)
        except Exception:
            SIGNATURE_CHECKS.labels("error").inc()
            raise
        if verdict is not None:
            SIGNATURE_CHECKS.labels("verified").inc()
            log.info("signature_verified", image=image, policy=policy.match, signer=verdict.signer,
                     format=verdict.format)
            return verdict
        SIGNATURE_CHECKS.labels("refused" if policy.required else "unverified").inc()
        if policy.required:
            log.warning("signature_refused", image=image, policy=policy.match, reason=missing)
            raise UntrustedImage(
                f"image {image} is refused by verify policy {policy.match!r} "
                f"(trusts {policy.describe()}): {missing}",
                image=image, digest=digest, policy=policy.match)
        log.info("signature_missing", image=image, policy=policy.match, reason=missing)
        return Verdict(image=image, digest=digest, policy=policy.match, verified=False, reason=missing)

    async def _check(self, client: RegistryClient, ref: ImageReference, digest: str,
                     policy: TrustPolicy) -> tuple[Verdict | None, str]:
        image = f"{image_name(ref)}@{digest}"
        problems: list[str] = []
        signatures = await find_signatures(client, ref, digest) if policy.keys else []
        for sig in signatures:
            named = payload_digest(sig.payload)
            if named != digest:
                problems.append(f"a cosign signature's payload names {named or 'no digest'}, not {digest}")
                continue
            key = next((k for k in policy.keys if k.verify(sig.signature, sig.payload)), None)
            if key is not None:
                return Verdict(image=image, digest=digest, policy=policy.match, verified=True,
                               format="cosign", key=key.name, key_fingerprint=key.fingerprint), ""
            problems.append("a cosign signature verifies with none of the policy's keys")
        bundles = await find_bundles(client, ref, digest)
        manifest = (await client.get_manifest(ref, digest)).raw if bundles else b""
        for raw in bundles:
            check = verify_bundle(raw, digest, manifest, keys=policy.keys, keyless=policy.keyless)
            if check.ok:
                return Verdict(image=image, digest=digest, policy=policy.match, verified=True,
                               format="bundle", key=check.key.name if check.key else "",
                               key_fingerprint=check.key.fingerprint if check.key else "",
                               identity=check.identity, issuer=check.issuer), ""
            problems.append(check.reason)
        if not signatures and not bundles:
            looked = (f"tag {signature_tag(digest)} and " if policy.keys else "") + "bundle referrers"
            return None, f"no signature found (looked for {looked})"
        return None, f"no valid signature ({len(signatures)} cosign, {len(bundles)} bundle): " + "; ".join(
            dict.fromkeys(problems))


async def list_signatures(client: RegistryClient, ref: ImageReference, digest: str,
                          keys: Sequence[PublicKey] = ()) -> list[dict[str, Any]]:
    """What signatures manifest `digest` of `ref` carries, for `inspect`: format, where,
    and (with `keys`) which key verifies each. Nothing here is trusted: it describes."""
    out: list[dict[str, Any]] = []
    for sig in await find_signatures(client, ref, digest):
        named = payload_digest(sig.payload)
        key = next((k for k in keys if k.verify(sig.signature, sig.payload)), None)
        out.append({"format": "cosign", "tag": signature_tag(digest), "layer": sig.layer_digest,
                    "payload_digest_matches": named == digest,
                    **({"verified_by": key.name, "key_fingerprint": key.fingerprint} if key else {})})
    for raw in await find_bundles(client, ref, digest):
        entry: dict[str, Any] = {"format": "bundle", "bytes": len(raw)}
        check = verify_bundle(raw, digest, (await client.get_manifest(ref, digest)).raw,
                              keys=keys, keyless=None) if keys else None
        if check is not None and check.ok and check.key is not None:
            entry.update(verified_by=check.key.name, key_fingerprint=check.key.fingerprint)
        entry["kind"] = "keyless" if b'"certificate"' in raw or b"x509CertificateChain" in raw else "key"
        out.append(entry)
    return out
