"""What one LoadGen run asks for: the scenario, the rate or latency bound, and how long it runs.

LoadGen's own minimums (MLPerf: 10 minutes and thousands of queries per run) would take hours over the
embedded models on a small CPU. A ``Budget`` sets the minimum duration and query counts instead; the
``mlperf`` budget keeps LoadGen's defaults for runs that must meet MLPerf's rules. A short run of the
Server scenario at the 99th percentile is INVALID by LoadGen's early-stopping rule (it needs about 460
queries, all within the bound, to vouch for the 99th percentile); the line's verdict is then odperf's
reading of the measured percentile, recorded beside LoadGen's own verdict and reasons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from odperf.errors import WorkloadError

SINGLE_STREAM = "single_stream"
MULTI_STREAM = "multi_stream"
SERVER = "server"
OFFLINE = "offline"
PEAK = "peak"  # a search over the Server rate: the highest rate held within the deadline
SCENARIOS: tuple[str, ...] = (SINGLE_STREAM, MULTI_STREAM, SERVER, OFFLINE, PEAK)
LOADGEN_SCENARIOS = {SINGLE_STREAM: "SingleStream", MULTI_STREAM: "MultiStream", SERVER: "Server",
                     OFFLINE: "Offline"}


@dataclass(frozen=True)
class Budget:
    """How long each LoadGen run lasts: at least ``min_duration_s`` and ``min_queries`` queries.

    ``None`` keeps LoadGen's (MLPerf's) defaults. ``offline_images`` is the Offline query's size (a car
    is 95); ``peak_steps`` the Server runs of the peak search; ``qsl_images`` the camera images held in
    memory, which LoadGen's queries draw from."""

    name: str
    min_duration_s: float | None
    min_queries: int | None
    max_duration_s: float | None
    offline_images: int
    peak_steps: int
    multi_queries: int | None = None  # MultiStream queries (each one image per camera); None: min_queries
    qsl_images: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUDGETS: dict[str, Budget] = {
    # The main job: all five embedded models within 6 minutes on a 2-core CPU.
    "quick": Budget("quick", min_duration_s=3.0, min_queries=3, max_duration_s=60.0, offline_images=6,
                    peak_steps=3, multi_queries=2),
    # CI: every scenario once, as short as LoadGen allows a meaningful percentile.
    "smoke": Budget("smoke", min_duration_s=1.0, min_queries=3, max_duration_s=30.0, offline_images=4,
                    peak_steps=2, multi_queries=2, qsl_images=4),
    # MLPerf's own durations and query counts (LoadGen's defaults): hours on a CPU, for real hardware.
    "mlperf": Budget("mlperf", min_duration_s=None, min_queries=None, max_duration_s=None, offline_images=95,
                     peak_steps=6, qsl_images=32),
}


def budget_named(name: str) -> Budget:
    try:
        return BUDGETS[name]
    except KeyError:
        raise WorkloadError(f"stream budget must be one of {', '.join(BUDGETS)}, got {name!r}") from None


@dataclass(frozen=True)
class StreamSettings:
    """One LoadGen run in PerformanceOnly mode. Rates are camera images per second, latencies seconds."""

    scenario: str  # one of LOADGEN_SCENARIOS
    budget: Budget
    target_rate: float | None = None  # Server: Poisson arrivals at this rate; Offline: LoadGen's expected rate
    latency_bound_s: float | None = None  # Server: the per-image deadline at ``latency_percentile``
    latency_percentile: float = 0.99
    samples_per_query: int = 1  # MultiStream: the line's cameras, one image each; Offline: set by the budget
    expected_latency_s: float | None = None  # SingleStream/MultiStream: LoadGen's estimate to size the run
    seed: int = 0  # LoadGen's three seeds (query library, sample index, schedule)
    prefetch: bool = False  # host work of the next batch overlaps the model's run (see runner)

    def __post_init__(self) -> None:
        if self.scenario not in LOADGEN_SCENARIOS:
            raise WorkloadError(f"scenario must be one of {', '.join(LOADGEN_SCENARIOS)}, got {self.scenario!r}")
        if self.scenario == SERVER and not (self.target_rate and self.target_rate > 0 and self.latency_bound_s):
            raise WorkloadError("the Server scenario needs a positive target_rate (images/s) and a latency_bound_s")
        if not 0 < self.latency_percentile < 1:
            raise WorkloadError(f"latency_percentile must lie in (0, 1), got {self.latency_percentile!r}")
        if self.samples_per_query < 1:
            raise WorkloadError(f"samples_per_query must be >= 1, got {self.samples_per_query!r}")

    def at_rate(self, rate: float) -> "StreamSettings":
        return replace(self, target_rate=float(rate))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (getattr(self, f.name).to_dict() if f.name == "budget" else getattr(self, f.name))
                for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSettings":
        return cls(**{**data, "budget": Budget(**data["budget"])})

    def loadgen(self, lg: Any) -> Any:
        """LoadGen's TestSettings for this run (``lg`` is the mlperf_loadgen module, imported by the caller)."""
        ts = lg.TestSettings()
        ts.scenario = getattr(lg.TestScenario, LOADGEN_SCENARIOS[self.scenario])
        ts.mode = lg.TestMode.PerformanceOnly
        b = self.budget
        if b.min_duration_s is not None:
            ts.min_duration_ms = int(b.min_duration_s * 1000)
        if b.max_duration_s is not None:
            ts.max_duration_ms = int(b.max_duration_s * 1000)
        if b.min_queries is not None:
            ts.min_query_count = b.min_queries
        ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = self.seed
        expected_ns = int((self.expected_latency_s or 0.1) * 1e9)
        if self.scenario == SINGLE_STREAM:
            ts.single_stream_expected_latency_ns = expected_ns
            ts.single_stream_target_latency_percentile = self.latency_percentile
        elif self.scenario == MULTI_STREAM:
            ts.multi_stream_samples_per_query = self.samples_per_query
            ts.multi_stream_expected_latency_ns = expected_ns
            ts.multi_stream_target_latency_percentile = self.latency_percentile
            if b.multi_queries is not None:
                ts.min_query_count = b.multi_queries
        elif self.scenario == SERVER:
            ts.server_target_qps = float(self.target_rate)
            ts.server_target_latency_ns = int(float(self.latency_bound_s) * 1e9)
            ts.server_target_latency_percentile = self.latency_percentile
        else:  # Offline: one query of offline_images samples (LoadGen: min_query_count samples, no duration)
            ts.offline_expected_qps = float(self.target_rate or 1.0)
            if b.min_duration_s is not None:
                ts.min_duration_ms = 0
                ts.min_query_count = b.offline_images
                ts.offline_expected_qps = 1e-3  # no duration floor: the query is offline_images samples
        return ts
