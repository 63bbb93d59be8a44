"""The devkit's exceptions: one tree rooted at :class:`DevkitError`."""

from __future__ import annotations

__all__ = ["CompileError", "DevkitError", "ModuleRejected", "ProjectError", "ToolchainMissing"]


class DevkitError(Exception):
    """Root of every devkit failure; ``str()`` is a message a person can act on."""


class ProjectError(DevkitError):
    """The project directory or its ``filter.yaml`` is unusable (names the file and field)."""


class ToolchainMissing(DevkitError):
    """A compiler or tool is not installed; the message names the Debian package."""

    def __init__(self, tool: str, package: str, why: str) -> None:
        super().__init__(f"{tool} not found: {why}; install it with `apt-get install {package}`")
        self.tool = tool
        self.package = package


class CompileError(DevkitError):
    """The compiler failed. ``output`` is what it printed, unchanged; ``command`` what ran."""

    def __init__(self, command: list[str], returncode: int, output: str) -> None:
        super().__init__(f"{command[0]} failed (exit {returncode}):\n{output.rstrip()}")
        self.command = command
        self.returncode = returncode
        self.output = output


class ModuleRejected(DevkitError):
    """The built module would not load in Envoy (validation, ABI export, imports, root id)."""
