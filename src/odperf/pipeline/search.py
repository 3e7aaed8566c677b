"""Capacity of a deployment: the most cameras it holds within the deadline, instances per device measured,
and the streaming pass's peak for the same model and batch size, to compare with.

The camera search doubles the cameras from one until a pass misses (an image lost, the percentile over the
deadline, or a car late), then bisects between the last that held and the first that missed; each step is
a fresh pass. Instances per device runs 1..k instances of the model on the one device, each pass at the
same cameras, and sets what it measured (every instance up, the summed peak memory, the images back per
second) beside the report's memory arithmetic: floor(device memory / one instance's peak).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from odperf.pipeline.figures import summarize
from odperf.pipeline.run import measure_request, run_pipeline
from odperf.pipeline.settings import PipelineSettings


@dataclass
class SearchStep:
    cameras: int
    holds: bool
    why_not: list[str]
    p99_s: float | None
    achieved_rate: float | None
    offered_rate: float


@dataclass
class CameraSearch:
    """The most cameras held (None: not even one) and every pass of the search."""

    cameras: int | None
    rate: float | None  # images per second those cameras offer
    steps: list[SearchStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_cameras(settings: PipelineSettings, broker: str | None, max_cameras: int,
                   say: Callable[[str], None] = lambda _: None) -> CameraSearch:
    result = CameraSearch(cameras=None, rate=None)

    def held(n: int) -> bool:
        s = replace(settings, cameras=n)
        say(f"search: {n} camera(s), {s.rate:.3g} images/s")
        summary = summarize(run_pipeline(s, broker, say))
        p99 = summary.latency_s.get("total", {}).get("p99")
        result.steps.append(SearchStep(cameras=n, holds=summary.holds, why_not=summary.why_not, p99_s=p99,
                                       achieved_rate=summary.achieved_rate, offered_rate=s.rate))
        if summary.holds and (result.cameras is None or n > result.cameras):
            result.cameras, result.rate = n, s.rate
        return summary.holds

    most_held(held, max_cameras)
    return result


def most_held(held: Callable[[int], bool], most: int) -> int:
    """The largest n in 1..``most`` with ``held(n)`` (0: not even 1), assuming what holds for n holds below
    it: doubling from 1 until a miss (or ``most``), then bisection between the last held and the first missed."""
    lo, n = 0, 1
    while True:
        if not held(n):
            hi = n
            break
        lo = n
        if n == most:
            return lo
        n = min(2 * n, most)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if held(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass
class InstancesStep:
    instances: int
    up: int  # instances that ran to the end (not oom, crash or timeout)
    outcomes: list[str]
    peak_mb: list[float | None]
    summed_peak_mb: float | None
    achieved_rate: float | None
    holds: bool


@dataclass
class InstancesPerDevice:
    """Measured: the most instances that all ran (and fit in ``device_mb``) against floor(device_mb / one's peak)."""

    device_mb: float | None
    arithmetic: int | None
    measured: int
    asked: int = 0  # the most instances tried (K)
    steps: list[InstancesStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_memory_mb(settings: PipelineSettings, given: float | None) -> float | None:
    """The device's memory: given (an emulated device), else the GPU's or the host's total."""
    if given:
        return given
    from odperf.measure.kinds import profile_of

    profile = profile_of(settings.instance_device(0))
    if profile is not None and getattr(profile, "memory_mb", None):
        return float(profile.memory_mb)
    import psutil

    return psutil.virtual_memory().total / 1e6


def instances_per_device(settings: PipelineSettings, broker: str | None, k: int, device_mb: float | None,
                         say: Callable[[str], None] = lambda _: None) -> InstancesPerDevice:
    out = InstancesPerDevice(device_mb=device_mb, arithmetic=None, measured=0, asked=k)
    settings = replace(settings, device=settings.instance_device(0), devices=())  # every instance on the one device
    for n in range(1, k + 1):
        say(f"instances per device: {n} instance(s) of {settings.model} on {settings.device}")
        run = run_pipeline(replace(settings, instances=n, kill_instance_at_s=None, restart_broker_at_s=None),
                           broker, say)
        summary = summarize(run)
        peaks = [r.peak_memory_mb for r in run.instances]
        up = sum(1 for r in run.instances if r.outcome == "ok")
        summed = sum(p for p in peaks if p is not None) if any(p is not None for p in peaks) else None
        out.steps.append(InstancesStep(instances=n, up=up, outcomes=[r.outcome for r in run.instances],
                                       peak_mb=peaks, summed_peak_mb=summed, achieved_rate=summary.achieved_rate,
                                       holds=summary.holds))
        if n == 1 and peaks[0] and device_mb:
            out.arithmetic = int(math.floor(device_mb / peaks[0]))
        if up == n and (device_mb is None or summed is None or summed <= device_mb):
            out.measured = n
        else:
            break
    return out


@dataclass
class StreamComparison:
    """The streaming pass's peak (LoadGen Server, one worker) for the same model, batch size and line."""

    peak_rate: float | None
    implied_rate: float
    cameras_per_device: int | None
    pipeline_cameras: int | None
    ratio: float | None  # pipeline cameras / stream cameras
    # what the pipeline's own time per image in an instance (decode, inference, result) allows, all instances busy
    service_s: float | None = None
    service_cameras: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stream_peak(settings: PipelineSettings, log_root: Path, pipeline_cameras: int | None,
                service_s: float | None = None, steps: int = 4) -> StreamComparison:
    """The stream pass's peak search (odperf.stream) on the same model, batch size, line and deadline."""
    from odperf.stream.cases import StreamPlan, StreamRunner
    from odperf.stream.line import Line
    from odperf.stream.settings import BUDGETS, PEAK
    from odperf.workload import Car

    budget = replace(BUDGETS["quick"], peak_steps=steps)
    line = Line(car_interval_s=settings.car_interval_s, deadline_s=settings.deadline_s,
                car=Car(cameras=settings.cameras_per_line, shots=settings.shots), percentile=settings.percentile)
    plan = StreamPlan(scenarios=(PEAK,), budget=budget, log_root=log_root, seed=settings.seed)
    with StreamRunner(plan) as runner:
        result = runner.run("pipeline", measure_request(settings), PEAK, line, "peak")
    if result.failure is not None:
        raise result.failure
    block = result.block
    cap = block.get("capacity") or {}
    cams = cap.get("cameras_per_device")
    ratio = pipeline_cameras / cams if pipeline_cameras is not None and cams else None
    service_cameras = (int(math.floor(settings.instances / service_s / settings.camera_rate + 1e-9))
                       if service_s else None)
    return StreamComparison(peak_rate=block["peak"]["rate"], implied_rate=block["implied_rate"],
                            cameras_per_device=cams, pipeline_cameras=pipeline_cameras, ratio=ratio,
                            service_s=service_s, service_cameras=service_cameras)


