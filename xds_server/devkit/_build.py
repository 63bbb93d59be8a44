"""``build``: compile a project, check the module, write it where asked, with timings."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ._check import ModuleReport, check_module
from ._project import Project
from ._toolchains import compile_project

__all__ = ["BuildResult", "build_project", "check_file"]


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A module that compiled and passed :func:`check_module`.

    ``output`` holds it (written only after the checks passed, so a failed build leaves
    the previous file in place); ``compiler_output`` is what the compiler printed
    (warnings); ``compile_seconds`` and ``check_seconds`` split the time.
    """

    output: Path
    sha256: str
    report: ModuleReport
    compiler_output: str
    compile_seconds: float
    check_seconds: float


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_file(wasm: Path, output: Path | None, *, root_ids: tuple[str, ...] = ()) -> BuildResult:
    """Check an already built module (any toolchain); copy it to ``output`` if given."""
    started = time.perf_counter()
    data = wasm.read_bytes()
    report = check_module(data, where=str(wasm), root_ids=root_ids)
    if output is not None and output.resolve() != wasm.resolve():
        _write_atomically(output, data)
    return BuildResult(output=output or wasm, sha256=hashlib.sha256(data).hexdigest(), report=report,
                       compiler_output="", compile_seconds=0.0,
                       check_seconds=time.perf_counter() - started)


def build_project(project: Project, output: Path | None = None, *,
                  root_ids: tuple[str, ...] | None = None) -> BuildResult:
    """Compile ``project`` and check the module; write it to ``output`` (default
    ``build/filter.wasm``). ``root_ids`` default to the project's. Raises
    :class:`DevkitError` subclasses: CompileError, ToolchainMissing, ModuleRejected.
    Blocks (compiler subprocess): call it off the event loop.
    """
    output = (output or project.default_output).resolve()
    ids = root_ids if root_ids is not None else ((project.root_id,) if project.root_id else ())
    staging = output.parent / f".{output.name}.building"
    started = time.perf_counter()
    try:
        printed = compile_project(project, staging)
        compiled = time.perf_counter()
        data = staging.read_bytes()
        report = check_module(data, where=f"{project.name} ({staging.name})", root_ids=ids)
        _write_atomically(output, data)
    finally:
        staging.unlink(missing_ok=True)
    return BuildResult(output=output, sha256=hashlib.sha256(data).hexdigest(), report=report,
                       compiler_output=printed, compile_seconds=compiled - started,
                       check_seconds=time.perf_counter() - compiled)
