"""The streaming pass's plan from its options: scenarios, budget, prefetch and LoadGen's log folder."""

from __future__ import annotations

from pathlib import Path

from odperf.errors import OdperfError
from odperf.util.atomic import check_folder
from odperf.stream.cases import StreamPlan
from odperf.stream.settings import SCENARIOS, budget_named

DEFAULT_LOGS = Path(".benchmarks") / "loadgen"


def check_logs(plan: StreamPlan) -> None:
    """The log folder exists (created) and takes files, before the first worker starts."""
    check_folder(plan.log_root, "LoadGen log folder (--odperf-stream-logs)", create=True,
                 fix="give --odperf-stream-logs=DIR a writable folder")


class StreamOptionError(OdperfError):
    """A streaming option odperf cannot use."""


def parse_scenarios(text: str) -> tuple[str, ...]:
    names = [s.strip().lower() for s in (text or "").split(",") if s.strip()]
    if names in ([], ["all"]):
        return SCENARIOS
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise StreamOptionError(f"--odperf-stream-scenarios: unknown scenario(s) {', '.join(unknown)}; "
                                f"choose from {', '.join(SCENARIOS)} or all")
    return tuple(dict.fromkeys(names))


def log_root(logs: str | None, benchmark_json: str | None) -> Path:
    """LoadGen's logs go beside the saved JSON (``<json stem>-loadgen/``) unless given a folder."""
    if logs:
        return Path(logs)
    if benchmark_json:
        p = Path(benchmark_json)
        return p.parent / f"{p.stem}-loadgen"
    return DEFAULT_LOGS


def plan_from_options(scenarios: str, budget: str, prefetch: bool, logs: str | None,
                      benchmark_json: str | None, seed: int = 0) -> StreamPlan:
    try:
        chosen = budget_named(budget)
    except OdperfError as exc:
        raise StreamOptionError(f"--odperf-stream-budget: {exc}") from None
    root = log_root(logs, benchmark_json)
    return StreamPlan(scenarios=parse_scenarios(scenarios), budget=chosen, log_root=root, prefetch=bool(prefetch),
                      seed=seed)
