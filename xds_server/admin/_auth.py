"""Admin API authorization: bearer tokens with roles `read` and `write`.

Tokens are kept hashed at rest (sha256 of the token text; tokens are random and long,
so no slow hash is needed). A tokens file is YAML:

    tokens:
      - {name: ci-deployer, role: write, sha256: <64 hex>}
      - {name: dashboard, role: read, sha256: <64 hex>}

`xds-server hash-token` prints the sha256 of a token read from standard input. Tokens may
also come from the environment: `XDS_SERVER_ADMIN_TOKENS=name:role:sha256,...`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from xds_server.config import ConfigError

ROLES = ("read", "write")
# Open without a token: probes, metrics, module blobs (Envoy fetches them; they are the
# same bytes the registry serves) and the status page's static script and style (no data).
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/modules/", "/static/")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the token's name (or `local` without tokens) and its role."""

    name: str
    role: str

    @property
    def can_write(self) -> bool:
        """True for the `write` role."""
        return self.role == "write"


LOCAL = Caller("local", "write")
CALLER = web.RequestKey("caller", Caller)


def hash_token(token: str) -> str:
    """The at-rest form of a token."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def _caller(where: str, at: str, name: object, role: object, digest: str) -> Caller:
    """The caller of one token entry (`at`: `tokens[0]` in a file, `entry 1` in the
    environment), or `ConfigError` naming its field that is wrong."""
    if not isinstance(name, str) or not name:
        raise ConfigError(where, f"{at}.name", "is required")
    if not isinstance(role, str) or role not in ROLES:
        raise ConfigError(where, f"{at}.role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    if not _HEX64.match(digest):
        raise ConfigError(where, f"{at}.sha256", "must be the 64-hex sha256 of the token "
                          "(xds-server hash-token), never the token itself")
    return Caller(name, role)


class TokenStore:
    """Token hashes -> callers. Empty means: no tokens configured."""

    def __init__(self, entries: dict[str, Caller] | None = None) -> None:
        self._by_hash = dict(entries or {})

    @property
    def enabled(self) -> bool:
        """True when at least one token is configured."""
        return bool(self._by_hash)

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        """Read a tokens file; `ConfigError` names the file and entry that is wrong."""
        where = str(path)
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(where, "", f"cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(where, "", f"invalid YAML: {exc}") from exc
        items = (doc or {}).get("tokens") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            raise ConfigError(where, "tokens", "must be a non-empty list of {name, role, sha256}")
        entries: dict[str, Caller] = {}
        for i, item in enumerate(items):
            at = f"tokens[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(where, at, "must be a mapping with name, role, sha256")
            digest = str(item.get("sha256", ""))
            entries[digest] = _caller(where, at, item.get("name"), item.get("role"), digest)
        return cls(entries)

    @classmethod
    def from_env(cls, value: str) -> TokenStore:
        """Tokens from the environment (`XDS_SERVER_ADMIN_TOKENS`): comma-separated
        `name:role:sha256` entries, hashes only (e.g. from a Kubernetes Secret)."""
        where = "environment variable XDS_SERVER_ADMIN_TOKENS"
        entries: dict[str, Caller] = {}
        for i, item in enumerate(p.strip() for p in value.split(",") if p.strip()):
            parts = item.split(":")
            at = f"entry {i + 1}"
            if len(parts) != 3:
                raise ConfigError(where, at, "must be name:role:sha256")
            name, role, digest = parts
            entries[digest] = _caller(where, at, name, role, digest)
        return cls(entries)

    def merged(self, other: TokenStore) -> TokenStore:
        """Both stores' tokens."""
        return TokenStore({**self._by_hash, **other._by_hash})

    def caller_for(self, token: str) -> Caller | None:
        """The caller a presented token belongs to, or None."""
        digest = hash_token(token)
        for known, caller in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return caller
        return None


def load_tokens(path: Path | None, env_value: str | None) -> TokenStore:
    """The admin tokens a server is configured with: the tokens file (`path`, e.g.
    `server.admin_tokens_file`) and `XDS_SERVER_ADMIN_TOKENS` (`env_value`), merged.
    `ConfigError` names the file or variable that is wrong."""
    tokens = TokenStore() if path is None else TokenStore.load(path)
    if env_value:
        tokens = tokens.merged(TokenStore.from_env(env_value))
    return tokens


def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    # EventSource and a browser address bar cannot set headers: accept a query token.
    return request.query.get("access_token")


def auth_middleware(tokens: TokenStore) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Require a token (when any is configured) and the `write` role for changes."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not tokens.enabled:
            request[CALLER] = LOCAL
            return await handler(request)
        if request.path.startswith(PUBLIC_PREFIXES):
            request[CALLER] = Caller("public", "none")
            return await handler(request)
        token = _token_of(request)
        caller = tokens.caller_for(token) if token else None
        if caller is None:
            return web.json_response(
                {"error": {"status": 401, "message": "a valid bearer token is required "
                           "(Authorization: Bearer <token>)"}},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="xds-server"'},
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and not caller.can_write:
            return web.json_response(
                {"error": {"status": 403, "message": f"token {caller.name!r} has role "
                           f"{caller.role!r}; this call needs role 'write'"}},
                status=403,
            )
        request[CALLER] = caller
        return await handler(request)

    return middleware


def caller_of(request: web.Request) -> Caller:
    """The authenticated caller of a request (LOCAL when no tokens are configured)."""
    caller: Caller = request.get(CALLER, LOCAL)
    return caller


_REDACTED_ENV = "<redacted>"
_REDACTED_CONFIG = re.compile(r"^<redacted: \d+ bytes, sha256 [0-9a-f]{12}>$")


def redact_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec as a read-only caller may see it: configuration and env values hidden."""
    out = dict(spec)
    conf = out.get("configuration")
    if conf:
        digest = hashlib.sha256(str(conf).encode()).hexdigest()[:12]
        out["configuration"] = f"<redacted: {len(str(conf))} bytes, sha256 {digest}>"
    if out.get("env"):
        out["env"] = {k: _REDACTED_ENV for k in out["env"]}
    return out


def redacted_members(spec: Any) -> list[str]:
    """The members of an input spec that hold `redact_spec`'s placeholders (what a read
    token was shown), e.g. `["configuration", "env.DB_PASSWORD"]`: sending them back
    would replace the real values with the placeholders."""
    if not isinstance(spec, dict):
        return []
    found = []
    conf = spec.get("configuration")
    if isinstance(conf, str) and _REDACTED_CONFIG.match(conf):
        found.append("configuration")
    env = spec.get("env")
    if isinstance(env, dict):
        found += [f"env.{k}" for k, v in env.items() if v == _REDACTED_ENV]
    return found
