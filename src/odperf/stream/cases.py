"""Running a case's scenarios: one worker per (model, device, batch size), kept across its scenarios.

Starting a worker (runtime import, model load, warm-up) costs several seconds; the scenarios of one case
share it, so the streaming pass spends its time streaming. A worker that dies (out of memory, crash,
hang) ends that scenario as a failure record; the next scenario starts a fresh worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from odperf.engine.client import WorkerFailed
from odperf.engine.request import MeasureRequest
from odperf.stream.line import Line, capacity, find_peak, holds
from odperf.stream.session import StreamRun, StreamSession
from odperf.stream.settings import (
    MULTI_STREAM, OFFLINE, PEAK, SCENARIOS, SERVER, SINGLE_STREAM, Budget, StreamSettings,
)
from odperf.workload import PAPER_CAR

IMPLIED_RATE_IMAGES = 3  # images timed one at a time for the rate a model's time per image implies


@dataclass(frozen=True)
class StreamPlan:
    """What the streaming pass runs: scenarios, budget, prefetch, and where LoadGen's logs go."""

    scenarios: tuple[str, ...]
    budget: Budget
    log_root: Path
    prefetch: bool = False
    cameras: int = PAPER_CAR.cameras  # MultiStream: images per query, one per camera of the line
    seed: int = 0


@dataclass
class ScenarioResult:
    """One scenario of a case: the block its record saves (``block``), and its runs."""

    scenario: str
    block: dict[str, Any]
    runs: list[StreamRun] = field(default_factory=list)
    failure: WorkerFailed | None = None
    skipped: str | None = None  # why the scenario could not run (no line to hold)

    @property
    def memory_run(self) -> StreamRun | None:
        """The run whose memory the record shows: the longest."""
        return max(self.runs, key=lambda r: r.wall_s, default=None)


class StreamRunner:
    """Runs scenarios case by case; the worker of the current case is reused until the case changes."""

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan
        self.session: StreamSession | None = None
        self._key: Any = None
        self._time_per_image: float | None = None
        self._failed_start: WorkerFailed | None = None

    def __enter__(self) -> "StreamRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.session, self._key, self._time_per_image = None, None, None

    def warm(self, key: Any, request: MeasureRequest) -> None:
        """Start the case's worker and time its images, outside any timed round (a failure is kept for ``run``)."""
        try:
            self.time_per_image(self._session(key, request))
        except WorkerFailed as failure:
            self._failed_start = failure
            self.close()

    def run(self, key: Any, request: MeasureRequest, scenario: str, line: Line | None, name: str) -> ScenarioResult:
        """Scenario ``scenario`` of the case ``key`` (any hashable naming it), its logs under ``name``."""
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
        result = ScenarioResult(scenario=scenario, block={"scenario": scenario, "budget": self.plan.budget.name,
                                                          "prefetch": self.plan.prefetch})
        if scenario in (SERVER, PEAK) and line is None:
            result.skipped = (f"no line for the {scenario} scenario: give the device profile a car_interval_s "
                              f"(or a rule a line_rate) and the case a tail_latency_s or deadline_image_s in "
                              f"the expectations file")
            return result
        try:
            if self._failed_start is not None:
                failure, self._failed_start = self._failed_start, None
                raise failure
            session = self._session(key, request)
            self._scenario(session, result, line, self.plan.log_root / name)
        except WorkerFailed as failure:
            result.failure = failure
            self.close()  # the next scenario gets a fresh worker
        return result

    def _session(self, key: Any, request: MeasureRequest) -> StreamSession:
        if self.session is None or key != self._key:
            self.close()
            self.session = StreamSession(replace(request, images=self.plan.budget.qsl_images))
            self._key = key
            self.session.start()
        return self.session

    def time_per_image(self, session: StreamSession) -> float:
        """Seconds per image at the case's batch size through the stream's own path: the fastest of a few
        SingleStream queries, one image at a time (the one least disturbed by other work), cached per
        worker. It sizes LoadGen's runs and bounds the rates a stream can hold (odperf.stream.line). Timed
        through the worker's ``run`` command instead, a PyTorch model under CPU contention measured 2-3x
        slower than its own stream latencies: the bound must come from the path it bounds."""
        if self._time_per_image is None:
            budget = replace(self.plan.budget, min_duration_s=0.0, min_queries=IMPLIED_RATE_IMAGES)
            run = session.stream(StreamSettings(scenario=SINGLE_STREAM, budget=budget, seed=self.plan.seed,
                                                prefetch=self.plan.prefetch),
                                 self.plan.log_root / "time-per-image")
            fastest = run.summary.latency_s.get("min")
            self._time_per_image = fastest if fastest else min(session.image_times(IMPLIED_RATE_IMAGES))
        return self._time_per_image

    def _scenario(self, session: StreamSession, result: ScenarioResult, line: Line | None, log_dir: Path) -> None:
        plan, block = self.plan, result.block
        per_image = self.time_per_image(session)
        block["time_per_image_s"] = per_image
        block["implied_rate"] = 1.0 / per_image
        base = StreamSettings(scenario=SINGLE_STREAM, budget=plan.budget, expected_latency_s=per_image,
                              seed=plan.seed, prefetch=plan.prefetch)
        if result.scenario in (SERVER, PEAK):
            assert line is not None  # run() refuses these scenarios without a line
            block["line"] = line.to_dict()
            server = replace(base, scenario=SERVER, target_rate=line.rate, latency_bound_s=line.deadline_s,
                             latency_percentile=line.percentile)
        if result.scenario == SINGLE_STREAM:
            run = session.stream(base, log_dir)
        elif result.scenario == MULTI_STREAM:
            run = session.stream(replace(base, scenario=MULTI_STREAM, samples_per_query=plan.cameras,
                                         expected_latency_s=per_image * plan.cameras), log_dir)
        elif result.scenario == OFFLINE:
            run = session.stream(replace(base, scenario=OFFLINE, target_rate=1.0 / per_image), log_dir)
            block["tiles_per_s"] = (run.summary.achieved_rate or 0.0) * session.request.tiles_per_image
        elif result.scenario == SERVER:
            run = session.stream(server.at_rate(line.rate), log_dir)
            block["holds_line"] = holds(run.summary.latency_s, line.deadline_s, line.percentile, line.rate,
                                        1.0 / per_image)
            block["line_within_throughput"] = line.rate <= 1.0 / per_image
        else:
            steps: list[StreamRun] = []

            def run_at(rate: float) -> StreamRun:
                steps.append(session.stream(server.at_rate(rate), log_dir / f"rate-{rate:.4g}"))
                return steps[-1]

            peak = find_peak(run_at, 1.0 / per_image, line.deadline_s, plan.budget.peak_steps, line.percentile)
            block["peak"] = peak.to_dict()
            block["capacity"] = capacity(peak.rate, line).to_dict() if peak.rate else None
            result.runs.extend(steps)
            held = [s for s in steps if s.settings.target_rate == peak.rate]
            run = held[0] if held else steps[-1]
            block["log_dir"] = str(log_dir)
        if result.scenario != PEAK:
            result.runs.append(run)
            block["log_dir"] = run.log_dir
        block.update(summary=run.summary.to_dict(), settings=run.settings.to_dict(), wall_s=run.wall_s,
                     batches=run.batches, model_s=run.model_s,
                     memory_slope_mb_per_min=run.memory_slope_mb_per_min)


def line_for(expectation: Any, car_interval_s: float | None) -> Line | None:
    """The case's line from its expectations: the rate (``line_rate``, else 95 images per car interval) and
    the deadline (``tail_latency_s``, else ``deadline_image_s``); None where either is unknown."""
    deadline = expectation.tail_latency_s or expectation.deadline_image_s
    if expectation.line_rate:
        car_interval_s = PAPER_CAR.images / expectation.line_rate  # the interval between cars at that rate
    if deadline is None or not car_interval_s:
        return None
    return Line(car_interval_s=car_interval_s, deadline_s=deadline)
