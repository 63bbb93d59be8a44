"""Two replicas sharing PostgreSQL decide a canary's fate at the same moment: the
decision is recorded once (one `auto-rollback` revision, one `auto_rollback` event,
one count), and both replicas then serve it.

Both replicas are real servers in this process, on one database; the telemetry is
fed to one replica's health windows as its OTLP receiver would (the other reads it from
the shared `filter_health` rows). Their timers are stopped so the test can make them
decide together: `analysis_tick()` on both at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from structlog.testing import capture_logs

from tests.fixtures.envoy import wait_for
from tests.fixtures.server import running_server, write_config
from tests.fixtures.wasm_filters import debug_state_filter
from xds_server.config import parse_filter_spec
from xds_server.controller._metrics import AUTO_ROLLBACKS
from xds_server.runtime import XdsServerApp
from xds_server.telemetry import WASM_FAIL_DETAILS, FilterRun, RequestRecord


async def _feed(app: XdsServerApp, canary: FilterRun, base: FilterRun) -> None:
    """Traffic as the receiver hands it over: the canary node's requests all fail in
    its wasm VM, the baseline node's succeed (10 each per 0.1 s)."""
    while True:
        now = time.time()
        app.health.on_requests(
            [RequestRecord(node_id="canary-1", cluster="c", time=now, duration_ms=1.0, status=503,
                           details=WASM_FAIL_DETAILS, runs=(canary,)) for _ in range(10)]
            + [RequestRecord(node_id="base-1", cluster="c", time=now, duration_ms=1.0, status=200,
                             runs=(base,)) for _ in range(10)])
        await asyncio.sleep(0.1)


def _stop_timer(app: XdsServerApp) -> None:
    task = app._analysis_task
    assert task is not None
    task.cancel()


async def test_two_replicas_deciding_at_once_record_one_rollback(tmp_path: Path, fresh_database: str) -> None:
    v1, v2 = tmp_path / "v1.wasm", tmp_path / "v2.wasm"
    v1.write_bytes(debug_state_filter("A"))
    v2.write_bytes(debug_state_filter("B", trap_every=2))
    configs = [write_config(tmp_path / f"{r}.yaml", [{"name": "hdr", "source": {"file": str(v1)}}],
                            data_dir=str(tmp_path / f"data-{r}"), database_url=fresh_database,
                            replica_id=r, health_bucket_seconds=1) for r in ("r1", "r2")]
    async with running_server(configs[0]) as r1, running_server(configs[1]) as r2:
        _stop_timer(r1)
        _stop_timer(r2)
        spec = parse_filter_spec({"name": "hdr", "source": {"file": str(v2)}, "canary": {"node_id": "canary-1"},
                                  "analysis": {"interval": "1s", "min_requests": 5, "max_error_rate": 0.05,
                                               "intervals": 3}}, where="test")
        state = await r1.controller.deploy("hdr", [spec], author="test")
        assert state.revision is not None and state.revision.revision == 2
        await r2.controller.sync("hdr", 2)
        canary = FilterRun("hdr", 2, state.versions[0], canary=True)
        base = FilterRun("hdr", 1, state.base[0].resource.version, canary=False)
        before = AUTO_ROLLBACKS.labels("hdr", "analysis")._value.get()
        feeder = asyncio.create_task(_feed(r1, canary, base))
        try:
            with capture_logs() as logs:
                async def decided() -> bool:
                    await r1.health.flush()  # r2 reads r1's numbers from the shared rows
                    await asyncio.gather(r1.controller.analysis_tick(), r2.controller.analysis_tick())
                    return all(app.controller.filters["hdr"].revision.revision != 2  # type: ignore[union-attr]
                               for app in (r1, r2))

                await wait_for(decided, 60, interval=0.3, what="both replicas past revision 2")
                for _ in range(3):  # more rounds change nothing
                    await asyncio.gather(r1.controller.analysis_tick(), r2.controller.analysis_tick())
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        history = await r1.state.history("hdr")
        assert [h.action for h in history] == ["auto-rollback", "deploy", "config"]
        decision = history[0]
        assert decision.details["analysis"]["canary"]["error_rate"] == 1.0
        assert decision.details["analysis"]["baseline"]["error_rate"] == 0.0
        assert decision.author == "system:analysis" and decision.details["from_revision"] == 2
        # Both judged the same interval; the one that lost the compare-and-set says so.
        verdicts = [e["verdict"] for e in logs if e["event"] == "analysis_interval"]
        assert verdicts == ["fail", "fail"], verdicts
        assert [e["event"] for e in logs if e["event"] == "auto_rollback_done_elsewhere"] == [
            "auto_rollback_done_elsewhere"]
        assert [e["event"] for e in logs if e["event"] == "auto_rollback"] == ["auto_rollback"]
        assert AUTO_ROLLBACKS.labels("hdr", "analysis")._value.get() == before + 1
        for app in (r1, r2):
            served = app.controller.filters["hdr"]
            assert served.revision is not None and served.revision.revision == 3 and not served.canary
