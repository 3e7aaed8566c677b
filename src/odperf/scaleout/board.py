"""What a cluster run says while it runs (a line per shard as it moves) and at its end (a line per profile).

Shards report to a ``Board``, a small Ray actor on the driver's node; the driver polls it. Each start of a
shard (its first attempt or a retry after its node or worker was lost) is kept with its node and time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from statistics import mean
from typing import Any

from odperf.results import OUTCOMES
from odperf.scaleout.gather import ProfileRun
from odperf.scaleout.shards import Shard


PREFIX = "odperf bench --ray"


class Board:
    """Ray actor: each shard's latest state, and every attempt's start (node, time)."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, Any]] = {}
        self.attempts: dict[int, list[dict[str, Any]]] = {}

    def update(self, index: int, state: dict[str, Any]) -> None:
        before = self.states.get(index)
        if before is None or before["started"] != state["started"]:
            self.attempts.setdefault(index, []).append({"node": state["node"], "started": state["started"]})
        self.states[index] = state

    def snapshot(self) -> dict[str, Any]:
        return {"states": self.states, "attempts": self.attempts}


def shard_line(shard: Shard, state: dict[str, Any], attempts: int, all_durations: list[float]) -> str:
    """``#2 centernet_tiny b1,8 on cpu: node h/1a2b3c4d, 1/2 cases, now centernet_tiny-b8-cpu, ETA 9 s``."""
    done, total = state["done"], state["total"]
    times = state["durations"] or all_durations
    left = total - done
    eta = f"ETA {mean(times) * left:.0f} s" if times and left else ("done" if not left else "ETA unknown")
    now = f", now {state['current']}" if state.get("current") else ""
    retry = f" (attempt {attempts})" if attempts > 1 else ""
    return f"{PREFIX}: {shard.label}: node {state['node']}{retry}, {done}/{total} cases{now}, {eta}"


@dataclass
class Summary:
    """The end of a cluster run: per profile, its outcomes, wall time and GPU-hours."""

    wall_s: float
    runs: list[ProfileRun]
    profile_wall_s: dict[str, float] = field(default_factory=dict)  # run start -> its last shard back
    cancelled: list[Shard] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for run in self.runs:
            counts = dict.fromkeys((*OUTCOMES, "skipped"), 0)
            for shard, result in run.returned:
                for outcome in _record_outcomes(result):
                    counts[outcome] += 1
                counts["skipped"] += sum(o == "skipped" for o in result.outcomes.values())
            counts["crash"] += sum(len(s.batch_sizes) for s, _ in run.failed)
            gpu_s = sum(r.seconds for s, r in run.returned if s.profile.gpu)
            text = " / ".join(f"{n} {o}" for o, n in counts.items())
            out.append(f"{PREFIX}: {run.profile}: {text}; wall {self.profile_wall_s.get(run.profile, self.wall_s):.1f} s, "
                       f"{gpu_s / 3600:.3f} GPU-hours" + (f"; file {run.path}" if run.path else ""))
        own = sum(r.seconds for run in self.runs for _, r in run.returned)
        out.append(f"{PREFIX}: the whole run took {self.wall_s:.1f} s of wall time; its shards' own "
                   f"times add up to {own:.1f} s")
        for run in self.runs:
            for shard, result in run.returned:
                out.extend(f"{PREFIX}: {run.profile}: {case} skipped: {why}" for case, why in result.skip_reasons.items())
        if self.cancelled:
            out.append(f"{PREFIX}: {len(self.cancelled)} shard(s) cancelled, their cases not measured: "
                       + "; ".join(s.label for s in self.cancelled))
        return out


def _record_outcomes(result: Any) -> list[str]:
    if not result.json_text:
        return []
    return [r.get("outcome", "ok") for r in json.loads(result.json_text).get("odperf", {}).get("records", [])]
