"""Registry credentials (settings, environment, Docker config.json, credential helpers),
``WWW-Authenticate`` challenge parsing, and the bearer token cache."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from .errors import AuthError

log = structlog.get_logger(__name__)

ENV_PREFIX = "XDS_SERVER_REGISTRY_"
_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HELPER_TIMEOUT = 10.0
_HUB_HELPER_URL = "https://index.docker.io/v1/"
_CHALLENGE_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Credentials:
    """A username and password (or token) for one registry. The secret is never shown."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        """The ``Authorization`` value for HTTP basic auth."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def env_key(host: str) -> str:
    """The per-host part of an environment variable name: ``host[:port]`` upper-cased with
    every character other than a letter or digit replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9]", "_", host).upper()


def credentials_from_env(host: str, env: Mapping[str, str]) -> Credentials | None:
    """``XDS_SERVER_REGISTRY_<HOSTKEY>_USERNAME`` / ``..._PASSWORD`` for ``host``."""
    key = ENV_PREFIX + env_key(host)
    username = env.get(key + "_USERNAME")
    password = env.get(key + "_PASSWORD")
    if username and password is not None:
        return Credentials(username, password)
    return None


def _normalize_config_host(key: str) -> str:
    text = key.strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    return text.split("/", 1)[0]


def _host_keys(host: str) -> tuple[str, ...]:
    return _HUB_KEYS if host in _HUB_KEYS else (host,)


async def _run_helper(helper: str, host: str) -> Credentials | None:
    program = f"docker-credential-{helper}"
    server = _HUB_HELPER_URL if host in _HUB_KEYS else host
    try:
        process = await asyncio.create_subprocess_exec(
            program,
            "get",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as error:
        raise AuthError(
            f"credential helper {program} for {host} cannot be run: {error.strerror}"
        ) from None
    try:
        async with asyncio.timeout(_HELPER_TIMEOUT):
            stdout, stderr = await process.communicate(server.encode())
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AuthError(f"credential helper {program} for {host} timed out") from None
    if process.returncode != 0:
        message = (stdout or stderr).decode(errors="replace").strip()
        if "credentials not found" in message.lower():
            return None
        raise AuthError(
            f"credential helper {program} for {host} failed (exit {process.returncode})"
        )
    try:
        payload = json.loads(stdout)
        username, secret = str(payload["Username"]), str(payload["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"credential helper {program} for {host} gave invalid output") from None
    return Credentials(username, secret)


async def credentials_from_docker_config(host: str, path: Path) -> Credentials | None:
    """Credentials for ``host`` from a Docker ``config.json``: ``credHelpers[host]``, then
    ``auths[host].auth`` (base64 ``user:password``) or ``username``/``password``, then
    ``credsStore``. A missing file gives ``None``."""
    try:
        text = await asyncio.to_thread(path.read_text)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise AuthError(f"Docker config {path} cannot be read: {error.strerror}") from None
    try:
        config = json.loads(text)
    except ValueError:
        raise AuthError(f"Docker config {path} is not valid JSON") from None
    if not isinstance(config, dict):
        return None
    keys = _host_keys(host)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and key in helpers:
            return await _run_helper(str(helpers[key]), host)
    auths = config.get("auths") or {}
    if isinstance(auths, dict):
        for raw_key, entry in auths.items():
            if _normalize_config_host(raw_key) not in keys or not isinstance(entry, dict):
                continue
            if entry.get("auth"):
                try:
                    decoded = base64.b64decode(entry["auth"]).decode()
                    username, _, password = decoded.partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise AuthError(
                        f"Docker config {path}: auth for {host} is not base64 user:password"
                    ) from None
                return Credentials(username, password)
            if entry.get("username") and entry.get("password") is not None:
                return Credentials(str(entry["username"]), str(entry["password"]))
    store = config.get("credsStore")
    if store:
        return await _run_helper(str(store), host)
    return None


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme (lower-case) and parameters."""

    scheme: str
    params: Mapping[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse the first challenge of a ``WWW-Authenticate`` header (``Basic`` or ``Bearer``)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params = {
        match.group(1).lower(): (
            match.group(2).replace('\\"', '"') if match.group(2) is not None else match.group(3)
        )
        for match in _CHALLENGE_PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


class TokenCache:
    """Bearer tokens by (host, scope), each kept until shortly before it expires.

    Not thread-safe; used from one event loop.
    """

    def __init__(self, *, margin: float = 10.0) -> None:
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._margin = margin

    def get(self, host: str, scope: str) -> str | None:
        """The cached token for ``scope`` at ``host`` if it has not expired."""
        entry = self._tokens.get((host, scope))
        if entry is None:
            return None
        token, expires_at = entry
        if time.monotonic() >= expires_at:
            del self._tokens[(host, scope)]
            return None
        return token

    def put(self, host: str, scope: str, token: str, expires_in: float) -> None:
        """Cache ``token`` for ``expires_in`` seconds (minus a safety margin)."""
        lifetime = max(expires_in - self._margin, expires_in / 2)
        self._tokens[(host, scope)] = (token, time.monotonic() + lifetime)
