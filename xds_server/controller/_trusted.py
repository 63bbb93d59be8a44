"""A module provider that checks image signatures before a module is fetched or served.

Wraps another `ModuleProvider`. For an image a verify policy covers, the tag is resolved
to its manifest digest, the signatures of that digest are checked (`ImageVerifier`), and
only then is the module fetched, by that digest, so the bytes served are the bytes signed
even if the tag moves meanwhile. A refused image is never downloaded nor stored.

Verdicts are remembered per module sha256 in `<data_dir>/trust/verdicts.json`, so a
module served from the store by digest (restart, rollback, promote) carries its verdict;
a stored module that a `required` policy covers and whose verdict the current policy
does not accept (new policy, other keys) is not served from the store: it goes through
the registry and is verified again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from xds_server.config import Config, ConfigError, FilterSpec, SourceSpec
from xds_server.controller._modules import ModuleProvider, ResolvedModule
from xds_server.trust import ImageVerifier, KeylessIdentity, TrustError, TrustPolicies, TrustPolicy, Verdict
from xds_server.wasm import ImageReference, InvalidReference, RegistryClient, parse_reference
from xds_server.wasm._fs import atomic_write

log = structlog.get_logger("xds_server.controller")


def policies_from_config(config: Config) -> TrustPolicies:
    """The config's `verify` list as policies, key files read; `ConfigError` naming the
    file, the entry and the problem when a key cannot be used."""
    policies = []
    for i, rule in enumerate(config.verify):
        keyless = None if rule.keyless is None else KeylessIdentity(
            issuer=rule.keyless.issuer, identity=rule.keyless.identity,
            trusted_root=rule.keyless.trusted_root)
        try:
            policies.append(TrustPolicy.load(rule.match, keys=rule.keys, keyless=keyless,
                                             required=rule.required))
        except TrustError as error:
            raise ConfigError(str(config.source_path or "config"), f"verify[{i}].keys", str(error)) from error
    return TrustPolicies(tuple(policies))


def accepts(policy: TrustPolicy, verdict: Mapping[str, Any]) -> bool:
    """True when a recorded verdict names a signer `policy` still trusts."""
    if not verdict.get("verified"):
        return False
    fingerprint = verdict.get("key_fingerprint")
    if fingerprint:
        return any(k.fingerprint == fingerprint for k in policy.keys)
    k = policy.keyless
    return k is not None and verdict.get("identity") == k.identity and verdict.get("issuer") == k.issuer


class TrustedModules:
    """`ModuleProvider` that enforces the `verify` policies on image sources.

    Policies can be replaced at any time (`set_policies`, on a config reload); a call in
    flight finishes under the policies it started with.
    """

    def __init__(self, inner: ModuleProvider, client: RegistryClient, *, state_dir: Path,
                 policies: TrustPolicies | None = None) -> None:
        self.inner = inner
        self.client = client
        self.verifier = ImageVerifier(policies or TrustPolicies())
        self._path = state_dir / "verdicts.json"
        self._verdicts: dict[str, dict[str, Any]] = self._load()

    def __getattr__(self, name: str) -> Any:
        """Anything else is the wrapped provider's (e.g. `StoreModules.store`)."""
        if name == "inner":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def set_policies(self, policies: TrustPolicies) -> None:
        """Use `policies` for every later call."""
        self.verifier = ImageVerifier(policies)

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _remember(self, sha256: str, verdict: Verdict) -> None:
        self._verdicts[sha256] = verdict.to_dict()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path, json.dumps(self._verdicts, sort_keys=True).encode())

    async def start(self) -> None:
        """Start the wrapped provider."""
        await self.inner.start()

    async def close(self) -> None:
        """Close the wrapped provider."""
        await self.inner.close()

    async def module_for(self, spec: FilterSpec) -> ResolvedModule:
        """The verified module of `spec`; `UntrustedImage` when its policy refuses it."""
        verifier = self.verifier
        ref = _image(spec.source)
        policy = verifier.policy_for(ref) if ref is not None else None
        if ref is None or policy is None:
            return self._with_verdict(await self.inner.module_for(spec))
        digest = ref.digest or (await self.client.get_manifest(ref)).digest
        verdict = await verifier.verify(self.client, ref, digest)
        assert verdict is not None  # a policy covers ref
        pinned = replace(spec, source=replace(spec.source, location=str(ref.with_digest(digest))))
        module = await self.inner.module_for(pinned)
        if verdict.verified:
            self._remember(module.sha256, verdict)
        return replace(module, verdict=verdict.to_dict())

    def _with_verdict(self, module: ResolvedModule) -> ResolvedModule:
        verdict = self._verdicts.get(module.sha256)
        return replace(module, verdict=verdict) if verdict is not None else module

    async def fetch_by_digest(self, sha256: str, url: str) -> ResolvedModule:
        """From a peer replica (verified by digest; a policy check happens in `stored`)."""
        module = self._checked(await self.inner.fetch_by_digest(sha256, url))
        if module is None:
            raise TrustError(f"module sha256:{sha256} from {url}: a required verify policy covers "
                             "its image and no accepted signature verdict is known for it")
        return module

    def stored(self, sha256: str) -> ResolvedModule | None:
        """The stored module, unless a required policy covers its image and no verdict
        that policy accepts is known for it."""
        module = self.inner.stored(sha256)
        return self._checked(module) if module is not None else None

    def _checked(self, module: ResolvedModule) -> ResolvedModule | None:
        ref = _image(SourceSpec("image", module.reference)) if module.manifest_digest else None
        policy = self.verifier.policy_for(ref) if ref is not None else None
        verdict = self._verdicts.get(module.sha256)
        if policy is not None and policy.required and (verdict is None or not accepts(policy, verdict)):
            log.info("stored_module_needs_verification", digest=module.sha256, image=module.reference,
                     policy=policy.match)
            return None
        return replace(module, verdict=verdict) if verdict is not None else module

    def pin(self, digests: list[str]) -> None:
        """Modules in use: never evicted."""
        self.inner.pin(digests)

    def module_path(self, sha256: str) -> Path | None:
        """The stored file of a module by digest, or None."""
        return self.inner.module_path(sha256)


def _image(source: SourceSpec) -> ImageReference | None:
    if source.kind != "image":
        return None
    try:
        return parse_reference(source.location)
    except InvalidReference:
        return None
