"""A stream scenario's results record, and what its expectations ask of it.

The record is a ``RunRecord`` of kind ``stream`` (odperf.results): the case's usual fields (model,
device, batch size, runtime, outcome, memory) and a ``stream`` block with the scenario, LoadGen's summary
(latency min, mean, max and percentiles, achieved and scheduled rate, VALID/INVALID and why, the settings
it used), the line and whether it held, the peak search and capacity, the memory slope after warm-up and
where LoadGen's logs are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from odperf.results import RunRecord
from odperf.stream.cases import ScenarioResult


def fill_record(record: RunRecord, result: ScenarioResult, relative_to: Path | None = None) -> RunRecord:
    """``record`` (kind stream, made from the worker's measurement) completed with the scenario's block;
    log paths are kept relative to ``relative_to`` (the saved JSON's folder) so that they move with it."""
    block = dict(result.block)
    if relative_to is not None and block.get("log_dir"):
        block["log_dir"] = os.path.relpath(Path(block["log_dir"]).resolve(), relative_to.resolve())
    record.stream = block
    run = result.memory_run  # the longest run: its memory, and what the GPU was doing meanwhile
    if run is not None:
        record.peak_memory_mb = run.peak_memory_mb
        record.memory_timeline = run.memory_timeline
        record.memory_probe = run.memory_probe
        if run.gpu_state is not None:  # the card during this scenario's run, not the timed images before it
            record.gpu_state = run.gpu_state
    return record


def check_stream(record: RunRecord, expect: Any) -> list[str]:
    """How a stream record falls short of its expectations (``tail_latency_s`` makes the line strict,
    ``peak_rate_floor`` the peak)."""
    block = record.stream or {}
    what = f"{record.model} batch {record.batch_size} on {record.device_profile}, {block.get('scenario')}"
    failures: list[str] = []
    line = block.get("line") or {}
    if block.get("holds_line") is False and expect.tail_latency_s is not None:
        lat = (block.get("summary") or {}).get("latency_s", {})
        failures.append(
            f"did not hold the line: {what}: at {line.get('rate', 0):.3g} images/s the p99 latency was "
            f"{lat.get('p99', float('nan')):.3f} s > deadline {line.get('deadline_s', float('nan')):.3f} s"
        )
    peak = (block.get("peak") or {}).get("rate")
    if block.get("scenario") == "peak" and expect.peak_rate_floor is not None and (peak or 0.0) < expect.peak_rate_floor:
        shown = f"{peak:.3g} images/s" if peak else "no rate tried"
        failures.append(f"peak rate below its floor: {what}: {shown} held within {line.get('deadline_s')} s "
                        f"< floor {expect.peak_rate_floor:.3g} images/s")
    return failures
