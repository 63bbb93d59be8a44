"""Parsing the `verify` list and `preflight` blocks (signature policy and dry runs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xds_server.config._errors import ConfigError
from xds_server.config._load import _kind, _Reader
from xds_server.config._model import KeylessRule, Preflight, PreflightRequest, VerifyRule

_METHOD = re.compile(r"^[A-Z]{1,16}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$")


def _headers(r: _Reader, key: str) -> dict[str, str]:
    raw = r.get(key, {}) or {}
    if not isinstance(raw, Mapping):
        raise r.error(key, f"must be a mapping of header name to value, got {_kind(raw)}")
    out = {}
    for k, v in raw.items():
        if not _HEADER.match(str(k)) or isinstance(v, Mapping | list) or v is None:
            raise r.error(f"{key}.{k}", "must be a header name with a plain value")
        out[str(k).lower()] = str(v)
    return out


def _request(data: Any, where: str, path: str) -> PreflightRequest:
    r = _Reader(data, where, path)
    method = r.text("method", "GET").upper()
    if not _METHOD.match(method):
        raise r.error("method", f"must be an HTTP method (got {method!r})")
    req_path = r.text("path", "/")
    if not req_path.startswith("/"):
        raise r.error("path", f"must start with '/' (got {req_path!r})")
    headers = _headers(r, "headers")
    expect = _Reader(r.get("expect", {}) or {}, where, r.at("expect"))
    status = expect.number("status", None, minimum=100)
    if status is not None and (status != int(status) or status > 599):
        raise expect.error("status", f"must be an HTTP status code (got {status})")
    expect_headers = _headers(expect, "headers")
    expect.done()
    r.done()
    return PreflightRequest(method=method, path=req_path, headers=headers,
                            expect_status=None if status is None else int(status),
                            expect_headers=expect_headers)


def parse_preflight(data: Any, where: str, path: str) -> Preflight | None:
    """`{requests: [{method, path, headers, expect: {status, headers}}]}`, or None."""
    if data is None:
        return None
    r = _Reader(data, where, path)
    raw = r.get("requests")
    if raw is None:
        r.done()
        return Preflight()
    if not isinstance(raw, list) or not raw:
        raise r.error("requests", f"must be a non-empty list, got {_kind(raw)}")
    if len(raw) > 100:
        raise r.error("requests", f"at most 100 requests (got {len(raw)})")
    requests = tuple(_request(item, where, f"{r.at('requests')}[{i}]") for i, item in enumerate(raw))
    r.done()
    return Preflight(requests=requests)


def _path(value: str, base_dir: Path | None) -> Path:
    p = Path(value).expanduser()
    return base_dir / p if not p.is_absolute() and base_dir is not None else p


def parse_verify(data: Any, where: str, base_dir: Path | None) -> tuple[VerifyRule, ...]:
    """The top-level `verify` list; key and trusted-root paths relative to the file."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(where, "verify", f"must be a list, got {_kind(data)}")
    rules = []
    for i, item in enumerate(data):
        r = _Reader(item, where, f"verify[{i}]")
        match = r.text("match")
        if not match:
            raise r.error("match", "is required: a glob over host/repository")
        keys_raw = r.get("keys", []) or []
        if isinstance(keys_raw, str):
            keys_raw = [keys_raw]
        if not isinstance(keys_raw, list) or not all(isinstance(k, str) and k for k in keys_raw):
            raise r.error("keys", "must be a list of PEM public key file paths")
        keyless = None
        if r.get("keyless") is not None:
            k = _Reader(r.get("keyless"), where, r.at("keyless"))
            issuer, identity, root = k.text("issuer"), k.text("identity"), k.text("trusted_root")
            for name, value in (("issuer", issuer), ("identity", identity), ("trusted_root", root)):
                if not value:
                    raise k.error(name, "is required for keyless verification")
            k.done()
            keyless = KeylessRule(issuer=issuer, identity=identity, trusted_root=_path(root, base_dir))
        required = r.bool("required", True)
        if not keys_raw and keyless is None:
            raise r.error("keys", "name keys or a keyless identity: this policy trusts nothing")
        r.done()
        rules.append(VerifyRule(match=match, keys=tuple(_path(k, base_dir) for k in keys_raw),
                                keyless=keyless, required=required))
    return tuple(rules)
