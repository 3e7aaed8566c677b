"""The GPU's side of a report: what the card was doing in each case (clocks, power, temperature, the clock
-event reasons NVML gave) and where each camera image's time went (the device's CUDA-event time against
the host's share). Shown only for records that carry them (GPU runs of odperf's schema 3 on): a CPU
report, or an older run, gets neither table nor figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from odperf.measure.gpu_state import held
from odperf.report.plots import Plot, _figure, _save, safe_name
from odperf.report.tables import Table
from odperf.results import STREAM, RunRecord, SavedRun

GPU_STATE, TIME_SPLIT = "gpu_state", "time_split"
TIME_SPLIT_PLOT = "time_split"


def gpu_records(runs: Sequence[SavedRun]) -> list[RunRecord]:
    """Timing records with the GPU's state or device time, a later run's replacing an earlier one's."""
    latest: dict[Any, RunRecord] = {}
    for run in runs:
        for rec in run.records:
            if rec.kind != STREAM and (rec.gpu_state or rec.device_time_per_image_s):
                latest[rec.key] = rec
    return sorted(latest.values(), key=lambda r: r.key)


def _spread(block: dict[str, Any] | None) -> str | None:
    if not block:
        return None
    low, mid, high = (block.get(k) for k in ("min", "median", "max"))
    return f"{low:.0f}" if low == high else f"{low:.0f} / {mid:.0f} / {high:.0f}"


def reasons_text(shares: dict[str, float] | None) -> str | None:
    """``sw_power_cap 12%, gpu_idle 3%``: each reason seen, by the share of samples it was active in."""
    if shares is None:
        return None
    if not shares:
        return "none"
    return ", ".join(f"{name} {share:.0%}" for name, share in sorted(shares.items(), key=lambda kv: -kv[1]))


def held_reasons(state: dict[str, Any] | None) -> dict[str, float]:
    """A record's ``gpu_state``: the clock-event reasons that held its clocks (``gpu_state.held``)."""
    return held((state or {}).get("clock_event_reasons"))


def settings_text(settings: dict[str, Any]) -> str | None:
    app = (settings.get("applications_sm_clock_mhz"), settings.get("applications_memory_clock_mhz"))
    top = (settings.get("max_sm_clock_mhz"), settings.get("max_memory_clock_mhz"))
    parts = []
    if any(v is not None for v in app):
        parts.append("app " + "/".join("-" if v is None else f"{v:.0f}" for v in app) + " MHz")
    if any(v is not None for v in top):
        parts.append("max " + "/".join("-" if v is None else f"{v:.0f}" for v in top) + " MHz")
    if settings.get("power_limit_w") is not None:
        parts.append(f"limit {settings['power_limit_w']:.0f} W")
    if settings.get("persistence_mode"):
        parts.append(f"persistence {settings['persistence_mode']}")
    return ", ".join(parts) or None


def gpu_state_table(records: Sequence[RunRecord]) -> Table:
    rows = []
    for r in records:
        s = r.gpu_state
        if not s:
            continue
        rows.append([r.device_profile, r.model, r.batch_size, r.outcome, _spread(s.get("sm_clock_mhz")),
                     _spread(s.get("memory_clock_mhz")), _spread(s.get("power_w")),
                     _spread(s.get("temperature_c")), _spread(s.get("utilization_pct")),
                     reasons_text(s.get("clock_event_reasons")),
                     settings_text(s.get("settings") or {}), f"{s.get('samples')} ({s.get('window')})"])
    return Table(
        name=GPU_STATE,
        title="What the GPU was doing: clocks, power, temperature and clock-event reasons per case",
        headers=["device", "model", "batch", "outcome", "SM MHz min/med/max", "memory MHz", "power W",
                 "temperature C", "busy %", "clock-event reasons (share of samples)", "settings (read once)",
                 "samples (window)"],
        rows=rows,
        note="Read through NVML beside the memory samples; a reason other than gpu_idle during the timed images "
             "(a power or thermal cap, a slowdown) means the clocks were held below their maximum. \"busy %\": "
             "NVML's utilisation, the share of time a kernel ran; well below 100 while images were timed, the "
             "card waited for its host (launches, copies, post-processing).",
    )


def time_split_table(records: Sequence[RunRecord]) -> Table:
    rows = []
    for r in records:
        d = r.device_time_per_image_s
        if not d:
            continue
        wall = d.get("wall_mean")
        host = None if wall is None else max(wall - d["mean"], 0.0)
        rows.append([r.device_profile, r.model, r.batch_size, wall, d["mean"], d.get("min"), d.get("max"),
                     host, None if r.host_share is None else f"{r.host_share:.0%}"])
    return Table(
        name=TIME_SPLIT,
        title="Where the time goes: device (CUDA events around the model calls) and host per camera image (s)",
        headers=["device", "model", "batch", "worker-timed s/img", "device s/img", "device min", "device max",
                 "host s/img", "host share"],
        rows=rows,
        floatfmt=["", "", "", ".4g", ".4g", ".4g", ".4g", ".4g", ""],
        note="The host's part is the rest of the worker-timed image: cutting and batching tiles, the copy to the "
             "device, post-processing and detections to numpy. A device span includes any wait of the GPU "
             "for the host to launch its next kernel.",
    )


def gpu_tables(runs: Sequence[SavedRun]) -> list[Table]:
    """The tables for the records that carry GPU figures; none where no record does."""
    records = gpu_records(runs)
    tables = [gpu_state_table(records), time_split_table(records)]
    return [t for t in tables if t.rows]


def time_split_plot(records: Sequence[RunRecord], profile: str, out_dir: Path) -> Plot:
    """Stacked bars per case on one device: the device's time per image, and the host's on top of it."""
    cases = [r for r in records if r.device_profile == profile and r.device_time_per_image_s]
    labels = [f"{r.model} b{r.batch_size}" for r in cases]
    device = [r.device_time_per_image_s["mean"] for r in cases]  # type: ignore[index]
    host = [max((r.device_time_per_image_s or {}).get("wall_mean", d) - d, 0.0) for r, d in zip(cases, device)]
    fig = _figure(8.0, 1.2 + 0.45 * len(cases))
    ax = fig.add_subplot()
    ax.barh(labels, device, color="#1f77b4", label="device (CUDA events)")
    ax.barh(labels, host, left=device, color="#ff7f0e", label="host (the rest of the worker-timed image)")
    for y, (d, h) in enumerate(zip(device, host)):
        share = h / (d + h) if d + h > 0 else 0.0
        ax.annotate(f"host {share:.0%}", (d + h, y), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per camera image (mean)")
    ax.set_xlim(0, max((d + h for d, h in zip(device, host)), default=1.0) * 1.25)
    ax.legend(loc="lower right", fontsize=8)
    title = f"Where the time goes on {profile}: device and host per camera image"
    ax.set_title(title, fontsize=10)
    path = _save(fig, out_dir / f"{TIME_SPLIT_PLOT}_{safe_name(profile)}.png")
    return Plot(title=title, path=path, kind=TIME_SPLIT_PLOT, profile=profile, figure=fig,
                caption="Bars are measured means over the timed images; the host's share is labelled at each bar.")


def gpu_plots(runs: Sequence[SavedRun], out_dir: Path) -> list[Plot]:
    records = [r for r in gpu_records(runs) if r.device_time_per_image_s]
    return [time_split_plot(records, profile, out_dir) for profile in sorted({r.device_profile for r in records})]
