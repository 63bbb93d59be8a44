"""``xds-server pull|inspect|push``: wasm modules in OCI registries, without a server.

Credentials: ``--username`` with ``--password`` or ``--password-stdin``, else the
environment variables ``XDS_SERVER_REGISTRY_USERNAME`` / ``XDS_SERVER_REGISTRY_PASSWORD``
(for the registry named on the command line), else the per-host variables and the Docker
``config.json`` read by :class:`xds_server.wasm.RegistryClient`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from xds_server.trust import TrustError, list_signatures, load_private_key, load_public_key, sign_image
from xds_server.wasm import (
    PUSH_LAYOUTS,
    Module,
    ModuleSource,
    ModuleStore,
    RegistryClient,
    RegistrySettings,
    WasmError,
    parse_reference,
    push,
)
from xds_server.wasm.registry import ProgressCallback

__all__ = ["default_store_dir", "docker_config_path", "register", "registry_options", "registry_settings"]

USERNAME_ENV = "XDS_SERVER_REGISTRY_USERNAME"
PASSWORD_ENV = "XDS_SERVER_REGISTRY_PASSWORD"


def default_store_dir() -> Path:
    """``$XDG_CACHE_HOME/xds-server/modules`` (``~/.cache/xds-server/modules``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xds-server" / "modules"


def _default_docker_config() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def registry_options() -> argparse.ArgumentParser:
    """A parent parser with the registry access options (``parents=[...]``); read them
    back with :func:`registry_settings` and :func:`docker_config_path`."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("registry access")
    group.add_argument(
        "--plain-http", action="store_true",
        help="use HTTP without TLS for this registry (loopback registries always may)",
    )
    group.add_argument("--ca-file", help="PEM bundle to trust for this registry")
    group.add_argument("--username", help=f"registry user (default ${USERNAME_ENV})")
    group.add_argument("--password", help=f"registry password (default ${PASSWORD_ENV})")
    group.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    group.add_argument(
        "--docker-config", type=Path, default=None,
        help="Docker config.json for credentials (default $DOCKER_CONFIG or ~/.docker)",
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``pull``, ``inspect``, ``push`` and ``sign`` subcommands; each sets
    ``func(args) -> int``."""
    common = registry_options()
    pull = subparsers.add_parser(
        "pull", parents=[common], help="fetch and verify a wasm module from a registry",
        description="Fetch a module from an image, verify it, and print its sha256, layout "
        "and root ids.",
    )
    pull.add_argument("ref", metavar="REF", help="image reference (host/repo:tag[@sha256:...])")
    pull.add_argument("-o", "--output", type=Path, help="write the module to FILE")
    pull.add_argument("--store", type=Path, default=None, help="module store directory")
    pull.set_defaults(func=_pull)

    inspect = subparsers.add_parser(
        "inspect", parents=[common], help="print what an image holds, as JSON",
    )
    inspect.add_argument("ref", metavar="REF", help="image reference")
    inspect.add_argument("--store", type=Path, default=None, help="module store directory")
    inspect.add_argument("--key", type=Path, action="append", default=[], dest="keys",
                         help="PEM public key: say which signatures it verifies (repeatable)")
    inspect.set_defaults(func=_inspect)

    sign = subparsers.add_parser(
        "sign", parents=[common], help="sign an image with a key pair (cosign's format)",
        description="Sign the manifest REF names with a PEM private key (ECDSA P-256 or "
        "Ed25519) and push the signature to the tag sha256-<hex>.sig, as cosign does.",
    )
    sign.add_argument("ref", metavar="REF", help="image reference (a tag is resolved to its digest)")
    sign.add_argument("--key", type=Path, required=True, help="PEM private key (unencrypted)")
    sign.set_defaults(func=_sign)

    push_parser = subparsers.add_parser(
        "push", parents=[common], help="publish a wasm module as an image",
    )
    push_parser.add_argument("file", metavar="FILE.wasm", type=Path)
    push_parser.add_argument("ref", metavar="REF", help="target image reference with a tag")
    push_parser.add_argument(
        "--layout", choices=[p for p in PUSH_LAYOUTS if p != "compat-docker"], default="wasme"
    )
    push_parser.add_argument(
        "--root-id", action="append", default=[], dest="root_ids",
        help="root id recorded in the wasme config (repeatable)",
    )
    push_parser.set_defaults(func=_push)


def _settings(args: argparse.Namespace) -> list[RegistrySettings]:
    return registry_settings(args, args.ref)


def registry_settings(args: argparse.Namespace, ref: str) -> list[RegistrySettings]:
    """Settings for the registry of ``ref`` from the options of :func:`registry_options`."""
    host = parse_reference(ref).registry
    username = args.username or os.environ.get(USERNAME_ENV)
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    return [
        RegistrySettings(
            host,
            plain_http=args.plain_http,
            ca_file=args.ca_file,
            username=username if password is not None else None,
            password=password if username else None,
        )
    ]


def docker_config_path(args: argparse.Namespace) -> Path:
    """The Docker ``config.json`` the options of :func:`registry_options` name."""
    return _docker_config(args)


def _docker_config(args: argparse.Namespace) -> Path:
    return args.docker_config if args.docker_config is not None else _default_docker_config()


def _progress(ref: str) -> ProgressCallback | None:
    if not sys.stderr.isatty():
        return None
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done != total:
            return
        last[0] = now
        mib = done / 2**20
        text = f"{mib:.1f} MiB"
        if total:
            text += f" / {total / 2**20:.1f} MiB ({100 * done // total}%)"
        sys.stderr.write(f"\r{ref}: {text}\x1b[K")
        if total is not None and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return report


def _run(name: str, body: Callable[[], Coroutine[Any, Any, int]]) -> int:
    # stdout carries the command's result: log lines go to stderr while it runs (at the
    # configured level, or WARNING when logging was not configured), then the previous
    # structlog configuration is restored.
    configured = structlog.is_configured()
    saved = structlog.get_config()
    if configured:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    else:
        structlog.configure(
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        )
    try:
        return asyncio.run(body())
    except (WasmError, TrustError, OSError) as error:
        print(f"xds-server {name}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


async def _resolve(args: argparse.Namespace) -> Module:
    store = ModuleStore(
        args.store or default_store_dir(),
        registries=_settings(args),
        docker_config=_docker_config(args),
        resolve_interval=0.0,
    )
    await store.start()
    try:
        source = ModuleSource("image", args.ref, pull_policy="Always")
        return await store.resolve(source, progress=_progress(args.ref))
    finally:
        await store.close()


def _pull(args: argparse.Namespace) -> int:
    async def body() -> int:
        module = await _resolve(args)
        if args.output is not None:
            await asyncio.to_thread(args.output.write_bytes, module.read_bytes())
        print(f"sha256:{module.sha256}")
        print(f"layout: {module.layout}")
        print(f"root_ids: {','.join(module.root_ids)}")
        return 0

    return _run("pull", body)


def _inspect(args: argparse.Namespace) -> int:
    async def body() -> int:
        module = await _resolve(args)
        print(json.dumps({
            "reference": module.reference,
            "manifest_digest": module.manifest_digest,
            "layout": module.layout,
            "sha256": f"sha256:{module.sha256}",
            "size": module.size,
            "root_ids": list(module.root_ids),
            "annotations": dict(module.annotations),
            "signatures": await _signatures(args, module.manifest_digest),
        }, indent=2, sort_keys=True))
        return 0

    return _run("inspect", body)


async def _signatures(args: argparse.Namespace, digest: str | None) -> list[dict[str, Any]]:
    if digest is None:
        return []
    keys = [load_public_key(k) for k in args.keys]
    async with RegistryClient(registries=_settings(args), docker_config=_docker_config(args)) as client:
        return await list_signatures(client, parse_reference(args.ref), digest, keys)


def _sign(args: argparse.Namespace) -> int:
    async def body() -> int:
        key = await asyncio.to_thread(load_private_key, args.key)
        async with RegistryClient(registries=_settings(args), docker_config=_docker_config(args)) as client:
            result = await sign_image(client, parse_reference(args.ref), key)
        print(f"signed {result.image}@{result.digest}")
        print(f"signature: {result.signature_ref}")
        print(f"key: {result.key_fingerprint}")
        return 0

    return _run("sign", body)


def _push(args: argparse.Namespace) -> int:
    async def body() -> int:
        wasm = await asyncio.to_thread(args.file.read_bytes)
        async with RegistryClient(
            registries=_settings(args), docker_config=_docker_config(args)
        ) as client:
            result = await push(
                client, args.ref, wasm, layout=args.layout, root_ids=args.root_ids
            )
        print(f"pushed {result.reference}@{result.manifest_digest}")
        print(f"sha256:{result.module_sha256}")
        print(f"layout: {result.layout}")
        return 0

    return _run("push", body)
