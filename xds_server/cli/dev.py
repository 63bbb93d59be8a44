"""`xds-server dev DIR --filter NAME`: rebuild on save, deploy, show each proxy's verdict.

Each round builds the project (``xds_server.devkit``), deploys the module through the
admin API (``cli/_devloop.py``) and prints, per proxy, whether it took the new version
or NACKed it with Envoy's message. A build error deploys nothing; a NACK makes the server
roll back: either way the last good version keeps serving. ``--once`` runs one round and
exits 1 if it failed. Otherwise sources are polled for changes until Ctrl-C/SIGTERM,
the filter's access logs and health are followed (``GET /api/v1/logs?follow=1`` and
``/api/v1/filters/NAME/health``: proxies run with ``xds-server envoy --telemetry``; a
module that traps at run time is ACKed by Envoy, and only health shows it), and on exit
``--restore`` puts back the revision found at start.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

from xds_server.cli._client import AdminClient, AdminError, JSONObject, default_actor
from xds_server.cli._common import add_server_options, client_for
from xds_server.cli._devloop import DeployOutcome, current_revision, deploy_build, restore
from xds_server.cli.admin import parse_selector
from xds_server.cli.logs import entry_line
from xds_server.cli.project import describe_build
from xds_server.devkit import CompileError, DevkitError, Project, build_project, load_project

__all__ = ["register"]

POLL_SECONDS = 0.25
HEALTH_SECONDS = 5.0
HEALTH_WINDOW_SECONDS = 60.0


def register(sub: Any) -> None:
    """Add the `dev` subcommand."""
    p = sub.add_parser("dev", help="rebuild a filter project on save and swap it into Envoy",
                       description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("dir", metavar="DIR", type=Path, help="the filter project (see `init`)")
    p.add_argument("--filter", required=True, metavar="NAME", help="filter name (ECDS resource) to deploy as")
    p.add_argument("--selector", type=parse_selector, metavar="SEL",
                   help="the proxies to deploy to (node_id=GLOB,cluster=GLOB,KEY=VALUE); default: the "
                        "filter's only spec, or every proxy for a new filter")
    add_server_options(p, output_help=None)
    p.add_argument("--once", action="store_true", help="build and deploy once; exit 1 on failure")
    p.add_argument("--restore", action="store_true", help="on exit, restore the revision found at start")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S",
                   help="how long to wait for proxies to answer (default 15)")
    p.set_defaults(func=run)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _report(name: str, outcome: DeployOutcome, before: JSONObject | None) -> None:
    kept = f"revision {before.get('revision')}" if before else "nothing (it was not served)"
    if outcome.error:
        _say(f"deploy refused: {outcome.error}; {name} keeps {kept}")
        return
    _say(f"deployed {name} revision {outcome.revision} (version {', '.join(sorted(outcome.versions))})")
    if not outcome.verdicts:
        _say(f"no connected proxy runs {name}: start one with `xds-server envoy --filter {name}`")
    for v in outcome.verdicts:
        if v.verdict == "ACK":
            print(f"  {v.node_id}: ACK, running version {v.version}", flush=True)
        elif v.verdict == "NACK":
            print(f"  {v.node_id}: NACK of version {v.version}: {v.message}", flush=True)
        else:
            print(f"  {v.node_id}: no answer yet (still running version {v.version})", flush=True)
    if any(v.verdict == "NACK" for v in outcome.verdicts):
        back = (f"the server rolled back to the last good version (revision {outcome.rolled_back_to})"
                if outcome.rolled_back_to else "proxies that refused it keep their previous version")
        _say(f"refused by Envoy: {back}")


async def _round(client: AdminClient, args: argparse.Namespace, project: Project) -> bool:
    _say(f"building {project.root} ({project.language})")
    before = await current_revision(client, args.filter)
    try:
        result = await asyncio.to_thread(build_project, project)
    except CompileError as exc:
        sys.stdout.write(exc.output)  # as the compiler printed it
        kept = f"revision {before.get('revision')}" if before else "nothing"
        _say(f"build failed ({exc.command[0]} exit {exc.returncode}); {args.filter} keeps {kept}")
        return False
    except DevkitError as exc:
        _say(f"build failed: {exc}; {args.filter} keeps its running version")
        return False
    _say(describe_build(result))
    started = time.perf_counter()
    outcome = await deploy_build(client, args.filter, project, result, selector=args.selector,
                                 wait_seconds=args.timeout)
    _report(args.filter, outcome, before)
    if outcome.ok:
        _say(f"live in {time.perf_counter() - started:.2f}s after the build")
    return outcome.ok


async def _follow_logs(client: AdminClient, name: str) -> None:
    try:
        async for item in client.follow_logs(name, limit=0):
            if "lagged" in item:
                print(f"  log | ... {item['lagged']} entries skipped", flush=True)
            else:
                print(f"  log | {entry_line(item)}", flush=True)
    except AdminError as exc:
        _say(f"access logs not followed: {exc}")


def _health_line(doc: JSONObject) -> str | None:
    entries = doc.get("revisions") or []
    if not entries:
        return None
    e = max(entries, key=lambda x: int(x.get("revision", 0)))
    p99 = (e.get("latency_ms") or {}).get("p99")
    return (f"revision {e.get('revision')}: {e.get('requests', 0)} requests, {e.get('errors_5xx', 0)} 5xx, "
            f"p99 {'-' if p99 is None else f'{p99:.3g}'} ms, {e.get('vm_failures', 0)} VM failures"
            + (", FAILING (the module fails at run time: see Envoy's log)" if e.get("failing") else ""))


async def _follow_health(client: AdminClient, name: str) -> None:
    last: str | None = None
    while True:
        try:
            line = _health_line(await client.filter_health(name, window=HEALTH_WINDOW_SECONDS))
        except AdminError as exc:
            _say(f"health not followed: {exc}")
            return
        if line is not None and line != last:
            print(f"  health | last {HEALTH_WINDOW_SECONDS:g}s, {line}", flush=True)
            last = line
        await asyncio.sleep(HEALTH_SECONDS)


def _snapshot(project: Project) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in project.sources()}


async def _watch(client: AdminClient, args: argparse.Namespace, project: Project, stop: asyncio.Event) -> None:
    seen = _snapshot(project)
    _say(f"watching {project.root} for changes (Ctrl-C to stop)")
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            return
        except TimeoutError:
            pass
        now = _snapshot(project)
        if now == seen:
            continue
        await asyncio.sleep(0.1)  # editors write in steps: let the save finish
        seen = _snapshot(project)
        try:
            project = load_project(args.dir)
        except DevkitError as exc:
            _say(f"not rebuilt: {exc}")
            continue
        await _round(client, args, project)


async def _main(args: argparse.Namespace, project: Project) -> int:
    async with client_for(args, actor=f"{default_actor()} (dev)") as client:
        original = await current_revision(client, args.filter)
        if args.once:
            return 0 if await _round(client, args, project) else 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        followers = [asyncio.create_task(_follow_logs(client, args.filter)),
                     asyncio.create_task(_follow_health(client, args.filter))]
        try:
            await _round(client, args, project)
            await _watch(client, args, project, stop)
        finally:
            for task in followers:
                task.cancel()
        if args.restore:
            _say(await restore(client, args.filter, original))
        else:
            view = await current_revision(client, args.filter)
            _say(f"{args.filter} stays at revision {view.get('revision') if view else '-'}")
        return 0


def run(args: argparse.Namespace) -> int:
    """Load the project, then run the loop (or one round)."""
    try:
        project = load_project(args.dir)
        return asyncio.run(_main(args, project))
    except (DevkitError, AdminError) as exc:
        print(f"xds-server dev: error: {exc}", file=sys.stderr)
        return 1
