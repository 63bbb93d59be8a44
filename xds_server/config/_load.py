"""Parse and validate configuration data into the model, with errors that say where."""

from __future__ import annotations

import builtins
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from xds_server.config._errors import ConfigError
from xds_server.config._model import (
    DELIVERY_MODES,
    FAILURE_POLICIES,
    FILTER_TYPES,
    LOG_FORMATS,
    LOG_LEVELS,
    ON_NACK_POLICIES,
    ON_RUNTIME_FAILURE_POLICIES,
    PULL_POLICIES,
    AnalysisSpec,
    Config,
    FilterSpec,
    IdentityRule,
    Limits,
    RegistryConfig,
    ServerConfig,
    SourceSpec,
    TlsConfig,
)
from xds_server.nodes import NodeSelector, selectors_overlap
from xds_server.resources import (
    KINDS,
    ResourceError,
    ResourceSpec,
    RouteRule,
    WasmFilterRef,
    check_consistent,
    check_selectors,
    parse_resource,
    serve_all,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,252}$")
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


class _Reader:
    """Reads one mapping, tracking the path for error messages."""

    def __init__(self, data: Any, where: str, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(where, path, f"must be a mapping, got {_kind(data)}")
        self.data = data
        self.where = where
        self.path = path
        self.used: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.where, self.at(key), problem)

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def text(self, key: str, default: str = "", *, choices: tuple[str, ...] = ()) -> str:
        value = self.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_kind(value)}")
        if choices and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {_kind(value)}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_kind(value)}")
        return value

    def number(self, key: str, default: float | None, *, minimum: float = 0) -> float | None:
        value = self.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {_kind(value)}")
        if value < minimum:
            raise self.error(key, f"must be at least {minimum} (got {value})")
        return value

    def done(self) -> None:
        extra = sorted(set(map(builtins.str, self.data)) - self.used)
        if extra:
            raise ConfigError(
                self.where, self.at(extra[0]), f"unknown field (known: {', '.join(sorted(self.used))})"
            )


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _selector(data: Any, where: str, path: str) -> NodeSelector:
    if data is None:
        return NodeSelector()
    r = _Reader(data, where, path)
    node_id = r.text("node_id", "*") or "*"
    cluster = r.text("cluster", "*") or "*"
    meta = r.get("metadata", {}) or {}
    if not isinstance(meta, Mapping):
        raise r.error("metadata", f"must be a mapping of key to value, got {_kind(meta)}")
    metadata: dict[str, str] = {}
    for k, v in meta.items():
        if isinstance(v, Mapping | list) or v is None:
            raise r.error(f"metadata.{k}", "must be a plain value (string, number or boolean)")
        metadata[str(k)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    r.done()
    return NodeSelector(node_id=node_id, cluster=cluster, metadata=metadata)


def _source(data: Any, where: str, path: str, base_dir: Path | None) -> SourceSpec:
    if isinstance(data, str):  # shorthand: an image reference
        data = {"image": data}
    if data is None:
        raise ConfigError(where, path, "is required: name exactly one of image, url or file")
    r = _Reader(data, where, path)
    kinds = [k for k in ("image", "url", "file") if r.data.get(k) is not None]
    if len(kinds) != 1:
        raise ConfigError(where, path, "must name exactly one of image, url or file"
                          + (f" (got {', '.join(kinds)})" if kinds else ""))
    kind = kinds[0]
    location = r.text(kind)
    if not location:
        raise r.error(kind, "must not be empty")
    sha = r.opt_str("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise r.error("sha256", "must be 64 lowercase hex digits (optionally 'sha256:' first)")
    if kind == "url":
        if not location.startswith(("http://", "https://")):
            raise r.error("url", f"must be an http:// or https:// URL (got {location!r})")
        if sha is None:
            raise r.error("sha256", "is required with a url source")
    if kind == "file":
        p = Path(location)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        location = str(p)
    r.done()
    return SourceSpec(kind=kind, location=location, sha256=_strip(sha))


def _strip(sha: str | None) -> str | None:
    return sha.removeprefix("sha256:") if sha else None


def configuration_text(value: Any) -> str:
    """A plugin configuration as Envoy gets it: a string as it is, a mapping or list
    as compact JSON with sorted keys, nothing as "". `ValueError` for anything else."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping | list | int | float | bool):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    raise ValueError(f"must be a string or a mapping, got {_kind(value)}")


def _configuration(value: Any, where: str, path: str) -> str:
    try:
        return configuration_text(value)
    except ValueError as exc:
        raise ConfigError(where, path, str(exc)) from None


def parse_duration(value: Any) -> float:
    """Seconds from a duration: a number of seconds, or a string such as "10s", "1.5m",
    "500ms", "2h" (a bare number in a string means seconds). Raises `ValueError` saying
    what is accepted."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"must be a duration such as \"10s\", \"2m\" or a number of seconds "
                         f"(got {value!r})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"must be a positive duration (got {value!r})")
    return seconds


def _analysis(data: Any, where: str, path: str) -> AnalysisSpec | None:
    """The `analysis` member: {interval, min_requests, max_error_rate, intervals}."""
    if data is None:
        return None
    r = _Reader(data, where, path)
    d = AnalysisSpec()
    try:
        interval = parse_duration(r.get("interval", f"{d.interval:g}s"))
    except ValueError as exc:
        raise r.error("interval", str(exc)) from None
    if not 1.0 <= interval <= 3600.0:
        raise r.error("interval", f"must be between 1s and 1h (got {interval:g}s)")
    min_requests = r.number("min_requests", d.min_requests, minimum=1)
    max_rate = r.number("max_error_rate", d.max_error_rate, minimum=0)
    intervals = r.number("intervals", d.intervals, minimum=1)
    for key, value in (("min_requests", min_requests), ("intervals", intervals)):
        if value is not None and value != int(value):
            raise r.error(key, f"must be a whole number (got {value})")
    if max_rate is not None and max_rate > 1:
        raise r.error("max_error_rate", f"must be a fraction between 0 and 1 (got {max_rate})")
    r.done()
    return AnalysisSpec(interval=interval, min_requests=int(min_requests or d.min_requests),
                        max_error_rate=float(d.max_error_rate if max_rate is None else max_rate),
                        intervals=int(intervals or d.intervals))


def parse_filter_spec(data: Any, *, where: str, path: str = "", base_dir: Path | None = None) -> FilterSpec:
    """Validate one filter spec (config file entry or API body) into a `FilterSpec`."""
    r = _Reader(data, where, path)
    name = r.text("name")
    if not _NAME.match(name):
        raise r.error("name", f"must be 1-253 characters of letters, digits, '.', '_', '-', '/' "
                      f"and start with a letter or digit (got {name!r})")
    source = _source(r.get("source"), where, r.at("source"), base_dir)
    sha = r.opt_str("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise r.error("sha256", "must be 64 lowercase hex digits (optionally 'sha256:' first)")
    env_raw = r.get("env", {}) or {}
    if not isinstance(env_raw, Mapping):
        raise r.error("env", f"must be a mapping of variable name to value, got {_kind(env_raw)}")
    env = {}
    for k, v in env_raw.items():
        if isinstance(v, Mapping | list) or v is None:
            raise r.error(f"env.{k}", "must be a plain value")
        env[str(k)] = str(v)
    canary_raw = r.get("canary")
    from xds_server.config._trust import parse_preflight  # _trust imports this module
    spec = FilterSpec(
        name=name,
        source=source,
        sha256=_strip(sha) or (source.sha256 if source.kind != "url" else None),
        root_id=r.text("root_id"),
        vm_id=r.text("vm_id"),
        configuration=_configuration(r.get("configuration"), where, r.at("configuration")),
        env=env,
        failure_policy=r.text("failure_policy", "FAIL_CLOSED", choices=FAILURE_POLICIES),
        type=r.text("type", "http", choices=FILTER_TYPES),
        delivery=r.text("delivery", "inline", choices=DELIVERY_MODES),
        pull_policy=r.text("pull_policy", "IfNotPresent", choices=PULL_POLICIES),
        on_nack=r.text("on_nack", "keep", choices=ON_NACK_POLICIES),
        selector=_selector(r.get("selector"), where, r.at("selector")),
        canary=None if canary_raw is None else _selector(canary_raw, where, r.at("canary")),
        preflight=parse_preflight(r.get("preflight"), where, r.at("preflight")),
        analysis=_analysis(r.get("analysis"), where, r.at("analysis")),
        on_runtime_failure=r.text("on_runtime_failure", "keep", choices=ON_RUNTIME_FAILURE_POLICIES),
        routes=_route_rules(r.get("routes"), where, r.at("routes")),
    )
    r.done()
    return spec


def _route_rules(data: Any, where: str, path: str) -> tuple[RouteRule, ...]:
    """`routes: [{virtual_host: GLOB, route: GLOB, disabled: true | configuration: X}]`."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(where, path, f"must be a list of rules, got {_kind(data)}")
    rules = []
    for i, item in enumerate(data):
        r = _Reader(item, where, f"{path}[{i}]")
        vh, route = r.text("virtual_host", "*") or "*", r.text("route", "*") or "*"
        disabled = r.bool("disabled", False)
        raw = r.get("configuration")
        configuration = None if raw is None else _configuration(raw, where, r.at("configuration"))
        if disabled == (configuration is not None):
            raise ConfigError(where, f"{path}[{i}]",
                              "needs exactly one of disabled: true or configuration")
        r.done()
        rules.append(RouteRule(virtual_host=vh, route=route, disabled=disabled,
                               configuration=configuration))
    return tuple(rules)


def check_overlaps(specs: tuple[FilterSpec, ...] | list[FilterSpec], where: str) -> None:
    """Refuse two specs of one name whose selectors may match the same node, or whose
    per-route rules differ."""
    for i, a in enumerate(specs):
        for j in range(i + 1, len(specs)):
            b = specs[j]
            if a.name == b.name and a.routes != b.routes:
                raise ConfigError(
                    where, f"filters[{j}].routes",
                    f"differs from filters[{i}].routes for filter {a.name!r}: per-route rules "
                    "shape the route configurations, which are not per spec; give every spec "
                    "of a name the same rules",
                )
            if a.name == b.name and selectors_overlap(a.selector, b.selector):
                raise ConfigError(
                    where, f"filters[{j}].selector",
                    f"overlaps filters[{i}].selector for filter {a.name!r} "
                    f"({a.selector.describe()} vs {b.selector.describe()}); a node must match "
                    "at most one spec of a name: make the selectors disjoint",
                )


def _path_under(value: str | None, base_dir: Path | None) -> Path | None:
    """`value` as a path, relative ones under `base_dir` (the config file's folder)."""
    if value is None:
        return None
    p = Path(value)
    return (base_dir / p).resolve() if not p.is_absolute() and base_dir is not None else p


def _addresses(r: _Reader, d: ServerConfig) -> tuple[str, str]:
    xds = r.text("xds_address", d.xds_address)
    admin = r.text("admin_address", d.admin_address)
    for key, value in (("xds_address", xds), ("admin_address", admin)):
        if not _ADDRESS.match(value):
            raise r.error(key, f"must be HOST:PORT (got {value!r})")
    return xds, admin


def _log_levels(r: _Reader) -> dict[str, str]:
    raw_levels = r.get("log_levels") or {}
    if not isinstance(raw_levels, Mapping):
        raise r.error("log_levels", f"must be a mapping of logger name to level, got {_kind(raw_levels)}")
    log_levels = {}
    for name, lvl in raw_levels.items():
        if lvl not in LOG_LEVELS:
            raise r.error(f"log_levels.{name}", f"must be one of {', '.join(LOG_LEVELS)} (got {lvl!r})")
        log_levels[str(name)] = lvl
    return log_levels


def _tls(r: _Reader, key: str, where: str, base_dir: Path | None) -> TlsConfig | None:
    raw = r.get(key)
    if raw is None:
        return None
    t = _Reader(raw, where, r.at(key))
    cert, keyf = t.opt_str("cert_file"), t.opt_str("key_file")
    if cert is None or keyf is None:
        raise ConfigError(where, r.at(key), "needs both cert_file and key_file")
    out = TlsConfig(cert_file=_path_under(cert, base_dir) or Path(cert),
                    key_file=_path_under(keyf, base_dir) or Path(keyf),
                    client_ca_file=_path_under(t.opt_str("client_ca_file"), base_dir))
    t.done()
    for label, p in (("cert_file", out.cert_file), ("key_file", out.key_file),
                     ("client_ca_file", out.client_ca_file)):
        if p is not None and not p.is_file():
            raise ConfigError(where, f"{r.at(key)}.{label}", f"no such file: {p}")
    return out


def _node_identity(r: _Reader, where: str) -> tuple[IdentityRule, ...]:
    rules = []
    raw_rules = r.get("node_identity") or []
    if not isinstance(raw_rules, list):
        raise r.error("node_identity", f"must be a list of {{san, node_id}}, got {_kind(raw_rules)}")
    for i, item in enumerate(raw_rules):
        ir = _Reader(item, where, f"{r.at('node_identity')}[{i}]")
        rules.append(IdentityRule(san=ir.text("san") or "*", node_id=ir.text("node_id") or "*"))
        ir.done()
    return tuple(rules)


def _limits(r: _Reader, where: str) -> Limits:
    lr = _Reader(r.get("limits") or {}, where, r.at("limits"))
    dl = Limits()
    limits = Limits(
        max_streams=int(lr.number("max_streams", dl.max_streams, minimum=1) or 0),
        max_names_per_request=int(lr.number("max_names_per_request", dl.max_names_per_request, minimum=1) or 0),
        max_request_bytes=int(lr.number("max_request_bytes", dl.max_request_bytes, minimum=1024) or 0),
        requests_per_second=float(lr.number("requests_per_second", dl.requests_per_second, minimum=0.1) or 0),
        request_burst=int(lr.number("request_burst", dl.request_burst, minimum=1) or 0),
        telemetry_message_bytes=int(lr.number("telemetry_message_bytes", dl.telemetry_message_bytes,
                                              minimum=1024) or 0),
        telemetry_records_per_second=float(lr.number(
            "telemetry_records_per_second", dl.telemetry_records_per_second, minimum=0.1) or 0),
        telemetry_record_burst=int(lr.number("telemetry_record_burst", dl.telemetry_record_burst,
                                             minimum=1) or 0),
    )
    lr.done()
    return limits


def _server(data: Any, where: str, base_dir: Path | None) -> ServerConfig:
    r = _Reader(data or {}, where, "server")
    d = ServerConfig()
    xds, admin = _addresses(r, d)
    data_dir = _path_under(r.text("data_dir", str(d.data_dir)), base_dir) or d.data_dir
    docker_config = r.opt_str("docker_config")
    module_path = _path_under(r.opt_str("module_dir") or None, base_dir)
    max_store = r.number("max_store_bytes", None, minimum=1)
    log_levels = _log_levels(r)
    rules = _node_identity(r, where)
    limits = _limits(r, where)
    xds_tls = _tls(r, "xds_tls", where, base_dir)
    if rules and (xds_tls is None or xds_tls.client_ca_file is None):
        raise r.error("node_identity", "needs mutual TLS: set server.xds_tls.client_ca_file")
    cfg = ServerConfig(
        xds_address=xds,
        admin_address=admin,
        data_dir=data_dir,
        public_url=r.text("public_url", ""),
        module_dir=module_path,
        envoy_module_dir=r.opt_str("envoy_module_dir"),
        log_level=r.text("log_level", d.log_level, choices=LOG_LEVELS),
        log_format=r.text("log_format", d.log_format, choices=LOG_FORMATS),
        log_levels=log_levels,
        max_module_bytes=int(r.number("max_module_bytes", d.max_module_bytes, minimum=8) or 0),
        max_store_bytes=None if max_store is None else int(max_store),
        resolve_interval=float(r.number("resolve_interval", d.resolve_interval, minimum=1) or 0),
        fetch_timeout=float(r.number("fetch_timeout", d.fetch_timeout, minimum=0.1) or 0),
        fetch_retries=int(r.number("fetch_retries", d.fetch_retries, minimum=0) or 0),
        docker_config=Path(docker_config) if docker_config else None,
        watch_config=r.bool("watch_config", d.watch_config),
        xds_tls=xds_tls,
        admin_tls=_tls(r, "admin_tls", where, base_dir),
        node_identity=rules,
        admin_tokens_file=_path_under(r.opt_str("admin_tokens_file"), base_dir),
        limits=limits,
        database_url=os.environ.get("XDS_SERVER_DATABASE_URL") or r.text("database_url", ""),
        replica_id=os.environ.get("XDS_SERVER_REPLICA_ID") or r.text("replica_id", ""),
        advertise_url=os.environ.get("XDS_SERVER_ADVERTISE_URL") or r.text("advertise_url", ""),
        preflight_envoy=r.opt_str("preflight_envoy"),
        health_bucket_seconds=int(r.number("health_bucket_seconds", d.health_bucket_seconds,
                                           minimum=1) or d.health_bucket_seconds),
    )
    if not cfg.health_bucket_seconds <= 60:
        raise r.error("health_bucket_seconds", f"must be 1 to 60 seconds (got {cfg.health_bucket_seconds})")
    if cfg.database_url and not cfg.database_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise r.error("database_url", "must start with sqlite:/// or postgresql://")
    r.done()
    return cfg


def _registries(data: Any, where: str) -> tuple[RegistryConfig, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(where, "registries", f"must be a list, got {_kind(data)}")
    out = []
    for i, item in enumerate(data):
        r = _Reader(item, where, f"registries[{i}]")
        d = RegistryConfig(host="")
        host = r.text("host")
        if not host:
            raise r.error("host", "is required (host[:port] of the registry)")
        out.append(RegistryConfig(
            host=host,
            plain_http=r.bool("plain_http", d.plain_http),
            ca_file=r.opt_str("ca_file"),
            username=r.opt_str("username"),
            password=r.opt_str("password"),
            allow_private=r.bool("allow_private", d.allow_private),
            allow_loopback=r.bool("allow_loopback", d.allow_loopback),
        ))
        r.done()
    return tuple(out)


def parse_config(data: Any, *, where: str, base_dir: Path | None = None) -> Config:
    """Validate a whole configuration document (already parsed from YAML)."""
    if data is None:
        data = {}
    r = _Reader(data, where, "")
    server = _server(r.get("server"), where, base_dir)
    registries = _registries(r.get("registries"), where)
    raw_filters = r.get("filters", []) or []
    if not isinstance(raw_filters, list):
        raise r.error("filters", f"must be a list, got {_kind(raw_filters)}")
    filters = tuple(
        parse_filter_spec(f, where=where, path=f"filters[{i}]", base_dir=base_dir)
        for i, f in enumerate(raw_filters)
    )
    check_overlaps(filters, where)
    from xds_server.config._trust import parse_preflight, parse_verify
    verify = parse_verify(r.get("verify"), where, base_dir)
    preflight = parse_preflight(r.get("preflight"), where, "preflight")
    resources = _resources(r.get("resources"), where, filters)
    r.done()
    return Config(server=server, registries=registries, filters=filters, resources=resources,
                  verify=verify, preflight=preflight)


def _resources(data: Any, where: str, filters: tuple[FilterSpec, ...]) -> tuple[ResourceSpec, ...]:
    """The `resources` section: Envoy v3 `listeners`, `routes`, `clusters`, `endpoints`,
    consistent with each other and with the wasm filters of the file."""
    if data is None:
        return ()
    r = _Reader(data, where, "resources")
    out: list[ResourceSpec] = []
    try:
        for key, kind in KINDS.items():
            items = r.get(key, []) or []
            if not isinstance(items, list):
                raise r.error(key, f"must be a list, got {_kind(items)}")
            specs = [parse_resource(kind, d, where=where, path=f"resources.{key}[{i}]")
                     for i, d in enumerate(items)]
            check_selectors(specs, where=where, path=f"resources.{key}")
            out.extend(specs)
        r.done()
        problems = check_consistent(serve_all(out, {f.name: WasmFilterRef(f.type, f.routes) for f in filters}))
    except ResourceError as exc:
        raise ConfigError(exc.where, exc.path, exc.problem) from exc
    if problems:
        raise ConfigError(where, "resources", "inconsistent: " + "; ".join(problems))
    return tuple(out)


def load_config(path: str | Path) -> Config:
    """Read and validate the YAML file at `path`. Raises `ConfigError` naming the file."""
    p = Path(path)
    where = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(where, "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(where, "", f"not UTF-8 text (byte {exc.start})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, at, f"invalid YAML: {problem}") from exc
    cfg = parse_config(data, where=where, base_dir=p.resolve().parent)
    return replace(cfg, source_path=p.resolve())
