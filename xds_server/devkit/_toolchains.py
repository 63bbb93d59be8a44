"""Compilers, one function per language: source tree in, ``.wasm`` file out.

Each returns what the compiler printed (warnings) and raises :class:`CompileError` with
its output unchanged when it fails, or :class:`ToolchainMissing` naming the Debian
package to install. They block (subprocesses): call them off the event loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ._errors import CompileError, ToolchainMissing
from ._project import Project

__all__ = ["compile_project"]

_C_FLAGS = [
    "--target=wasm32", "-O2", "-nostdlib", "-Wall", "-Wextra", "-Wno-unused-parameter",
    "-Wl,--no-entry", "-Wl,--strip-all",
]


def _run(command: list[str], cwd: Path, package: str) -> str:
    try:
        proc = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
    except FileNotFoundError as exc:
        raise ToolchainMissing(command[0], package, str(exc)) from None
    if proc.returncode != 0:
        raise CompileError(command, proc.returncode, proc.stdout)
    return proc.stdout


def _locked(path: Path) -> dict[str, str]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {k: str(v.get("version")) for k, v in (doc.get("packages") or {}).items() if k}


def _needs_install(root: Path) -> bool:
    """True unless node_modules holds exactly what package-lock.json pins (npm records what
    it installed in node_modules/.package-lock.json)."""
    if not (root / "node_modules" / ".bin" / "asc").exists():
        return True
    try:
        return _locked(root / "package-lock.json") != _locked(root / "node_modules" / ".package-lock.json")
    except (OSError, ValueError, AttributeError):
        return True


def _compile_assemblyscript(project: Project, output: Path) -> str:
    root = project.root
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise ToolchainMissing("node/npm", "nodejs npm", "AssemblyScript builds run on Node.js")
    printed = ""
    asc = root / "node_modules" / ".bin" / "asc"
    if _needs_install(root):  # first build, or package-lock.json changed: the pinned versions
        printed += _run(["npm", "ci", "--no-audit", "--no-fund"], root, "nodejs npm")
    printed += _run(
        [str(asc), "assembly/index.ts", "-b", str(output), "--use", "abort=abort_proc_exit", "--optimize"],
        root, "nodejs npm",
    )
    return printed


def _compile_c(project: Project, output: Path) -> str:
    clang = shutil.which("clang")
    if clang is None:
        raise ToolchainMissing("clang", "clang lld", "C filters compile with clang for wasm32")
    if shutil.which("wasm-ld") is None:
        raise ToolchainMissing("wasm-ld", "lld", "clang links wasm32 modules with wasm-ld")
    sources = sorted(str(p.relative_to(project.root)) for p in (project.root / "src").glob("**/*.c"))
    if not sources:
        raise CompileError([clang], 1, f"{project.root / 'src'}: no .c files to compile\n")
    return _run([clang, *_C_FLAGS, "-Iinclude", "-o", str(output), *sources], project.root, "clang lld")


def compile_project(project: Project, output: Path) -> str:
    """Compile ``project`` into ``output``; return the compiler's (warning) output."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if project.language == "assemblyscript":
        return _compile_assemblyscript(project, output)
    return _compile_c(project, output)
