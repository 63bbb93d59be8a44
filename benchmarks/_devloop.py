"""Edit-to-live per template: source saved -> new response header seen through Envoy.

Each edit changes the example's VERSION and saves; the time to the first response with the
new `x-NAME-version` is split into build (compiler), validation (the pre-flight checks)
and deploy+swap (admin API PUT -> server -> ECDS -> Envoy serving it). The deploy is the
code `xds-server dev` runs (`cli/_devloop.deploy_build`), against a real server and a real
Envoy run by `xds-server envoy`. The AssemblyScript project's `npm ci` (first build) is
not timed.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import med

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = {"c": "src/filter.c", "assemblyscript": "assembly/index.ts"}
_VERSION = {"c": re.compile(r'#define VERSION "\d+"'), "assemblyscript": re.compile(r'const VERSION = "\d+";')}
_FORMAT = {"c": '#define VERSION "{}"', "assemblyscript": 'const VERSION = "{}";'}


def _set_version(source: Path, language: str, version: int) -> None:
    text = source.read_text()
    source.write_text(_VERSION[language].sub(_FORMAT[language].format(version), text))


async def _poll_header(url: str, header: str, value: str, limit: float) -> float | None:
    import aiohttp

    deadline = time.monotonic() + limit
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.headers.get(header) == value:
                        return time.perf_counter()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.001)
    return None


async def _template(language: str, edits: int, root: Path, app: Any, url: str) -> dict[str, Any]:
    from xds_server.cli._client import AdminClient
    from xds_server.cli._devloop import deploy_build
    from xds_server.devkit import build_project, init_project, load_project

    project = init_project(root / language, language, f"bench-{language[:2]}")
    header = f"x-{project.name}-version"
    source = project.root / TEMPLATES[language]
    api = f"http://127.0.0.1:{app.admin_port}"
    rows = []
    async with AdminClient(api) as client:
        first = await asyncio.to_thread(build_project, project)  # npm ci for AssemblyScript
        await deploy_build(client, "add-header", project, first, selector=None, wait_seconds=30)
        for i in range(2, edits + 2):
            _set_version(source, language, i)
            saved = time.perf_counter()
            result = await asyncio.to_thread(build_project, load_project(project.root))
            built = time.perf_counter()
            poll = asyncio.create_task(_poll_header(url, header, str(i), 60.0))
            outcome = await deploy_build(client, "add-header", project, result, selector=None, wait_seconds=30)
            seen = await poll
            rows.append({
                "edit": i - 1, "ok": outcome.ok and seen is not None, "size": result.report.size,
                "build_s": result.compile_seconds, "validate_s": result.check_seconds,
                "deploy_swap_s": None if seen is None else seen - built,
                "edit_to_live_s": None if seen is None else seen - saved,
            })
    return {"language": language, "edits": rows,
            **{f"{k}_p50": med([r[k] for r in rows]) for k in
               ("build_s", "validate_s", "deploy_swap_s", "edit_to_live_s")}}


async def _run(edits: int) -> dict[str, Any]:
    from tests.fixtures.devkit import local_envoy
    from tests.fixtures.server import running_server, write_config

    with tempfile.TemporaryDirectory(prefix="bench-devloop-") as tmp:
        root = Path(tmp)
        cfg = write_config(root / "config.yaml", [{
            "name": "add-header", "source": {"file": str(REPO / "config" / "add-header.wasm")},
            "configuration": {"greeting": "bench"}}])
        async with running_server(cfg) as app, local_envoy(
                root, xds_port=app.xds_port, admin_port=app.admin_port, node_id="bench") as envoy:
            results = [await _template(lang, edits, root, app, envoy.url) for lang in TEMPLATES]
    return {"edits": edits, "templates": results}


def edit_to_live(edits: int) -> dict[str, Any]:
    """Run ``edits`` edits per template; per-edit rows and medians."""
    return asyncio.run(_run(edits))


def edit_to_live_table(res: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for t in res["templates"]:
        ok = sum(1 for r in t["edits"] if r["ok"])
        rows.append([t["language"], f"{ok}/{len(t['edits'])}", t["edits"][0]["size"], t["build_s_p50"],
                     t["validate_s_p50"], t["deploy_swap_s_p50"], t["edit_to_live_s_p50"]])
    return (["template", "live", "bytes", "build s p50", "validate s p50", "deploy+swap s p50",
             "edit-to-live s p50"], rows)
