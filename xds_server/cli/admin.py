"""Operator commands over the admin HTTP API: deploy, apply, rollback, promote, history,
status, delete, filters, get.

Every command takes ``--server URL`` (default ``$XDS_SERVER_URL`` or
``http://127.0.0.1:18080``), ``--token`` (default ``$XDS_SERVER_TOKEN``, sent as a bearer
token) and ``--output table|json``. With ``json`` the server's answer is printed as one
pretty JSON document. Errors print ``error: <message>`` on stderr and exit 1. Mutating
requests carry ``X-Actor: user@hostname``, recorded by the server in the filter history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from xds_server.cli._client import (
    AdminClient,
    AdminError,
    AdminHTTPError,
    JSONObject,
    default_actor,
)
from xds_server.cli._common import add_server_options, call, error, print_json, use_color
from xds_server.cli._summary import summary_report
from xds_server.cli._table import RED, TABLE_WIDTH, Column, render_table, truncate
from xds_server.config import (
    DELIVERY_MODES,
    FAILURE_POLICIES,
    FILTER_TYPES,
    ON_NACK_POLICIES,
    ON_RUNTIME_FAILURE_POLICIES,
    PULL_POLICIES,
    parse_duration,
)

__all__ = ["parse_selector", "register"]


_GLOB_KEYS = ("node_id", "cluster")

RESOURCE_KINDS = ("listeners", "routes", "clusters", "endpoints")
"""The Envoy resource kinds of `KIND/NAME` arguments (the API's path segment)."""
_TARGET_HELP = ("a filter name, or KIND/NAME for an Envoy resource "
                f"(KIND: {', '.join(RESOURCE_KINDS)}; e.g. listeners/main)")


def resource_target(text: str) -> tuple[str, str] | None:
    """``listeners/main`` -> ``("listeners", "main")``: an argument whose first segment
    is a resource kind names an Envoy resource (the rest is its name, '/' included);
    anything else is a filter name (None)."""
    kind, sep, name = text.partition("/")
    return (kind, name) if sep and name and kind in RESOURCE_KINDS else None


# -- argument types -------------------------------------------------------------------------


def parse_selector(text: str) -> JSONObject:
    """``cluster=prod-*,role=edge`` -> ``{"cluster": "prod-*", "metadata": {"role": "edge"}}``.

    ``node_id`` and ``cluster`` are globs; any other key is an exact metadata match
    (dotted keys reach into nested metadata). ``""`` or ``*`` selects every node.
    """
    out: JSONObject = {}
    metadata: dict[str, str] = {}
    text = text.strip()
    if text in ("", "*"):
        return out
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise argparse.ArgumentTypeError(
                f"bad selector part {part.strip()!r}: expected key=value "
                "(node_id=GLOB, cluster=GLOB, or a metadata key)"
            )
        value = value.strip()
        target: dict[str, Any] = out if key in _GLOB_KEYS else metadata
        if key in target:
            raise argparse.ArgumentTypeError(f"selector key {key!r} given twice")
        target[key] = value
    if metadata:
        out["metadata"] = metadata
    return out


def _analysis(text: str) -> JSONObject:
    """``interval=10s,min_requests=20`` -> ``{"interval": "10s", "min_requests": 20}``
    (numbers as numbers; the server validates the rest)."""
    out: JSONObject = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, value = _key_value(part)
        try:
            out[key.strip()] = json.loads(value) if key.strip() != "interval" else value
        except ValueError:
            out[key.strip()] = value
    return out


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _revision_or_version(text: str) -> int | str:
    """`3` or `v3` -> 3; anything else is an xDS version string the server looks up."""
    digits = text[1:] if text[:1] in ("v", "V") and text[1:].isdigit() else text
    if digits.isdigit():
        return _positive_int(digits)
    if not text or len(text) > 128:
        raise argparse.ArgumentTypeError(f"not a revision or version: {text!r}")
    return text


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


if TYPE_CHECKING:  # generic only in the type stubs
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


# -- registration ---------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    """Add the admin subcommands; each sets ``func(args) -> int``."""
    common = _common_options()
    _add_deploy(subparsers, common)
    _add_apply(subparsers, common)
    _add_changes(subparsers, common)
    _add_reads(subparsers, common)
    p = subparsers.add_parser("delete", parents=[common], help="stop serving a filter or an Envoy resource")
    p.add_argument("name", metavar="NAME", help=_TARGET_HELP)
    p.set_defaults(func=run_delete)
    p = subparsers.add_parser("filters", parents=[common], help="list the served filters")
    p.set_defaults(func=run_filters)
    p = subparsers.add_parser(
        "get", parents=[common], help="one filter or Envoy resource; `-o json` output can be edited and applied",
        description="GET one filter (NAME) or Envoy resource (KIND/NAME, e.g. listeners/main). "
        "A filter's JSON (`-o json`) can be edited and given back to `apply -f`: derived "
        "members are ignored, `revision` guards against a concurrent change.",
    )
    p.add_argument("name", metavar="NAME", help=_TARGET_HELP)
    p.set_defaults(func=run_get)


def _common_options() -> argparse.ArgumentParser:
    """``--server``, ``--token``, ``--output``: the parent parser of every command."""
    common = argparse.ArgumentParser(add_help=False)
    add_server_options(common.add_argument_group("server"))
    return common


def _add_deploy(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "deploy", parents=[common], help="deploy a wasm filter (replaces all its specs)",
        description="PUT one filter spec. The filter's previous specs are replaced; the "
        "running version stays if the module cannot be fetched or verified.",
    )
    p.add_argument("name", metavar="NAME", help="filter name (the ECDS resource name)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="REF", help="OCI image reference")
    source.add_argument("--url", metavar="URL", help="HTTP(S) URL of the module (needs --sha256)")
    source.add_argument(
        "--file", metavar="PATH",
        help="module file on the server's host (made absolute against the current directory)",
    )
    p.add_argument(
        "--sha256", metavar="HEX",
        help="sha256 of the module bytes: required with --url, a pin otherwise",
    )
    p.add_argument(
        "--config", metavar="JSON_OR_STRING",
        help="plugin configuration: a JSON object or array, else sent as a string",
    )
    p.add_argument(
        "--selector", metavar="SEL", type=parse_selector,
        help="nodes to serve: comma-separated key=value; node_id and cluster are globs, "
        "other keys match metadata (e.g. cluster=prod-*,role=edge)",
    )
    p.add_argument(
        "--canary", metavar="SEL", type=parse_selector,
        help="serve the new version to these nodes first; `promote` widens it",
    )
    p.add_argument("--root-id", metavar="ID")
    p.add_argument("--vm-id", metavar="ID")
    p.add_argument(
        "--env", metavar="K=V", type=_key_value, action="append",
        help="environment variable of the VM (repeatable)",
    )
    # The choices are the config model's: one home for what a spec accepts.
    p.add_argument("--failure-policy", type=str.upper, choices=FAILURE_POLICIES)
    p.add_argument("--delivery", choices=DELIVERY_MODES)
    p.add_argument("--pull-policy", choices=PULL_POLICIES)
    p.add_argument("--on-nack", choices=ON_NACK_POLICIES)
    p.add_argument("--on-runtime-failure", choices=ON_RUNTIME_FAILURE_POLICIES,
                   help="without --analysis: roll back when the filter fails at run time")
    p.add_argument(
        "--analysis", metavar="K=V,...", type=_analysis,
        help="promote or roll back by itself on health, e.g. "
        "interval=10s,min_requests=20,max_error_rate=0.05,intervals=3",
    )
    p.add_argument("--type", choices=FILTER_TYPES)
    p.set_defaults(func=run_deploy)


def _add_apply(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "apply", parents=[common], help="deploy the filters and resources of a YAML or JSON file",
        description="FILE holds one spec, a list of specs, or `filters: [...]` and/or "
        "`resources: {listeners, routes, clusters, endpoints}` like the server's config file. "
        "Specs are grouped by name; each name is PUT with all of "
        "its specs. Relative `source.file` paths are taken relative to FILE. A filter as "
        "the server shows it (saved from `filters -o json`, edited) is PUT as it is. "
        "Filters go first, then resources in dependency order (endpoints, clusters, routes, "
        "listeners), so each one's references exist when it arrives.",
    )
    p.add_argument("-f", "--filename", dest="file", required=True, metavar="FILE",
                   help="YAML or JSON file, or - for stdin")
    p.set_defaults(func=run_apply)


def _add_changes(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """rollback, promote."""
    p = subparsers.add_parser(
        "rollback", parents=[common], help="go back to the previous or a given revision",
        description="Creates a new revision whose content equals the old one. NAME is a "
        "filter, or KIND/NAME an Envoy resource (e.g. routes/main; --to takes a revision number).",
    )
    p.add_argument("name", metavar="NAME", help=_TARGET_HELP)
    p.add_argument("--to", metavar="REVISION", type=_revision_or_version,
                   help="revision to return to (a number, `v3`, or an xDS version from `history`; "
                        "default: the previous one)")
    p.set_defaults(func=run_rollback)

    p = subparsers.add_parser(
        "promote", parents=[common], help="widen a canary deploy to its full selector"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=run_promote)

    p = subparsers.add_parser(
        "debug", parents=[common], help="override a filter's configuration on some proxies for a while",
        description="Serve another plugin configuration (e.g. a debug log level) to the proxies "
        "whose node id matches --node, for --for; it reverts by itself (also after a server "
        "restart) and is recorded in history (debug, debug-end). --end ends it now.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--node", metavar="GLOB", help="node ids to serve the override to")
    p.add_argument("--config", metavar="JSON_OR_STRING", help="the plugin configuration to serve")
    p.add_argument("--for", dest="duration", metavar="DURATION", help="how long: 30s, 10m, 1h")
    p.add_argument("--end", action="store_true", help="end the running override now")
    p.set_defaults(func=run_debug)


def _add_reads(subparsers: Subparsers, common: argparse.ArgumentParser) -> None:
    """history, status."""
    p = subparsers.add_parser("history", parents=[common], help="revisions of a filter or an Envoy resource")
    p.add_argument("name", metavar="NAME", help=_TARGET_HELP)
    p.add_argument("--limit", metavar="N", type=_positive_int, default=None,
                   help="show the N newest revisions")
    p.set_defaults(func=run_history)

    p = subparsers.add_parser(
        "status", parents=[common],
        help="the fleet per filter: versions by state, NACKs grouped by message, health; "
             "--proxies lists proxies",
    )
    p.add_argument("--proxies", action="store_true",
                   help="list proxies (with the filters below) instead of the summary")
    for flag, what in (("--node", "node id glob (no wildcard: ids containing it)"),
                       ("--cluster", "cluster glob"), ("--filter", "proxies that know this filter"),
                       ("--state", "ACKED, NACKED, STALE or REQUESTED"),
                       ("--version", "an xDS version sent or ACKed"),
                       ("--cursor", "next_cursor of the previous page")):
        p.add_argument(flag, default="", help=what)
    p.add_argument("--limit", type=_positive_int, default=None, help="at most N proxies (a page)")
    p.set_defaults(func=run_status)


# -- plumbing -------------------------------------------------------------------------------


def _call(args: argparse.Namespace, work: Callable[[AdminClient], Awaitable[int]]) -> int:
    """Run ``work`` with a client for ``args`` whose changes carry this user as actor."""
    return call(args, work, actor=default_actor())


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


def _short(digest: Any, n: int = 12) -> str:
    if not digest:
        return "-"
    return str(digest).removeprefix("sha256:")[:n]


def _describe_selector(sel: Any) -> str:
    """The ``--selector`` syntax for a selector dict; ``*`` when it selects every node."""
    if not isinstance(sel, dict):
        return "*"
    parts = [f"{k}={sel[k]}" for k in _GLOB_KEYS if sel.get(k) not in (None, "", "*")]
    meta = sel.get("metadata") or {}
    if isinstance(meta, dict):
        parts += [f"{k}={v}" for k, v in sorted(meta.items())]
    return ",".join(parts) or "*"


def _describe_source(spec: JSONObject, *, kind: bool = True) -> str:
    """``image REF`` / ``url URL`` / ``file PATH``; without ``kind`` only the location
    (the three are told apart by their form anyway)."""
    source = spec.get("source")
    if isinstance(source, str):
        source = {"image": source}
    if isinstance(source, dict):
        for k in ("image", "url", "file"):
            if source.get(k):
                return f"{k} {source[k]}" if kind else str(source[k])
    return "-"


def _describe_filter(view: JSONObject) -> str:
    """A few lines about one FilterView: revision, who, then one line per spec."""
    name = view.get("name", "?")
    head = f"{name}: revision {view.get('revision', '?')}"
    who = [str(view[k]) for k in ("action", "author") if view.get(k)]
    if who:
        head += f" ({' by '.join(who)})"
    if view.get("canary"):
        head += ", canary"
    lines = [head]
    for spec in view.get("specs") or []:
        module = spec.get("module") or {}
        line = (
            f"  {_describe_selector(spec.get('selector'))}: version {spec.get('version', '-')}"
            f", sha256 {_short(module.get('sha256') or spec.get('sha256'))}"
            f", {_describe_source(spec)}"
        )
        if spec.get("canary") is not None:
            line += f", canary {_describe_selector(spec.get('canary'))}"
        lines.append(line)
    debug = view.get("debug")
    if isinstance(debug, dict):
        lines.append(f"  debug override for nodes {debug.get('node')!r} until {_when(debug.get('expires_at'))}")
    analysis = view.get("analysis")
    if isinstance(analysis, dict):
        last = analysis.get("last") or {}
        rate = (last.get("canary") or {}).get("error_rate")
        lines.append(f"  analysis of revision {analysis.get('revision')}: {analysis.get('phase')}, "
                     f"interval {analysis.get('interval')} of {analysis.get('intervals')} passed"
                     + (f", last error rate {rate}" if rate is not None else ""))
    if view.get("error"):
        lines.append(f"  error: {view['error']}")
    return "\n".join(lines)


def _describe_resource(view: JSONObject) -> str:
    """``kind/name: revision N, version V[,W]``, then one line per spec selector."""
    versions = ",".join(view.get("versions") or []) or "-"
    lines = [f"{view.get('kind', '?')}/{view.get('name', '?')}: revision {view.get('revision') or '-'}, "
             f"version {versions}"]
    lines += [f"  spec for {_describe_selector(spec.get('selector'))}" for spec in view.get("specs") or []]
    return "\n".join(lines)


def _print_resource(args: argparse.Namespace, view: JSONObject) -> None:
    if args.output == "json":
        print_json(view)
    else:
        print(_describe_resource(view))


def _print_view(args: argparse.Namespace, view: JSONObject) -> None:
    if args.output == "json":
        print_json(view)
    else:
        print(_describe_filter(view))


# -- deploy / apply -------------------------------------------------------------------------


def build_deploy_spec(args: argparse.Namespace) -> JSONObject:
    """The spec body of ``deploy``: only the fields given on the command line."""
    if args.url and not args.sha256:
        raise AdminError("--url needs --sha256 HEX (the sha256 of the module bytes)")
    spec: JSONObject = {"name": args.name}
    if args.image:
        spec["source"] = {"image": args.image}
    elif args.url:
        spec["source"] = {"url": args.url, "sha256": args.sha256}
    else:
        spec["source"] = {"file": os.path.abspath(args.file)}
    if args.sha256 and not args.url:
        spec["sha256"] = args.sha256
    if args.config is not None:
        spec["configuration"] = _configuration(args.config)
    if args.selector is not None:
        spec["selector"] = args.selector
    if args.canary is not None:
        spec["canary"] = args.canary
    optional = {
        "root_id": args.root_id, "vm_id": args.vm_id, "failure_policy": args.failure_policy,
        "delivery": args.delivery, "pull_policy": args.pull_policy, "on_nack": args.on_nack,
        "type": args.type, "analysis": args.analysis, "on_runtime_failure": args.on_runtime_failure,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    if args.env:
        spec["env"] = dict(args.env)
    return spec


def _configuration(text: str) -> Any:
    """A JSON object or array is sent parsed; anything else as the string itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict | list) else text


def run_deploy(args: argparse.Namespace) -> int:
    """``deploy NAME``: PUT one spec built from the flags."""
    try:
        spec = build_deploy_spec(args)
    except AdminError as exc:
        error(str(exc))
        return 1

    async def work(client: AdminClient) -> int:
        _print_view(args, await client.put_filter(args.name, spec))
        return 0

    return _call(args, work)


Apply = dict[str, list[JSONObject] | JSONObject]
"""Name -> what to PUT: a list of specs, or a filter document (``{"specs": [...]}``)."""


def load_specs(path: str) -> Apply:
    """Filters of an apply file by name, in file order. Raises ``AdminError``.

    An entry is a spec (entries of one name are grouped) or a filter as the server
    shows it (``{"name", "specs": [...], "revision", ...}``, e.g. saved from
    ``xds-server filters -o json``), sent unchanged: the server ignores its derived
    members and checks ``revision``.
    """
    if path == "-":
        text, where, base = sys.stdin.read(), "<stdin>", Path.cwd()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise AdminError(f"cannot read {path}: {exc.strerror or exc}") from exc
        where, base = path, Path(path).resolve().parent
    specs, prefix = _entries(_parse_document(text, where), where)
    grouped: Apply = {}
    for i, spec in enumerate(specs):
        at = f"{where}: " + ("" if prefix is None else f"{prefix}[{i}]: ")
        if not isinstance(spec, dict):
            raise AdminError(f"{at}must be a mapping (a filter spec)")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise AdminError(f"{at}name: is required")
        entry = grouped.get(name)
        if "specs" in spec or isinstance(entry, dict):
            if entry is not None:
                raise AdminError(f"{at}filter {name!r} is given twice: a filter with 'specs' "
                                 "must be its only entry")
            grouped[name] = _resolve_document(spec, base)
        else:
            grouped.setdefault(name, [])
            group = grouped[name]
            assert isinstance(group, list)
            group.append(_resolve_file(spec, base))
    if not grouped:
        raise AdminError(f"{where}: no filter specs")
    return grouped


def _parse_document(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AdminError(f"{where}: not valid YAML or JSON: {exc}") from exc


def _entries(doc: Any, where: str) -> tuple[list[Any], str | None]:
    """The entries of an apply file and the prefix that locates them in messages."""
    if isinstance(doc, dict) and "filters" in doc:
        if not isinstance(doc["filters"], list):
            raise AdminError(f"{where}: filters: must be a list of filter specs")
        return doc["filters"], "filters"
    if isinstance(doc, list):
        return doc, ""
    if isinstance(doc, dict):
        return [doc], None
    raise AdminError(f"{where}: expected a filter spec, a list of specs, or filters: [...]")


def _resolve_document(doc: JSONObject, base: Path) -> JSONObject:
    specs = doc.get("specs")
    if not isinstance(specs, list):
        return doc  # the server says what is wrong
    return {**doc, "specs": [_resolve_file(s, base) if isinstance(s, dict) else s for s in specs]}


def _resolve_file(spec: JSONObject, base: Path) -> JSONObject:
    source = spec.get("source")
    if isinstance(source, dict) and isinstance(source.get("file"), str):
        p = Path(source["file"])
        if not p.is_absolute():
            return {**spec, "source": {**source, "file": str(base / p)}}
    return spec


RESOURCE_APPLY_ORDER = tuple(reversed(RESOURCE_KINDS))
"""Dependencies first: what a resource refers to exists when it is PUT."""
_NAME_FIELD = {"endpoints": "cluster_name"}


def load_resources(path: str) -> list[tuple[str, str, JSONObject]]:
    """The `resources` section of an apply file as (kind, name, body) in dependency
    order; several entries of one kind and name become one ``{"specs": [...]}``."""
    if path == "-":
        return []  # stdin was read by load_specs; resources come from files
    try:
        doc = _parse_document(Path(path).read_text(), path)
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc.strerror or exc}") from exc
    section = doc.get("resources") if isinstance(doc, dict) else None
    if section is None:
        return []
    if not isinstance(section, dict) or set(section) - set(RESOURCE_APPLY_ORDER):
        raise AdminError(f"{path}: resources: must map listeners, routes, clusters, endpoints to lists")
    out: list[tuple[str, str, JSONObject]] = []
    for kind in RESOURCE_APPLY_ORDER:
        grouped: dict[str, list[JSONObject]] = {}
        for i, item in enumerate(section.get(kind) or []):
            name = item.get(_NAME_FIELD.get(kind, "name")) if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                raise AdminError(f"{path}: resources.{kind}[{i}].{_NAME_FIELD.get(kind, 'name')}: is required")
            grouped.setdefault(name, []).append(item)
        out += [(kind, n, {"specs": specs}) for n, specs in grouped.items()]
    return out


def run_apply(args: argparse.Namespace) -> int:
    """``apply -f FILE``: PUT every filter of the file, then every resource; one line each."""
    try:
        resources = load_resources(args.file)
        try:
            grouped = load_specs(args.file)
        except AdminError:
            if not resources:
                raise
            grouped = {}
    except AdminError as exc:
        error(str(exc))
        return 1

    async def work(client: AdminClient) -> int:
        views: list[JSONObject] = []
        failed = 0
        for name, specs in grouped.items():
            try:
                view = await client.put_filter(name, specs)
            except AdminHTTPError as exc:  # this filter refused; unreachable stops all
                error(f"{name}: {exc}")
                failed += 1
                continue
            views.append(view)
            if args.output == "table":
                count = len(specs) if isinstance(specs, list) else len(view.get("specs") or [])
                print(_apply_line(name, count, view))
        resource_views: list[JSONObject] = []
        for kind, rname, body in resources:
            try:
                rview = await client.put_resource(kind, rname, body)
            except AdminHTTPError as exc:
                error(f"{kind}/{rname}: {exc}")
                failed += 1
                continue
            resource_views.append(rview)
            if args.output == "table":
                print(f"{kind}/{rname}: revision {rview.get('revision', '?')}, "
                      f"version {','.join(rview.get('versions') or []) or '-'}")
        if args.output == "json":
            print_json({"filters": views, "resources": resource_views})
        return 1 if failed else 0

    return _call(args, work)


def _apply_line(name: str, count: int, view: JSONObject) -> str:
    versions = ",".join(str(s.get("version", "-")) for s in view.get("specs") or []) or "-"
    line = (f"{name}: revision {view.get('revision', '?')}, "
            f"{count} spec{'s' if count != 1 else ''}, version {versions}")
    if view.get("error"):
        line += f", error: {view['error']}"
    return line


# -- rollback / promote / delete ------------------------------------------------------------


def run_rollback(args: argparse.Namespace) -> int:
    """``rollback NAME|KIND/NAME [--to REVISION]``."""
    target = resource_target(args.name)
    if target is not None and isinstance(args.to, str):
        error(f"--to {args.to}: a resource is rolled back to a revision number")
        return 2

    async def work(client: AdminClient) -> int:
        if target is not None:
            to = args.to if isinstance(args.to, int) else None
            _print_resource(args, await client.rollback_resource(*target, to=to))
        else:
            _print_view(args, await client.rollback(args.name, to=args.to))
        return 0

    return _call(args, work)


def run_promote(args: argparse.Namespace) -> int:
    """``promote NAME``."""

    async def work(client: AdminClient) -> int:
        _print_view(args, await client.promote(args.name))
        return 0

    return _call(args, work)


def run_debug(args: argparse.Namespace) -> int:
    """``debug NAME --node GLOB --config JSON --for DURATION`` or ``debug NAME --end``."""
    if not args.end:
        missing = [f for f, v in (("--node", args.node), ("--config", args.config),
                                  ("--for", args.duration)) if v is None]
        if missing:
            error(f"debug needs {', '.join(missing)} (or --end)")
            return 2
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            error(f"--for {exc}")
            return 2

    async def work(client: AdminClient) -> int:
        if args.end:
            view = await client.end_debug(args.name)
        else:
            view = await client.debug(args.name, node=args.node, configuration=_configuration(args.config),
                                      seconds=seconds)
        _print_view(args, view)
        return 0

    return _call(args, work)


def run_delete(args: argparse.Namespace) -> int:
    """``delete NAME|KIND/NAME``."""
    target = resource_target(args.name)

    async def work(client: AdminClient) -> int:
        doc = await (client.delete_resource(*target) if target else client.delete_filter(args.name))
        if args.output == "json":
            print_json(doc)
        else:
            print(f"{doc.get('deleted', args.name)}: deleted (revision {doc.get('revision', '?')})")
        return 0

    return _call(args, work)


# -- history / filters / status -------------------------------------------------------------


def run_history(args: argparse.Namespace) -> int:
    """``history NAME|KIND/NAME [--limit N]``: newest revision first."""
    target = resource_target(args.name)

    async def work(client: AdminClient) -> int:
        doc = await (client.resource_history(*target, limit=args.limit) if target
                     else client.history(args.name, limit=args.limit))
        if args.output == "json":
            print_json(doc)
            return 0
        history = doc.get("history") or []
        print(history_table(history) if history else f"{args.name}: no history")
        return 0

    return _call(args, work)


def _first_and_more(values: Iterable[Any], n: int) -> str:
    unique = list(dict.fromkeys(str(v) for v in values if v))
    if not unique:
        return "-"
    text = _short(unique[0], n)
    return text + (f" +{len(unique) - 1}" if len(unique) > 1 else "")


def signed_by(verdicts: Iterable[Any]) -> str:
    """Who signed the modules of a revision, short: a key file's name, a keyless identity,
    `unverified` (a policy that is not required found no valid signature), or `-`."""
    names = []
    for v in verdicts:
        if not isinstance(v, dict) or not v:
            continue
        if not v.get("verified"):
            names.append("unverified")
        else:
            names.append(str(v.get("key") or "").rsplit("/", 1)[-1] or str(v.get("identity") or "?"))
    unique = list(dict.fromkeys(names))
    return ", ".join(unique) if unique else "-"


def history_table(history: list[JSONObject]) -> str:
    """REVISION, WHEN, AUTHOR, ACTION, DIGEST, XDS VERSION, SUMMARY; fits 100 columns.
    A revision whose modules a verify policy checked starts its summary with
    `signed by KEY-FILE|IDENTITY;` (or `unverified;`)."""
    columns = [
        Column("REVISION", align_right=True), Column("WHEN"),
        Column("AUTHOR", shrink=True, min_width=10), Column("ACTION", shrink=True),
        Column("DIGEST"), Column("XDS VERSION"), Column("SUMMARY", shrink=True, min_width=10),
    ]
    rows = []
    for h in history:
        signers = signed_by(h.get("verdicts") or [])
        prefix = "" if signers == "-" else ("unverified; " if signers == "unverified" else f"signed by {signers}; ")
        rows.append([
            str(h.get("revision", "?")), _when(h.get("created_at")), str(h.get("author") or "-"),
            str(h.get("action") or "-"), _first_and_more(h.get("digests") or [], 12),
            _first_and_more(h.get("versions") or [], 16), prefix + str(h.get("summary") or ""),
        ])
    return render_table(columns, rows, max_width=TABLE_WIDTH)


def run_get(args: argparse.Namespace) -> int:
    """``get NAME``: one filter, as ``deploy`` prints it (or its JSON view);
    ``get KIND/NAME``: one Envoy resource."""
    target = resource_target(args.name)

    async def work(client: AdminClient) -> int:
        if target is not None:
            _print_resource(args, await client.get_resource(*target))
        else:
            _print_view(args, await client.get_filter(args.name))
        return 0

    return _call(args, work)


def run_filters(args: argparse.Namespace) -> int:
    """``filters``: the served filters, one row per spec."""

    async def work(client: AdminClient) -> int:
        doc = await client.list_filters()
        if args.output == "json":
            print_json(doc)
            return 0
        filters = doc.get("filters") or []
        print(filters_table(filters) if filters else "no filters")
        return 0

    return _call(args, work)


def filters_table(filters: list[JSONObject]) -> str:
    """NAME, REVISION, XDS VERSION, SOURCE, DIGEST, CANARY, ERROR; one row per spec."""
    columns = [
        Column("NAME", shrink=True, min_width=12), Column("REVISION", align_right=True),
        Column("XDS VERSION"), Column("SOURCE", shrink=True, min_width=12, keep_end=True), Column("DIGEST"),
        Column("CANARY", shrink=True), Column("ERROR", shrink=True, min_width=8),
    ]
    rows: list[list[str]] = []
    for view in filters:
        specs = view.get("specs") or [{}]
        for spec in specs:
            module = spec.get("module") or {}
            if spec.get("canary") is not None:
                canary = _describe_selector(spec["canary"])
            else:
                canary = "yes" if view.get("canary") else "-"
            rows.append([
                str(view.get("name", "?")), str(view.get("revision", "-")),
                str(spec.get("version") or "-"), _describe_source(spec, kind=False) if spec else "-",
                _short(module.get("sha256") or spec.get("sha256")), canary,
                str(view.get("error") or ""),
            ])
    return render_table(columns, rows, max_width=TABLE_WIDTH)


def _proxy_query(args: argparse.Namespace) -> dict[str, str]:
    query = {k: getattr(args, k) for k in ("node", "cluster", "filter", "state", "version", "cursor")}
    if args.limit is not None:
        query["limit"] = str(args.limit)
    return {k: v for k, v in query.items() if v}


def run_status(args: argparse.Namespace) -> int:
    """``status``: the fleet summary; ``--proxies``: the proxies the filters select, by
    filter and version, NACKs marked, then a line per filter. ``--output json``: the
    summary, the filters and the proxies (all of them, or the page asked for)."""

    async def work(client: AdminClient) -> int:
        query = _proxy_query(args)
        if args.output == "json":
            filters, proxies, summary = await asyncio.gather(
                client.list_filters(), client.list_proxies(query), client.summary())
            print_json({**filters, **proxies, "summary": summary})
        elif args.proxies or query:
            filters, proxies = await asyncio.gather(client.list_filters(), client.list_proxies(query))
            print(status_report(filters.get("filters") or [], proxies.get("proxies") or [],
                                color=use_color(sys.stdout)))
            listed, total = len(proxies.get("proxies") or []), proxies.get("total")
            if isinstance(total, int) and total > listed:
                print(f"{listed} of {total} proxies; next page: --cursor {proxies.get('next_cursor')}")
        else:
            print(summary_report(await client.summary(), width=TABLE_WIDTH, color=use_color(sys.stdout)))
        return 0

    return _call(args, work)


def status_report(
    filters: list[JSONObject], proxies: list[JSONObject], *, color: bool = False,
    now: float | None = None,
) -> str:
    """The ``status`` text: the proxy table (``!`` marks NACKed rows; filters and Envoy
    resources, as ``kind/name``), then per-filter lines."""
    now = time.time() if now is None else now
    views = {str(v.get("name")): v for v in filters}
    rows: list[tuple[tuple[str, str, str], list[str], bool]] = []
    subscribed: dict[str, list[tuple[JSONObject, JSONObject]]] = {}
    for proxy in proxies:
        for name, res in sorted((proxy.get("resources") or {}).items()):
            if not isinstance(res, dict):
                continue
            if (name not in views and "TypedExtensionConfig" not in str(res.get("type_url", ""))
                    and resource_target(name) is None):
                continue
            subscribed.setdefault(name, []).append((proxy, res))
            state = str(res.get("state") or "-")
            nack = res.get("last_nack") or {}
            acked = str(res.get("version_acked") or "-")
            node = str(proxy.get("node_id") or "-")
            rows.append((
                (name, acked, node),
                [name, node, str(proxy.get("cluster") or "-"), acked, state,
                 _connected(proxy, now), _nack_text(nack)],
                state == "NACKED",
            ))
    rows.sort(key=lambda r: r[0])
    columns = [
        Column("FILTER", shrink=True, min_width=8), Column("NODE", shrink=True, min_width=8),
        Column("CLUSTER", shrink=True, min_width=7), Column("VERSION ACKED"), Column("STATE"),
        Column("CONNECTED"), Column("NACK", shrink=True, min_width=8),
    ]
    out: list[str] = []
    if rows:
        out.append(render_table(
            columns, [r[1] for r in rows], max_width=TABLE_WIDTH,
            marks=["!" if r[2] else " " for r in rows],
            colors=[RED if (r[2] and color) else None for r in rows],
        ))
    else:
        out.append("no proxies subscribe to any filter")
    out.append("")
    for name in sorted(set(views) | {n for n in subscribed if n in views or resource_target(n) is None}):
        out.append(truncate(_summary(name, views.get(name), subscribed.get(name, [])),
                            TABLE_WIDTH))
    return "\n".join(out)


def _nack_text(nack: Any) -> str:
    """``VERSION: message`` of the last NACK: the version says which content was refused
    (a proxy that ACKs a later version keeps showing its last NACK)."""
    if not isinstance(nack, dict):
        return ""
    message = str(nack.get("message") or "")
    version = nack.get("version")
    return f"{_short(version, 8)}: {message}" if version else message


def _connected(proxy: JSONObject, now: float) -> str:
    if proxy.get("connected"):
        since = proxy.get("connected_since")
        return f"yes {_age(now - since)}" if isinstance(since, int | float) else "yes"
    gone = proxy.get("disconnected_at")
    return f"no {_age(now - gone)} ago" if isinstance(gone, int | float) else "no"


def _summary(
    name: str, view: JSONObject | None, subs: list[tuple[JSONObject, JSONObject]]
) -> str:
    live = [res for proxy, res in subs if proxy.get("connected")]
    gone = len(subs) - len(live)
    if view is None:
        return f"{name}: not served, {len(live)} connected proxies ask for it"
    current = {str(s.get("version")) for s in view.get("specs") or [] if s.get("version")}
    on_current = sum(1 for res in live if str(res.get("version_acked")) in current)
    nacked = sum(1 for res in live if res.get("state") == "NACKED")
    line = (f"{name}: revision {view.get('revision', '?')}, "
            f"{on_current}/{len(live)} proxies on current version")
    if nacked:
        line += f", {nacked} NACKed"
    if gone:
        line += f", {gone} disconnected"
    if view.get("canary"):
        line += ", canary"
    signers = signed_by(s.get("verdict") for s in view.get("specs") or [])
    if signers != "-":
        line += f", signed by {signers}"
    if view.get("error"):
        line += f", error: {view['error']}"
    return line
