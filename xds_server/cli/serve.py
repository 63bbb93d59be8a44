"""`xds-server serve` and `xds-server check-config`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from xds_server.config import LOG_FORMATS, LOG_LEVELS, Config, ConfigError, load_config
from xds_server.controller import policies_from_config
from xds_server.log import configure_logging


def register(sub: Any) -> None:
    """Add the `serve` and `check-config` subcommands."""
    p = sub.add_parser("serve", help="run the xDS server")
    p.add_argument("--config", "-c", required=True, help="YAML configuration file")
    p.add_argument("--xds-address", help="override server.xds_address (HOST:PORT)")
    p.add_argument("--admin-address", help="override server.admin_address (HOST:PORT)")
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.add_argument("--log-format", choices=LOG_FORMATS)
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop (auto: uvloop when installed)")
    p.set_defaults(func=run_serve)

    c = sub.add_parser("check-config", help="validate a configuration file and exit")
    c.add_argument("config", help="YAML configuration file")
    c.set_defaults(func=run_check)
    register_hash_token(sub)


def _load(path: str) -> Config | None:
    """The config at `path`, or None after printing its first problem on stderr."""
    try:
        cfg = load_config(path)
        policies_from_config(cfg)  # the verify list's key files must be usable keys
        return cfg
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def run_check(args: argparse.Namespace) -> int:
    """Validate the file; print the first problem and exit 1 if it is invalid."""
    cfg = _load(args.config)
    if cfg is None:
        return 1
    extra = f", {len(cfg.resources)} resources" if cfg.resources else ""
    print(f"{args.config}: ok ({len(cfg.filters)} filters{extra})")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Load the config, serve until SIGINT/SIGTERM; SIGHUP reloads the config."""
    config = _load(args.config)
    if config is None:
        return 1
    configure_logging(args.log_level or config.server.log_level,
                      args.log_format or config.server.log_format, config.server.log_levels)
    return run_loop(_serve(config, args), args.loop)


def run_loop(main: Any, loop: str) -> int:
    """Run `main` on uvloop when asked (or, with `auto`, when installed), else asyncio's.

    The benchmarks measured uvloop ahead at fleet scale (CPU per push, push and
    establish times); `--loop asyncio` is there if an environment needs the default.
    """
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                print("error: --loop uvloop needs the uvloop package", file=sys.stderr)
                return 2
        else:
            result: int = uvloop.run(main)
            return result
    result = asyncio.run(main)
    return int(result)


async def _serve(config: Any, args: argparse.Namespace) -> int:
    from xds_server.runtime import XdsServerApp
    from xds_server.state import StateError

    app = XdsServerApp(config, xds_address=args.xds_address, admin_address=args.admin_address)
    try:
        await app.setup()
    except (ConfigError, StateError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        await app.cleanup()
        return 1
    try:
        await app.start()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        await app.cleanup()
        return 1
    from xds_server.runtime import tune_gc

    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload()))
    await stop.wait()
    await app.stop()
    await app.cleanup()
    return 0


def register_hash_token(sub: Any) -> None:
    """Add `hash-token`: print the at-rest form of an admin token read from stdin."""
    p = sub.add_parser("hash-token", help="print the sha256 of an admin token (read from stdin)")
    p.set_defaults(func=run_hash_token)


def run_hash_token(_args: argparse.Namespace) -> int:
    """Read one token from standard input and print its sha256 for a tokens file."""
    from xds_server.admin._auth import hash_token

    token = sys.stdin.readline().strip()
    if len(token) < 16:
        print("error: a token should be at least 16 random characters "
              "(e.g. `openssl rand -hex 32`)", file=sys.stderr)
        return 1
    print(hash_token(token))
    return 0
