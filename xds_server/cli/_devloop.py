"""Deploy a freshly built module through the admin API and collect each proxy's verdict.

The module goes to the server as a ``file`` source: the server and this command share a
host in development, and the admin API reads modules by path (``PUT /api/v1/filters``,
as ``xds-server deploy --file`` does). Each build is copied to a content-addressed file
(``build/dev/<sha256>.wasm``) first, so a revision's file never changes under the server.
The spec is the filter's current one with only the module (and the project's root id)
changed, and ``on_nack: rollback``: a module Envoy refuses makes the server return to the
last version every proxy accepted, so the previous version keeps serving.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xds_server.cli._client import AdminClient, AdminHTTPError, JSONObject
from xds_server.devkit import BuildResult, Project

__all__ = ["DeployOutcome", "ProxyVerdict", "current_revision", "deploy_build", "restore"]

SETTLE_GRACE_SECONDS = 1.0  # after this, a proxy not sent the new version is not targeted
NO_PROXY_WAIT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class ProxyVerdict:
    """What one proxy did with the new version: ``ACK``, ``NACK`` (with Envoy's message)
    or ``PENDING`` (no answer before the timeout; ``version`` is what it runs)."""

    node_id: str
    verdict: str
    version: str
    message: str = ""


@dataclass(slots=True)
class DeployOutcome:
    """A deploy: the revision made, its xDS versions, each proxy's verdict, and where the
    server went back to after a NACK (``rolled_back_to``, a revision) or why it failed."""

    revision: int = 0
    versions: frozenset[str] = frozenset()
    verdicts: list[ProxyVerdict] = field(default_factory=list)
    rolled_back_to: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        """Deployed, and no proxy refused or ignored it."""
        return not self.error and all(v.verdict == "ACK" for v in self.verdicts)


def _selector(sel: Any) -> JSONObject:
    sel = sel if isinstance(sel, dict) else {}
    return {"node_id": sel.get("node_id") or "*", "cluster": sel.get("cluster") or "*",
            "metadata": dict(sel.get("metadata") or {})}


def _stage(result: BuildResult, project: Project) -> Path:
    target = project.root / "build" / "dev" / f"{result.sha256}.wasm"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(result.output, tmp)
        tmp.replace(target)
    return target


def build_specs(view: JSONObject | None, name: str, project: Project, module: Path, sha256: str,
                selector: JSONObject | None) -> list[JSONObject]:
    """The specs to PUT: the current ones, with the module replaced in the spec whose
    selector is ``selector`` (or the only spec); a new spec when none matches."""
    change: JSONObject = {"source": {"file": str(module)}, "sha256": sha256, "on_nack": "rollback"}
    if project.root_id:
        change["root_id"] = project.root_id
    keep = ("version", "module")
    specs = [{k: v for k, v in s.items() if k not in keep} for s in (view or {}).get("specs") or []]
    wanted = _selector(selector) if selector is not None else None
    for spec in specs:
        if (wanted is None and len(specs) == 1) or (wanted is not None and _selector(spec.get("selector")) == wanted):
            spec.update(change)
            return specs
    if specs and wanted is None:
        raise ValueError(f"filter {name!r} has {len(specs)} specs (one per selector): "
                         "pass --selector to say which one dev replaces")
    new: JSONObject = {"name": name, "configuration": project.configuration, **change}
    if selector is not None:
        new["selector"] = selector
    return [*specs, new]


async def current_revision(client: AdminClient, name: str) -> JSONObject | None:
    """The filter's view, or None when the server does not serve it."""
    try:
        return await client.get_filter(name)
    except AdminHTTPError as exc:
        if exc.status == 404:
            return None
        raise


def _verdicts(proxies: list[JSONObject], name: str, versions: frozenset[str],
              settled_only: bool) -> tuple[list[ProxyVerdict], bool]:
    out, done = [], True
    for proxy in proxies:
        res = (proxy.get("resources") or {}).get(name)
        if not proxy.get("connected") or res is None:
            continue
        nack = res.get("last_nack") or {}
        node = str(proxy.get("node_id"))
        if res.get("version_acked") in versions:
            out.append(ProxyVerdict(node, "ACK", str(res["version_acked"])))
        elif nack.get("version") in versions:
            out.append(ProxyVerdict(node, "NACK", str(nack["version"]), str(nack.get("message", ""))))
        elif settled_only and res.get("version_sent") not in versions:
            continue  # not selected: the new version is not for this proxy
        else:
            done = False
            out.append(ProxyVerdict(node, "PENDING", str(res.get("version_acked") or "-")))
    return out, done


async def _wait_verdicts(client: AdminClient, name: str, versions: frozenset[str],
                         wait_seconds: float) -> list[ProxyVerdict]:
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        proxies = (await client.list_proxies()).get("proxies") or []
        verdicts, done = _verdicts(proxies, name, versions, elapsed > SETTLE_GRACE_SECONDS)
        if (verdicts and done) or elapsed > wait_seconds or (not verdicts and elapsed > NO_PROXY_WAIT_SECONDS):
            return verdicts
        await asyncio.sleep(0.1)


async def _rolled_back(client: AdminClient, name: str, revision: int, wait_seconds: float) -> int | None:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        view = await current_revision(client, name)
        if view and view.get("revision", 0) > revision and view.get("action") == "auto-rollback":
            return int(view["revision"])
        await asyncio.sleep(0.1)
    return None


async def deploy_build(client: AdminClient, name: str, project: Project, result: BuildResult, *,
                       selector: JSONObject | None, wait_seconds: float) -> DeployOutcome:
    """PUT the built module as filter ``name`` and wait (up to ``wait_seconds``) for the
    proxies' verdicts. Never raises for a refused deploy: ``error`` says why."""
    module = await asyncio.to_thread(_stage, result, project)
    view = await current_revision(client, name)
    try:
        specs = build_specs(view, name, project, module, result.sha256, selector)
        view = await client.put_filter(name, specs)
    except (ValueError, AdminHTTPError) as exc:
        return DeployOutcome(error=str(exc))
    wanted = _selector(selector) if selector is not None else None
    versions = frozenset(str(s["version"]) for s in view.get("specs") or []
                         if wanted is None or _selector(s.get("selector")) == wanted)
    outcome = DeployOutcome(revision=int(view.get("revision", 0)), versions=versions)
    outcome.verdicts = await _wait_verdicts(client, name, versions, wait_seconds)
    if any(v.verdict == "NACK" for v in outcome.verdicts):
        outcome.rolled_back_to = await _rolled_back(client, name, outcome.revision, 5.0)
    return outcome


async def restore(client: AdminClient, name: str, original: JSONObject | None) -> str:
    """Put back the revision found at start (``--restore``); say what was done."""
    current = await current_revision(client, name)
    if original is None:
        if current is None:
            return f"{name}: nothing to restore (it did not exist)"
        await client.delete_filter(name)
        return f"{name}: deleted (it did not exist when dev started)"
    revision = int(original.get("revision", 0))
    if current is not None and current.get("specs") == original.get("specs"):
        return f"{name}: already at revision {revision}'s content"
    view = await client.rollback(name, to=revision)
    return f"{name}: restored revision {revision}'s content as revision {view.get('revision')}"
