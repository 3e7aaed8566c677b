"""A pass's figures: end-to-end latency per image and its parts, cars against their deadline, the backlog,
every image accounted for; as a summary (saved), Markdown tables, and one figure.

Latency of an image: the collector's clock when its detections came back minus its capture time (one
host's wall clock here; across hosts it needs synchronised clocks). Its parts, which add up to it:
``transfer`` (capture to the broker's acknowledgement of the publish), ``queueing`` (in the broker until an
instance read it, delivery included), ``decode`` (the file back to pixels in the instance), ``inference``
(the worker's timed region: tiles, every batch, detections on the host) and ``result`` (packing the
detections, publishing them, the collector reading them).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odperf.pipeline.run import PipelineRun

PARTS = ("transfer", "queueing", "decode", "inference", "result", "total")
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


def image_parts(image: Any) -> dict[str, float] | None:
    """The latency parts of one image that came back (None: it did not)."""
    if image.status == "lost" or image.t_collected is None or image.t_published is None:
        return None
    inferred = image.t_decoded + (image.infer_s or 0.0)
    return {"transfer": image.t_published - image.t_capture, "queueing": image.t_received - image.t_published,
            "decode": image.t_decoded - image.t_received, "inference": image.infer_s or 0.0,
            "result": image.t_collected - inferred, "total": image.t_collected - image.t_capture}


@dataclass
class CarFigure:
    line: int
    car: int
    images: int
    back: int
    completion_s: float | None  # first capture to last result; None when an image never came back
    due_s: float
    within: bool


@dataclass
class PipelineSummary:
    """What a pass's record keeps besides its images: the verdict and the figures behind it."""

    published: int
    detected: int
    errors: int
    lost: int
    lost_reasons: dict[str, int]
    retried: int  # images detected after more than one delivery (taken over from a dead instance)
    duplicates: int
    latency_s: dict[str, dict[str, float]]  # part -> quantile -> seconds
    cars: list[CarFigure]
    backlog_max: int
    backlog_end: int
    achieved_rate: float | None  # images back per second over the pass
    offered_rate: float
    within_deadline: float | None  # fraction of the images back within the image deadline
    service_s: float | None  # mean seconds an instance spent on an image: received to its result published
    holds: bool
    why_not: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(run: PipelineRun) -> PipelineSummary:
    s = run.settings
    parts = [p for p in (image_parts(i) for i in run.images) if p is not None]
    latency = {name: {q: float(np.quantile([p[name] for p in parts], f)) for q, f in QUANTILES} for name in PARTS} \
        if parts else {}
    status = Counter(i.status for i in run.images)
    reasons = Counter(i.reason for i in run.images if i.status == "lost")
    cars = _cars(run)
    back = [i for i in run.images if i.t_collected is not None]
    span = (max(i.t_collected for i in back) - min(i.t_capture for i in back)) if len(back) > 1 else None
    totals = [p["total"] for p in parts]
    within = float(np.mean([t <= s.deadline_s for t in totals])) if totals else None
    summary = PipelineSummary(
        published=len(run.images), detected=status["detected"], errors=status["error"], lost=status["lost"],
        lost_reasons=dict(reasons), retried=sum(1 for i in back if i.deliveries > 1), duplicates=run.duplicates,
        latency_s=latency, cars=cars, backlog_max=max((b[1] + b[2] for b in run.backlog), default=0),
        backlog_end=int(run.backlog[-1][1] + run.backlog[-1][2]) if run.backlog else 0,
        achieved_rate=len(back) / span if span else None, offered_rate=s.rate, within_deadline=within,
        service_s=float(np.mean([i.t_done - i.t_received for i in back])) if back else None, holds=False)
    key = f"p{round(s.percentile * 100):d}"
    tail = float(np.quantile(totals, s.percentile)) if totals else None
    if summary.lost:
        summary.why_not.append(f"{summary.lost} of {summary.published} images lost")
    if tail is None or tail > s.deadline_s:
        summary.why_not.append(f"{key} latency {tail if tail is None else round(tail, 3)} s over the {s.deadline_s:g} s deadline")
    late = [c for c in cars if not c.within]
    if late:
        summary.why_not.append(f"{len(late)} of {len(cars)} cars not done within {s.car_due_s:g} s")
    summary.holds = not summary.why_not
    return summary


def _cars(run: PipelineRun) -> list[CarFigure]:
    groups: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for image in run.images:
        groups[(image.line, image.car)].append(image)
    due = run.settings.car_due_s
    out = []
    for (line, car), images in sorted(groups.items()):
        back = [i for i in images if i.t_collected is not None]
        done = max(i.t_collected for i in back) - min(i.t_capture for i in images) if len(back) == len(images) else None
        out.append(CarFigure(line=line, car=car, images=len(images), back=len(back), completion_s=done, due_s=due,
                             within=done is not None and done <= due))
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(run: PipelineRun, summary: PipelineSummary) -> str:
    """The pass's report as Markdown tables."""
    from tabulate import tabulate

    s = run.settings
    lines = [f"## Pipeline: {s.model} batch {s.batch_size}, {s.instances} instance(s) on {', '.join(s.devices) or s.device}, "
             f"{s.cameras} camera(s) in {s.lines} line(s)", "",
             f"Broker {run.broker} ({'local redis-server started for the run' if run.local_broker else 'given'}); "
             f"{s.arrivals} arrivals, a car every {s.car_interval_s:g} s of {s.shots} shots per camera "
             f"({summary.offered_rate:.3g} images/s offered, {_f(summary.achieved_rate)} back; an instance spent "
             f"{_f(summary.service_s)} s per image, received to result published); image deadline "
             f"{s.deadline_s:g} s, car deadline {s.car_due_s:g} s.", "",
             f"**Verdict: {'holds' if summary.holds else 'misses'} the line**"
             + ("" if summary.holds else ": " + "; ".join(summary.why_not)), ""]
    if summary.latency_s:
        rows = [[name] + [_f(summary.latency_s[name][q]) for q, _ in QUANTILES] for name in PARTS]
        lines += ["End-to-end latency per image and its parts (s):", "",
                  tabulate(rows, headers=["part", *[q for q, _ in QUANTILES]], tablefmt="github"), ""]
    rows = [[c.line, c.car, c.images, c.back, _f(c.completion_s), _f(c.due_s, 1), "yes" if c.within else "NO"]
            for c in summary.cars]
    lines += ["Cars: first image to last result against the car's deadline:", "",
              tabulate(rows, headers=["line", "car", "images", "back", "completion s", "due s", "within"],
                       tablefmt="github"), ""]
    lost = "; ".join(f"{n} {why}" for why, n in summary.lost_reasons.items()) or "none"
    lines += [f"Accounting: {summary.published} published, {summary.detected} detected, {summary.errors} came back "
              f"with an error, {summary.lost} lost ({lost}); {summary.retried} retried after a takeover, "
              f"{summary.duplicates} duplicate results dropped. Backlog: max {summary.backlog_max}, at the end "
              f"{summary.backlog_end}.", ""]
    if run.faults:
        lines += ["Faults: " + "; ".join(f"{f['fault']} at {f['at_s']:.1f} s ({f['note']})" for f in run.faults), ""]
    rows = [[r.name, r.outcome, r.images, r.claimed, _f(r.infer_s / r.images if r.images else None),
             _f(r.peak_memory_mb, 0), _f(r.deploy_s, 1), r.broker_outages] for r in run.instances]
    lines += ["Instances:", "", tabulate(rows, headers=["instance", "outcome", "images", "claimed", "inference s/image",
                                                         "peak memory MB", "deploy s", "broker outages"],
                                         tablefmt="github"), ""]
    acc = run.accuracy or {}
    lines.append(f"mAP of the detections that came back: {_f(acc.get('AP'))}"
                 + (f" ({run.accuracy_error})" if run.accuracy_error else ""))
    return "\n".join(lines) + "\n"


def plot(run: PipelineRun, summary: PipelineSummary, path: str | Path) -> Path:
    """Latency per image over capture time (parts stacked), the backlog over time, cars against their due time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 9), layout="constrained")
    back = sorted(((i, image_parts(i)) for i in run.images if image_parts(i) is not None), key=lambda b: b[0].t_capture)
    if back:
        x = np.arange(len(back))
        bottom = np.zeros(len(back))
        for name in PARTS[:-1]:
            height = np.array([max(0.0, p[name]) for _, p in back])
            axes[0].bar(x, height, bottom=bottom, width=0.8, label=name)
            bottom += height
    axes[0].axhline(run.settings.deadline_s, color="red", linestyle="--", label="deadline")
    axes[0].set(xlabel="image, in capture order", ylabel="latency (s)", title="End-to-end latency per image, by part")
    axes[0].legend(loc="upper left", fontsize="small", ncols=3)
    if run.backlog:
        t = [b[0] for b in run.backlog]
        axes[1].plot(t, [b[1] for b in run.backlog], label="queued (lag)")
        axes[1].plot(t, [b[1] + b[2] for b in run.backlog], label="queued + in instances (pending)")
    for f in run.faults:
        axes[1].axvline(f["at_s"], color="grey", linestyle=":")
        axes[1].annotate(f["fault"], (f["at_s"], 0), rotation=90, fontsize="small", va="bottom")
    axes[1].set(xlabel="time (s from start)", ylabel="images", title="Backlog in the broker")
    axes[1].legend(loc="upper left", fontsize="small")
    labels = [f"L{c.line} car {c.car}" for c in summary.cars]
    axes[2].bar(labels, [c.completion_s or 0.0 for c in summary.cars],
                color=["tab:green" if c.within else "tab:red" for c in summary.cars])
    axes[2].axhline(run.settings.car_due_s, color="red", linestyle="--", label="car deadline")
    axes[2].set(ylabel="first image to last result (s)", title="Cars")
    axes[2].legend(loc="upper left", fontsize="small")
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
