"""The dry-run gate: every changed http filter passes its preflight in the sandbox Envoy
before the controller records or serves it."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as http_wasm_pb2

from xds_server.config import Preflight
from xds_server.controller._model import Deployed, FilterError
from xds_server.preflight import PreflightRefused, Sandbox, SandboxError

log = structlog.get_logger("xds_server.controller")


def sandbox_body(d: Deployed) -> bytes:
    """The deployed TypedExtensionConfig with the module inline: the exact plugin
    configuration (root id, VM, configuration, env, failure policy), whatever the
    delivery mode (the sandbox has no module server and no shared volume)."""
    message = extension_pb2.TypedExtensionConfig.FromString(d.resource.body)
    wasm = http_wasm_pb2.Wasm()
    message.typed_config.Unpack(wasm)
    vm = wasm.config.vm_config
    if not vm.code.local.inline_bytes:
        vm.code.Clear()
        vm.code.local.inline_bytes = d.module.read_bytes()
        vm.nack_on_code_cache_miss = False
    message.typed_config.Pack(wasm)
    body: bytes = message.SerializeToString(deterministic=True)
    return body


class PreflightGate:
    """Runs each deployed http spec's `preflight` (or the server-wide default) in
    `sandbox`; raises `FilterError` 422 with Envoy's message and the failing request,
    or 503 when the sandbox itself is unusable. Network filters are not dry-run."""

    def __init__(self, sandbox: Sandbox, default: Preflight | None = None) -> None:
        self.sandbox = sandbox
        self.default = default

    async def __call__(self, deployed: Sequence[Deployed]) -> None:
        for d in deployed:
            preflight = d.spec.preflight or self.default
            if preflight is None or d.spec.type != "http":
                continue
            where = f"module sha256:{d.module.sha256} ({d.module.reference})"
            try:
                await self.sandbox.check(sandbox_body(d), preflight.requests)
            except PreflightRefused as exc:
                log.warning("preflight_refused", filter=d.spec.name, digest=d.module.sha256, reason=str(exc))
                raise FilterError(d.spec.name, f"preflight refused {where}: {exc}", status=422) from exc
            except SandboxError as exc:
                log.error("preflight_unavailable", filter=d.spec.name, digest=d.module.sha256, error=str(exc))
                raise FilterError(d.spec.name, f"preflight of {where} could not run: {exc}",
                                  status=503) from exc
            log.info("preflight_passed", filter=d.spec.name, digest=d.module.sha256,
                     requests=len(preflight.requests))
