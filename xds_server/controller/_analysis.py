"""Health-gated rollouts: per revision, a small state machine driven by an interval
timer decides, from the proxies' telemetry, to promote a canary or roll a filter back
(`analysis`), or rolls back a filter that fails at run time (`on_runtime_failure`).

Flagger-like. A revision with `analysis` is `progressing`; each interval ends as
`pass`, `fail` or `inconclusive` (fewer than `min_requests` requests: neither). One
failing interval -> `rolling-back` -> `rolled-back`; `intervals` passing intervals in a
row -> `promoting` -> `promoted` (with a canary) or `verified` (without one: the
analysis ends). A decision is a compare-and-set on the revision analysed, so however
many replicas decide at once it is recorded once; the others find the filter moved on.

Health is read through `HealthReader` only (the telemetry package's `HealthWindows`
satisfies it): this module never imports telemetry.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from xds_server.config import AnalysisSpec
from xds_server.controller._changes import Changes
from xds_server.controller._context import Context
from xds_server.controller._debug import DebugOverrides
from xds_server.controller._metrics import AUTO_PROMOTIONS, AUTO_ROLLBACKS
from xds_server.controller._model import FilterError, FilterState
from xds_server.state import Revision

log = structlog.get_logger("xds_server.controller")

AUTHOR = "system:analysis"
RUNTIME_AUTHOR = "system:on_runtime_failure"
_NOT_ANALYSED = ("rollback", "auto-rollback", "promote", "auto-promote", "debug", "debug-end")
"""Actions whose revisions carry content already judged: no analysis without a canary."""
_FAILING_SECONDS = 60.0


class HealthNumbers(Protocol):
    """Fleet-wide numbers of a filter over an interval (`HealthTotals` satisfies it)."""

    @property
    def requests(self) -> int: ...
    @property
    def errors_5xx(self) -> int: ...
    @property
    def vm_failures(self) -> int: ...
    @property
    def vm_reloads(self) -> int: ...


class HealthReader(Protocol):
    """What the analysis reads: `HealthWindows.totals` and `.failing`. Both read shared
    state (every replica's telemetry); both may raise on a store error."""

    async def totals(self, filter_name: str, *, revision: int | None = None, canary: bool | None = None,
                     since: float, until: float | None = None) -> HealthNumbers:
        """Numbers over the health buckets starting in [since, until)."""
        ...

    async def failing(self, filter_name: str, revision: int, *, since: float | None = None) -> bool:
        """Did a proxy running `revision` report a wasm VM failure since `since`?"""
        ...


@dataclass(frozen=True, slots=True)
class Rates:
    """One side's numbers over an interval. `errors` is the larger of 5xx responses and
    wasm VM failures (a request the VM failed is a 5xx already: not counted twice)."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        """`errors / requests`, at most 1 (0.0 without requests)."""
        return min(1.0, self.errors / self.requests) if self.requests else 0.0

    @classmethod
    def of(cls, t: HealthNumbers) -> Rates:
        """From health totals."""
        return cls(requests=t.requests, errors=max(t.errors_5xx, t.vm_failures))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 4)}


@dataclass(frozen=True, slots=True)
class IntervalResult:
    """One evaluated interval [start, end): the revision's (canary side's) numbers, the
    baseline's (with a canary), and the verdict: pass, fail or inconclusive."""

    start: float
    end: float
    canary: Rates
    baseline: Rates | None
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """JSON form (also recorded in the revision that a decision makes)."""
        return {"start": self.start, "end": self.end, "seconds": self.end - self.start,
                "canary": self.canary.to_dict(),
                "baseline": self.baseline.to_dict() if self.baseline is not None else None,
                "verdict": self.verdict}


@dataclass(slots=True)
class RunState:
    """The analysis of one revision of one filter (this replica's view)."""

    filter: str
    revision: int
    canary: bool
    spec: AnalysisSpec
    width: float
    next_start: float
    phase: str = "progressing"
    passed: int = 0
    evaluated: int = 0
    last: IntervalResult | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The live view in `GET /api/v1/filters/{name}` (`analysis`)."""
        return {
            "revision": self.revision, "canary": self.canary, "phase": self.phase,
            "interval": self.passed, "intervals": self.spec.intervals, "evaluated": self.evaluated,
            "interval_seconds": self.width, "min_requests": self.spec.min_requests,
            "max_error_rate": self.spec.max_error_rate,
            "next_decision_at": self.next_start + self.width if self.phase == "progressing" else None,
            "last": self.last.to_dict() if self.last is not None else None,
        }


def verdict(spec: AnalysisSpec, canary: Rates, baseline: Rates | None) -> str:
    """The rule: fewer than `min_requests` -> inconclusive; an error rate above
    `max_error_rate` and above the baseline's (when there is one) -> fail; else pass."""
    if canary.requests < spec.min_requests:
        return "inconclusive"
    rate = canary.error_rate
    if rate > spec.max_error_rate and (baseline is None or rate > baseline.error_rate):
        return "fail"
    return "pass"


class Analysis:
    """Runs every filter's analysis, runtime-failure policy and debug expiry on a timer.

    `attach(health, ...)` gives it the health to read; `run()` loops until cancelled;
    `tick()` is one round.
    `view(name)` is the live state of a filter's analysis. Intervals are aligned to
    multiples of their width (the interval rounded up to whole health buckets), the
    same on every replica; an interval is evaluated `settle` seconds after it ends, so
    telemetry still in flight (Envoy's log buffer, other replicas' flushes) counts.
    """

    def __init__(self, ctx: Context, changes: Changes, debug: DebugOverrides) -> None:
        self.ctx = ctx
        self.changes = changes
        self.debug = debug
        self.health: HealthReader | None = None
        self.bucket_seconds = 10
        self.settle = 3.0
        self.clock: Callable[[], float] = time.time
        self._runs: dict[str, RunState] = {}
        self._acted: dict[str, int] = {}  # filter -> revision the runtime policy acted on

    def view(self, name: str) -> dict[str, Any] | None:
        """The analysis of the filter's current revision; else the last one that ended
        (rolled back, promoted, verified: it shows what decided); else None."""
        state = self.ctx.filters.get(name)
        run = self._runs.get(name)
        if run is None or state is None or state.revision is None:
            return None
        if run.revision != state.revision.revision and run.phase == "progressing":
            return None
        return run.to_dict()

    def attach(self, health: HealthReader, *, bucket_seconds: int = 10, settle: float = 3.0) -> None:
        """Read health from `health`, whose buckets are `bucket_seconds` wide; evaluate
        an interval `settle` seconds after it ends. Without it only debug expiry runs."""
        self.health, self.bucket_seconds, self.settle = health, bucket_seconds, settle

    async def run(self, tick: float = 1.0) -> None:
        """Tick every `tick` seconds until cancelled; errors are logged, never raised."""
        while True:
            await asyncio.sleep(tick)
            await self.tick()

    async def tick(self) -> None:
        """One round over every served filter (each filter's error logged apart)."""
        now = self.clock()
        for name, state in list(self.ctx.filters.items()):
            rev = state.revision
            if rev is None or not state.deployed:
                continue
            try:
                if rev.action == "debug":
                    await self.debug.expire_if_due(name, rev, now)
                    continue
                spec = next((d.spec.analysis for d in state.deployed if d.spec.analysis is not None), None)
                if spec is not None and self.health is not None:
                    await self._analyze(state, rev, spec, now)
                elif self.health is not None and any(
                        d.spec.on_runtime_failure == "rollback" for d in state.deployed):
                    await self._runtime(state, rev, now)
            except Exception as exc:  # the store may be away: try again next tick
                log.warning("analysis_failed", filter=name, revision=rev.revision, error=str(exc))

    # -- analysis ---------------------------------------------------------------------

    def _run_for(self, state: FilterState, rev: Revision, spec: AnalysisSpec) -> RunState | None:
        run = self._runs.get(state.name)
        if run is not None and run.revision == rev.revision:
            return run
        if not state.canary and rev.action in _NOT_ANALYSED:
            return None
        step = max(1, self.bucket_seconds)
        width = math.ceil(spec.interval / step) * step
        run = RunState(filter=state.name, revision=rev.revision, canary=state.canary, spec=spec, width=width,
                       next_start=math.ceil(rev.created_at / width) * width)
        self._runs[state.name] = run
        log.info("analysis_started", filter=state.name, revision=rev.revision, canary=state.canary,
                 interval_seconds=width, intervals=spec.intervals, min_requests=spec.min_requests,
                 max_error_rate=spec.max_error_rate)
        return run

    async def _analyze(self, state: FilterState, rev: Revision, spec: AnalysisSpec, now: float) -> None:
        run = self._run_for(state, rev, spec)
        assert self.health is not None
        while run is not None and run.phase == "progressing" and now >= run.next_start + run.width + self.settle:
            start, end = run.next_start, run.next_start + run.width
            run.next_start = end
            canary = Rates.of(await self.health.totals(state.name, revision=rev.revision,
                                                       canary=True if run.canary else None,
                                                       since=start, until=end))
            baseline = Rates.of(await self.health.totals(state.name, canary=False, since=start, until=end)) \
                if run.canary else None
            result = IntervalResult(start, end, canary, baseline, verdict(spec, canary, baseline))
            run.last, run.evaluated = result, run.evaluated + 1
            log.info("analysis_interval", filter=state.name, revision=rev.revision, verdict=result.verdict,
                     canary_requests=canary.requests, canary_error_rate=round(canary.error_rate, 4),
                     baseline_requests=baseline.requests if baseline else None,
                     baseline_error_rate=round(baseline.error_rate, 4) if baseline else None,
                     passed=run.passed + (result.verdict == "pass"), intervals=spec.intervals)
            if result.verdict == "fail":
                await self._roll_back(state, rev, run, result)
            elif result.verdict == "pass":
                run.passed += 1
                if run.passed >= spec.intervals:
                    await self._promote(state, rev, run, result)

    def _numbers(self, run: RunState, result: IntervalResult) -> dict[str, Any]:
        return {"analysis": {**result.to_dict(), "revision": run.revision, "passed": run.passed,
                             "intervals": run.spec.intervals, "min_requests": run.spec.min_requests,
                             "max_error_rate": run.spec.max_error_rate}}

    async def _roll_back(self, state: FilterState, rev: Revision, run: RunState, result: IntervalResult) -> None:
        run.phase = "rolling-back"
        c, b = result.canary, result.baseline
        reason = (f"analysis of revision {rev.revision}: error rate {c.error_rate:.3f} "
                  f"({c.errors}/{c.requests} requests) > max {run.spec.max_error_rate:g}"
                  + (f" and > baseline {b.error_rate:.3f} ({b.errors}/{b.requests})" if b is not None else "")
                  + f" over {result.end - result.start:g}s")
        target = rev.base_revision if run.canary else await self.last_good(state.name, rev)
        done = await self._decide_rollback(state.name, rev, target, reason, self._numbers(run, result),
                                           author=AUTHOR, cause="analysis")
        run.phase = "rolled-back" if done else "failed"

    async def _promote(self, state: FilterState, rev: Revision, run: RunState, result: IntervalResult) -> None:
        if not run.canary:
            run.phase = "verified"
            log.info("analysis_verified", filter=state.name, revision=rev.revision, intervals=run.passed)
            return
        run.phase = "promoting"
        c, b = result.canary, result.baseline
        summary = (f"auto-promote of revision {rev.revision}: {run.passed} passing intervals of "
                   f"{result.end - result.start:g}s; last: error rate {c.error_rate:.3f} "
                   f"({c.errors}/{c.requests} requests), baseline "
                   f"{b.error_rate if b else 0.0:.3f} ({b.errors if b else 0}/{b.requests if b else 0})")
        try:
            await self.changes.promote(state.name, author=AUTHOR, action="auto-promote", summary=summary,
                                       expect_revision=rev.revision, details=self._numbers(run, result))
        except FilterError as exc:
            run.phase = "promoted" if exc.status == 409 else "failed"
            log.info("auto_promote_done_elsewhere" if exc.status == 409 else "auto_promote_failed",
                     filter=state.name, revision=rev.revision, error=exc.message)
            return
        run.phase = "promoted"
        AUTO_PROMOTIONS.labels(state.name).inc()
        log.warning("auto_promote", filter=state.name, revision=rev.revision, intervals=run.passed,
                    interval_seconds=result.end - result.start, canary_requests=c.requests,
                    canary_error_rate=round(c.error_rate, 4),
                    baseline_requests=b.requests if b else None,
                    baseline_error_rate=round(b.error_rate, 4) if b else None)

    # -- runtime failure --------------------------------------------------------------

    async def _runtime(self, state: FilterState, rev: Revision, now: float) -> None:
        assert self.health is not None
        if self._acted.get(state.name) == rev.revision:
            return
        since = max(rev.created_at, now - _FAILING_SECONDS)
        if not await self.health.failing(state.name, rev.revision, since=since):
            return
        t = await self.health.totals(state.name, revision=rev.revision, since=since)
        reason = (f"revision {rev.revision} fails at run time: {t.vm_failures} wasm VM failures, "
                  f"{t.vm_reloads} VM reloads, {t.errors_5xx} 5xx of {t.requests} requests "
                  f"since {since - rev.created_at:.0f}s after it was deployed")
        details = {"runtime_failure": {"revision": rev.revision, "since": since, "until": now,
                                       "requests": t.requests, "errors_5xx": t.errors_5xx,
                                       "vm_failures": t.vm_failures, "vm_reloads": t.vm_reloads}}
        target = rev.base_revision if state.canary else await self.last_good(state.name, rev)
        self._acted[state.name] = rev.revision  # once per revision, whatever the outcome
        await self._decide_rollback(state.name, rev, target, reason, details,
                                    author=RUNTIME_AUTHOR, cause="runtime_failure")

    # -- shared -----------------------------------------------------------------------

    async def last_good(self, name: str, bad: Revision) -> int | None:
        """The newest earlier revision with other content that no automatic rollback
        left, and that is neither a canary nor a debug override."""
        history = await self.ctx.state.history(name, limit=1000)
        failed = set()
        for r in history:
            left = _from_revision(r, history) if r.action == "auto-rollback" else None
            if left is not None:
                failed.add(tuple(left.versions))
        for r in history:
            if (r.revision < bad.revision and not r.deleted and r.versions != bad.versions
                    and tuple(r.versions) not in failed and r.action != "debug"
                    and not any(s.get("canary") for s in r.specs)):
                return r.revision
        return None

    async def _decide_rollback(self, name: str, bad: Revision, target: int | None, reason: str,
                               details: dict[str, Any], *, author: str, cause: str) -> bool:
        """Roll back once fleet-wide (compare-and-set on `bad`); True when it is done
        (here or by another replica)."""
        if target is None or target >= bad.revision:
            log.error("auto_rollback_impossible", filter=name, revision=bad.revision, reason=reason,
                      why="no earlier good revision")
            return False
        try:
            await self.changes.rollback(name, author=author, to=target, action="auto-rollback",
                                        reason=reason, expect_revision=bad.revision,
                                        details={**details, "from_revision": bad.revision, "cause": cause})
        except FilterError as exc:
            if exc.status == 409:
                log.info("auto_rollback_done_elsewhere", filter=name, from_revision=bad.revision)
                return True
            log.error("auto_rollback_failed", filter=name, from_revision=bad.revision, error=exc.message)
            return False
        AUTO_ROLLBACKS.labels(name, cause).inc()
        log.warning("auto_rollback", filter=name, from_revision=bad.revision, to_revision=target,
                    cause=cause, reason=reason, **_flat(details))
        return True


def _from_revision(rollback: Revision, history: list[Revision]) -> Revision | None:
    """The revision an automatic rollback left (recorded in its details, else the one
    before it)."""
    number = rollback.details.get("from_revision", rollback.revision - 1)
    return next((r for r in history if r.revision == number), None)


def _flat(details: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a decision as flat log context."""
    out: dict[str, Any] = {}
    for value in details.values():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    out.update({f"{k}_{kk}": vv for kk, vv in v.items()})
                else:
                    out[k] = v
    return out
