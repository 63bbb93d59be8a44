"""The exception tree of the dry-run subsystem."""

from __future__ import annotations

__all__ = ["PreflightError", "PreflightRefused", "SandboxError"]


class PreflightError(Exception):
    """Root of every error raised by a dry run."""


class SandboxError(PreflightError):
    """The sandbox Envoy could not be started or stopped answering; the message says why.
    A change is refused then too: nothing reaches the fleet unchecked."""


class PreflightRefused(PreflightError):
    """The module failed its dry run: it did not load, trapped, or answered a test request
    differently from the expectation. The message names the failing request and carries
    Envoy's own message (NACK detail or its wasm log line)."""
