"""`analysis` without a canary, on a real server whose health windows get telemetry as
the OTLP receiver hands it over: a revision that passes its intervals is verified (no
new revision); one that fails an interval is rolled back to the last good revision;
intervals with too few requests decide nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tests.fixtures.envoy import wait_for
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import debug_state_filter
from xds_server.config import parse_filter_spec
from xds_server.runtime import XdsServerApp
from xds_server.telemetry import WASM_FAIL_DETAILS, FilterRun, RequestRecord

ANALYSIS = {"interval": "1s", "min_requests": 5, "max_error_rate": 0.1, "intervals": 2}


@contextlib.asynccontextmanager
async def feeding(app: XdsServerApp, revision: int, *, status: int, per_tick: int = 5) -> AsyncIterator[None]:
    """Requests of node e1 on `revision`, `per_tick` every 0.1 s, while the block runs."""
    state = app.controller.filters["hdr"]
    run = FilterRun("hdr", revision, state.versions[0])

    async def feed() -> None:
        while True:
            app.health.on_requests([RequestRecord(
                node_id="e1", cluster="c", time=time.time(), duration_ms=1.0, status=status,
                details=WASM_FAIL_DETAILS if status >= 500 else "via_upstream", runs=(run,))
                for _ in range(per_tick)])
            await asyncio.sleep(0.1)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _deploy(app: XdsServerApp, module: Path, **extra: object) -> int:
    spec = parse_filter_spec({"name": "hdr", "source": {"file": str(module)}, **extra}, where="test")
    state = await app.controller.deploy("hdr", [spec], author="test")
    assert state.revision is not None
    return state.revision.revision


async def test_analysis_without_canary_verifies_or_rolls_back_to_last_good(tmp_path: Path) -> None:
    modules = []
    for i in range(3):
        modules.append(tmp_path / f"v{i}.wasm")
        modules[-1].write_bytes(debug_state_filter(f"V{i}"))
    cfg = write_config(tmp_path / "config.yaml", [{"name": "hdr", "source": {"file": str(modules[0])}}],
                       health_bucket_seconds=1)
    async with running_server(cfg) as app:
        # Revision 2 passes two intervals in a row: verified, nothing recorded.
        assert await _deploy(app, modules[1], analysis=ANALYSIS) == 2
        async with feeding(app, 2, status=200):
            await wait_for(lambda: (app.controller.analysis_view("hdr") or {}).get("phase") == "verified", 30,
                           interval=0.2, what="revision 2 verified")
        view = app.controller.analysis_view("hdr")
        assert view is not None and view["interval"] == 2 and view["last"]["verdict"] == "pass"
        assert [h.action for h in await app.state.history("hdr")] == ["deploy", "config"]

        # Revision 3 with too few requests: inconclusive intervals decide nothing.
        assert await _deploy(app, modules[2], analysis=ANALYSIS) == 3
        async with feeding(app, 3, status=503, per_tick=0):
            def judged() -> bool:
                view = app.controller.analysis_view("hdr") or {}
                return view.get("revision") == 3 and view.get("evaluated", 0) >= 2

            await wait_for(judged, 30, interval=0.2, what="two intervals of revision 3 judged")
        view = app.controller.analysis_view("hdr")
        assert view is not None and view["phase"] == "progressing" and view["interval"] == 0
        assert view["last"]["verdict"] == "inconclusive"

        # Then it fails: back to the last good revision (2), once.
        async with feeding(app, 3, status=503):
            def rolled_back() -> bool:
                rev = app.controller.filters["hdr"].revision
                return rev is not None and rev.action == "auto-rollback"

            await wait_for(rolled_back, 30, interval=0.2, what="revision 3 rolled back")
        history = await app.state.history("hdr")
        decision = history[0]
        assert decision.revision == 4 and decision.versions == history[2].versions  # revision 2's content
        assert decision.details["analysis"]["canary"]["error_rate"] == 1.0
        assert decision.details["analysis"]["baseline"] is None and decision.details["from_revision"] == 3
        assert "rollback to revision 2" in decision.summary
        # The rollback's content is not analysed again.
        await asyncio.sleep(3)
        assert (await app.state.history("hdr"))[0].revision == 4
