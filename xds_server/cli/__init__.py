"""The `xds-server` command line: serve, bootstrap, envoy, the module commands (push,
pull, inspect), the project commands (init, build, dev) and the admin API commands.

One module per command group; `_client` (the admin API client), `_common` (`--server`,
`--token`, `--output` and running a call) and `_table` are shared by them.

May import anything of the server (runtime, config, admin, wasm, devkit, state, log);
nothing imports the CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xds_server import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full parser; each command module registers its subcommands."""
    import importlib

    from xds_server.cli import bootstrap, serve

    parser = argparse.ArgumentParser(
        prog="xds-server",
        description="Envoy control plane that ships WebAssembly filters over ECDS and ADS.",
    )
    parser.add_argument("--version", action="version", version=f"xds-server {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve.register(sub)
    bootstrap.register(sub)
    for name in ("modules", "admin", "logs", "health", "project", "envoy", "dev"):
        try:
            module = importlib.import_module(f"xds_server.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"xds_server.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
