"""`xds-server init` and `xds-server build`: a filter project, from template to pushed image."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from xds_server.cli.modules import docker_config_path, registry_options, registry_settings
from xds_server.devkit import (
    LANGUAGES,
    BuildResult,
    CompileError,
    DevkitError,
    build_project,
    check_file,
    init_project,
    load_project,
)
from xds_server.wasm import PUSH_LAYOUTS, RegistryClient, WasmError, push

__all__ = ["describe_build", "register"]


def register(sub: Any) -> None:
    """Add the `init` and `build` subcommands."""
    p = sub.add_parser("init", help="create a filter project (AssemblyScript or C) that builds here")
    p.add_argument("dir", metavar="DIR", type=Path, help="directory to create (absent or empty)")
    p.add_argument("--language", required=True, choices=LANGUAGES)
    p.add_argument("--name", help="project name: root id, header x-NAME, counter NAME_requests "
                                  "(default: the directory's name)")
    p.set_defaults(func=run_init)

    p = sub.add_parser(
        "build", parents=[registry_options()], help="compile and check a filter project; push it",
        description="Compiles DIR (its filter.yaml says the language), checks the module as "
        "Envoy would load it (wasmtime, ABI export, only imports Envoy's proxy-wasm host "
        "provides, root ids), and with --image pushes it.",
    )
    p.add_argument("dir", metavar="DIR", type=Path, nargs="?", default=Path("."))
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="where to write the module "
                   "(default DIR/build/filter.wasm)")
    p.add_argument("--wasm", type=Path, metavar="FILE",
                   help="check and package this module (any toolchain's) instead of compiling DIR")
    p.add_argument("--image", metavar="REF", help="push the module to this image reference")
    p.add_argument("--layout", choices=[x for x in PUSH_LAYOUTS if x != "compat-docker"], default="wasme")
    p.add_argument("--root-id", action="append", dest="root_ids", metavar="ID",
                   help="root id to check and record in the image (repeatable; default filter.yaml's)")
    p.set_defaults(func=run_build)


def run_init(args: argparse.Namespace) -> int:
    """Write the project and say what to do next."""
    try:
        project = init_project(args.dir, args.language, args.name)
    except DevkitError as exc:
        print(f"xds-server init: error: {exc}", file=sys.stderr)
        return 1
    print(f"created {project.language} filter project {project.name!r} in {args.dir}")
    print(f"  build:  xds-server build {args.dir}")
    print(f"  try it: xds-server dev {args.dir} --filter add-header   (with `make run` and `xds-server envoy`)")
    return 0


def describe_build(result: BuildResult) -> str:
    """One line about a build: file, size, sha256, ABI, root ids, time split."""
    report = result.report
    ids = ", ".join(repr(i) for i in report.root_ids) or "'' (any)"
    return (f"built {result.output}: {report.size} bytes, sha256:{result.sha256[:16]}, "
            f"{', '.join(report.abi_versions)}, root ids {ids} "
            f"(compile {result.compile_seconds:.2f}s, check {result.check_seconds:.2f}s)")


def _build(args: argparse.Namespace) -> BuildResult:
    ids = tuple(args.root_ids) if args.root_ids else None
    if args.wasm is not None:
        return check_file(args.wasm, args.output, root_ids=ids or ())
    project = load_project(args.dir)
    return build_project(project, args.output, root_ids=ids)


async def _push(args: argparse.Namespace, result: BuildResult) -> str:
    data = await asyncio.to_thread(result.output.read_bytes)
    async with RegistryClient(registries=registry_settings(args, args.image),
                              docker_config=docker_config_path(args)) as client:
        pushed = await push(client, args.image, data, layout=args.layout,
                            root_ids=[i for i in result.report.root_ids if i])
    return f"pushed {pushed.reference}@{pushed.manifest_digest} ({pushed.layout})"


def run_build(args: argparse.Namespace) -> int:
    """Build (or check `--wasm`), report, and push with `--image`."""
    try:
        result = _build(args)
    except CompileError as exc:
        sys.stderr.write(exc.output)  # as the compiler printed it
        print(f"xds-server build: error: {exc.command[0]} failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    except DevkitError as exc:
        print(f"xds-server build: error: {exc}", file=sys.stderr)
        return 1
    if result.compiler_output.strip():
        sys.stderr.write(result.compiler_output)
    print(describe_build(result))
    if args.image:
        try:
            print(asyncio.run(_push(args, result)))
        except (WasmError, OSError) as exc:
            print(f"xds-server build: error: push to {args.image}: {exc}", file=sys.stderr)
            return 1
    return 0
