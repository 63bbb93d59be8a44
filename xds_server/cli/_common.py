"""What every command that talks to the admin API shares: the ``--server``, ``--token``
and ``--output`` options, the client they make, running one call, and printing.

``--server`` defaults to ``$XDS_SERVER_URL`` or ``http://127.0.0.1:18080``; ``--token``
to ``$XDS_SERVER_TOKEN`` (sent as a bearer token).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from xds_server.cli._client import DEFAULT_SERVER_URL, AdminClient, AdminError

__all__ = [
    "JSON_OUTPUT_HELP",
    "SERVER_ENV",
    "TOKEN_ENV",
    "add_server_options",
    "call",
    "client_for",
    "error",
    "print_json",
    "use_color",
]

SERVER_ENV = "XDS_SERVER_URL"
TOKEN_ENV = "XDS_SERVER_TOKEN"
JSON_OUTPUT_HELP = "table for people (default), json for scripts"

_Options = argparse.ArgumentParser | argparse._ArgumentGroup


def add_server_options(options: _Options, *, output_help: str | None = JSON_OUTPUT_HELP) -> None:
    """Add ``--server`` and ``--token`` to a parser (or group), and ``--output``/``-o``
    (``table`` or ``json``) unless ``output_help`` is None."""
    options.add_argument(
        "--server", metavar="URL", default=None,
        help=f"admin API of the xds-server (default ${SERVER_ENV} or {DEFAULT_SERVER_URL})",
    )
    options.add_argument(
        "--token", default=None, help=f"bearer token for the admin API (default ${TOKEN_ENV})"
    )
    if output_help is not None:
        options.add_argument("--output", "-o", choices=("table", "json"), default="table",
                             help=output_help)


def client_for(args: argparse.Namespace, *, actor: str | None = None) -> AdminClient:
    """A client for the server and token of ``args`` (options, then environment)."""
    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER_URL
    token = args.token or os.environ.get(TOKEN_ENV) or None
    return AdminClient(server, token=token, actor=actor)


def call(args: argparse.Namespace, work: Callable[[AdminClient], Awaitable[int]], *,
         actor: str | None = None) -> int:
    """Run ``work`` with a client for ``args``; an API error is one line on stderr, exit 1."""

    async def main() -> int:
        async with client_for(args, actor=actor) as client:
            return await work(client)

    try:
        return asyncio.run(main())
    except AdminError as exc:
        error(str(exc))
        return 1


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr."""
    print(f"error: {message}", file=sys.stderr)


def print_json(doc: Any) -> None:
    """``doc`` as one pretty JSON document on stdout."""
    print(json.dumps(doc, indent=2))


def use_color(stream: TextIO) -> bool:
    """Whether to color output on ``stream`` (a terminal, and ``NO_COLOR`` unset)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")
