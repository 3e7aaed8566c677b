"""LoadGen's summary log (``mlperf_log_summary.txt``) read into a record: latencies, rates, verdict, settings.

LoadGen writes latencies in nanoseconds; the record holds seconds. Its verdict is VALID or INVALID; an
INVALID run lists which of its constraints failed (``Performance constraints satisfied : NO`` is the
latency bound; early stopping, minimum duration and minimum query count are the run's length), and the
record keeps those lines as the reasons, with LoadGen's early-stopping explanation.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from odperf.errors import OdperfError

SUMMARY_FILE = "mlperf_log_summary.txt"
PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
SETTINGS_KEPT = ("samples_per_query", "target_qps", "target_latency (ns)", "min_duration (ms)",
                 "max_duration (ms)", "min_query_count", "max_query_count", "qsl_rng_seed",
                 "sample_index_rng_seed", "schedule_rng_seed", "performance_sample_count")
_LINE = re.compile(r"^\s*([^:*][^:]*?)\s*:\s*(.*?)\s*$")


class SummaryError(OdperfError):
    """LoadGen wrote no summary, or one odperf cannot read."""


@dataclass
class StreamSummary:
    """One LoadGen run as its summary states it. Seconds and camera images per second."""

    scenario: str
    mode: str
    result: str  # VALID | INVALID
    constraints: dict[str, bool]  # e.g. {"Performance constraints": True, "Early stopping": False}
    early_stopping: list[str]  # LoadGen's explanation lines
    latency_s: dict[str, float]  # min, mean, max, p50, p90, p95, p97, p99, p99.9
    achieved_rate: float | None  # images/s completed
    scheduled_rate: float | None  # Server: the Poisson schedule LoadGen issued (images/s)
    settings: dict[str, float]  # the test parameters LoadGen used (durations, query counts, seeds)
    queries: int | None = None  # queries processed, where LoadGen says
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.result == "VALID"

    @property
    def reasons(self) -> list[str]:
        """Why INVALID: each failed constraint, named as LoadGen names it."""
        return [f"{name} not satisfied" for name, ok in self.constraints.items() if not ok]

    @property
    def latency_met(self) -> bool | None:
        """LoadGen's own check of the latency bound at its percentile (Server), None where it has none."""
        return self.constraints.get("Performance constraints")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": self.reasons}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreamSummary":
        return cls(**{k: v for k, v in data.items() if k != "reasons"})


def parse_summary(text: str) -> StreamSummary:
    """The summary's figures; SummaryError naming what is missing when the text is not a LoadGen summary."""
    pairs: dict[str, str] = {}
    constraints: dict[str, bool] = {}
    early: list[str] = []
    in_early = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("Early Stopping Result"):
            in_early = True
            continue
        if in_early:
            if line.startswith(" ") and line.strip():
                early.append(line.strip().lstrip("* "))
                continue
            in_early = False
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).strip(), m.group(2).strip()
        if key.endswith("satisfied"):
            constraints[key[: -len("satisfied")].strip()] = value.lower().startswith("yes")
        else:
            pairs.setdefault(key, value)
    for needed in ("Scenario", "Result is", "Mean latency (ns)"):
        if needed not in pairs:
            raise SummaryError(f"LoadGen summary without {needed!r}: not a complete mlperf_log_summary.txt")
    latency = {"min": _ns(pairs, "Min latency (ns)"), "mean": _ns(pairs, "Mean latency (ns)"),
               "max": _ns(pairs, "Max latency (ns)")}
    for p in PERCENTILES:
        value = _ns(pairs, f"{p} percentile latency (ns)")
        if value is not None:
            latency[f"p{p.rstrip('0').rstrip('.')}"] = value
    scenario = pairs["Scenario"]
    settings = {k: float(pairs[k]) for k in SETTINGS_KEPT if k in pairs and _number(pairs[k])}
    achieved = _float(pairs.get("Completed samples per second") or pairs.get("Samples per second")
                      or pairs.get("QPS w/ loadgen overhead"))
    if achieved is None and scenario == "MultiStream" and latency["mean"]:
        achieved = settings.get("samples_per_query", 1.0) / latency["mean"]  # back-to-back queries
    processed = next((int(m.group(1)) for ln in early for m in [re.search(r"[Pp]rocessed (?:at least \d+ queries \()?(\d+)", ln)] if m), None)
    return StreamSummary(
        scenario=scenario,
        mode=pairs.get("Mode", ""),
        result=pairs["Result is"].split()[0],
        constraints=constraints,
        early_stopping=early,
        latency_s={k: v for k, v in latency.items() if v is not None},
        achieved_rate=achieved,
        scheduled_rate=_float(pairs.get("Scheduled samples per second")),
        settings=settings,
        queries=processed,
    )


def read_summary(log_dir: str | Path) -> StreamSummary:
    path = Path(log_dir) / SUMMARY_FILE
    if not path.is_file():
        raise SummaryError(f"{path}: LoadGen wrote no summary (did the run start? see the detail log beside it)")
    return parse_summary(path.read_text(encoding="utf-8", errors="replace"))


def _number(text: str) -> bool:
    return _float(text) is not None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _ns(pairs: dict[str, str], key: str) -> float | None:
    value = _float(pairs.get(key))
    return value / 1e9 if value is not None else None
