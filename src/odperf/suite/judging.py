"""Judging a measured run against its expectation: each failure is one readable line with the figures."""

from __future__ import annotations

from odperf.suite.expectations import Expectation
from odperf.results import Outcome, RunRecord
from odperf.workload import IMAGES_PER_CAR


def _case(record: RunRecord) -> str:
    cap = (record.emulated or {}).get("memory_limit_mb")
    emulated = f" (emulated: {cap} MB memory cap)" if record.emulated else ""
    return f"{record.model} at batch {record.batch_size} on {record.device_profile}{emulated}"


def _memory(record: RunRecord) -> str:
    if record.peak_memory_mb is None:
        return "peak memory unknown"
    return f"peak memory {record.peak_memory_mb:.0f} MB ({record.memory_probe})"


def _reason(record: RunRecord) -> str:
    """The error's first line: why (the worker's log follows it in the record, not in the verdict)."""
    line = (record.error or "").strip().split("\n", 1)[0]
    return line.removeprefix(f"{record.outcome}: ")  # the verdict names the outcome already


__all__ = ["check_run"]


def check_run(record: RunRecord, expect: Expectation, images_per_car: int = IMAGES_PER_CAR) -> list[str]:
    """Every way ``record`` falls short of ``expect``; an empty list means the run passes."""
    failures: list[str] = []
    if record.outcome == "oom":
        if expect.oom not in (True, "either"):
            failures.append(
                f"unexpected out-of-memory: {_case(record)}; {_memory(record)}; {_reason(record)}"
            )
        return failures
    if record.outcome in (Outcome.CRASH, Outcome.TIMEOUT):
        how = f"signal {record.exit_signal}" if record.exit_signal else f"exit code {record.exit_code}"
        detail = how if record.outcome == Outcome.CRASH else "no answer within the time limit"
        failures.append(f"{record.outcome}: {_case(record)} ({detail}): {_reason(record)}")
        return failures
    if record.error:  # measured, but something (the accuracy scoring) failed: the figures stand, the case not
        failures.append(f"{_case(record)}: {_reason(record)}")
    if expect.oom is True:
        failures.append(
            f"expected out-of-memory did not happen: {_case(record)} ran to completion with {_memory(record)}"
            + (f"; {'; '.join(expect.notes)}" if expect.notes else "")
        )
    mean = record.time_per_image_s.get("mean")
    if expect.deadline_image_s is not None and mean is not None and mean > expect.deadline_image_s:
        failures.append(
            f"missed the per-image deadline: {_case(record)} took {mean:.3f} s per image (mean of "
            f"{record.images_timed}; median {record.time_per_image_s.get('median', float('nan')):.3f} s) "
            f"> limit {expect.deadline_image_s:.3f} s"
        )
    if expect.deadline_car_s is not None and mean is not None:
        car = mean * images_per_car
        if car > expect.deadline_car_s:
            failures.append(
                f"missed the per-car deadline: {_case(record)} needs {car:.1f} s per car "
                f"({images_per_car} images x {mean:.3f} s) > limit {expect.deadline_car_s:.1f} s "
                f"(the line's interval between cars)"
            )
    if expect.map_floor is not None and record.map is not None and record.map < expect.map_floor:
        failures.append(
            f"mAP below its floor: {_case(record)} reached COCO mAP@[.5:.95] {record.map:.3f} "
            f"< floor {expect.map_floor:.3f}"
        )
    return failures
