"""The streaming report: LoadGen's latency percentiles per scenario, the capacity table, the knee and the
latency distribution, from the ``stream`` records (odperf.stream.record) of any saved runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from odperf.report.plots import Plot, _figure, _save, safe_name
from odperf.report.tables import Table
from odperf.results import STREAM, RunRecord, SavedRun

PERCENTILE_COLUMNS = ("p50", "p90", "p95", "p99", "p99.9")
SCENARIO_ORDER = ("single_stream", "multi_stream", "server", "offline", "peak")


def stream_records(runs: Sequence[SavedRun]) -> list[RunRecord]:
    """Every stream record, a later run's record replacing an earlier one of the same key."""
    latest: dict[Any, RunRecord] = {}
    for run in runs:
        for rec in run.records:
            if rec.kind == STREAM and rec.stream:
                latest[rec.key] = rec
    return sorted(latest.values(), key=lambda r: (r.device_profile, r.model, r.batch_size, _prefetch(r), _order(r)))


def _prefetch(rec: RunRecord) -> bool:
    return bool((rec.stream or {}).get("prefetch"))


def _label(rec: RunRecord) -> str:
    return f"{rec.model} b{rec.batch_size}" + (" prefetch" if _prefetch(rec) else "")


def _order(rec: RunRecord) -> int:
    scenario = (rec.stream or {}).get("scenario")
    return SCENARIO_ORDER.index(scenario) if scenario in SCENARIO_ORDER else len(SCENARIO_ORDER)


def _summary(rec: RunRecord) -> dict[str, Any]:
    return (rec.stream or {}).get("summary") or {}


def latency_table(records: Sequence[RunRecord]) -> Table:
    rows = []
    for r in records:
        s, block = _summary(r), r.stream or {}
        lat = s.get("latency_s") or {}
        offered = (s.get("settings") or {}).get("target_qps") if block.get("scenario") in ("server", "peak") else None
        rows.append([r.device_profile, r.model, r.batch_size, block.get("scenario"), r.outcome,
                     s.get("result"), *(lat.get(p) for p in PERCENTILE_COLUMNS), lat.get("max"), offered,
                     s.get("achieved_rate"), "; ".join(s.get("reasons") or []) or None,
                     "yes" if block.get("prefetch") else "no"])
    return Table(
        name="stream_latency",
        title="Streams: latency per camera image (s) by device, model, batch size and LoadGen scenario",
        headers=["device", "model", "batch", "scenario", "outcome", "LoadGen", *PERCENTILE_COLUMNS, "max",
                 "offered img/s", "achieved img/s", "why INVALID", "prefetch"],
        rows=rows,
        floatfmt=["", "", "", "", "", "", *[".3f"] * 6, ".3g", ".3g", "", ""],
        note="One sample is one camera image (all its tiles at the batch size, detections on the host); "
             "multi_stream: a query of one image per camera, its latency the query's; peak: the Server run at "
             "the peak rate. Short runs are INVALID by LoadGen's early stopping (too few queries for the "
             "percentile); the line's verdict reads the measured percentile (capacity table).",
    )


def capacity_table(records: Sequence[RunRecord]) -> Table:
    by_case: dict[tuple[str, str, int, bool], dict[str, RunRecord]] = {}
    for r in records:
        by_case.setdefault((r.device_profile, r.model, r.batch_size, _prefetch(r)), {})[(r.stream or {}).get("scenario")] = r
    rows = []
    for (profile, model, batch, prefetch), scenarios in sorted(by_case.items()):
        server, peak = scenarios.get("server"), scenarios.get("peak")
        if server is None and peak is None:
            continue
        line = ((server or peak).stream or {}).get("line") or {}
        lat = _summary(server).get("latency_s", {}) if server else {}
        pk = (peak.stream or {}) if peak else {}
        cap = pk.get("capacity") or {}
        held = (server.stream or {}).get("holds_line") if server else None
        rows.append([profile, model, batch, line.get("rate"), line.get("deadline_s"), lat.get("p99"),
                     None if held is None else ("yes" if held else "no"), (pk.get("peak") or {}).get("rate"),
                     pk.get("implied_rate"), cap.get("cameras_per_device"), cap.get("lines_per_device"),
                     cap.get("devices_per_line"), "yes" if prefetch else "no"])
    return Table(
        name="stream_capacity",
        title="Capacity: does the device hold the line, its peak rate within the deadline, cameras and devices",
        headers=["device", "model", "batch", "line img/s", "deadline s", "p99 at line s", "holds line",
                 "peak img/s", "1/(s per img)", "cameras/device", "lines/device", "devices/line", "prefetch"],
        rows=rows,
        floatfmt=["", "", "", ".3g", ".3g", ".3f", "", ".3g", ".3g", "", ".2f", "", ""],
        note="Line: 95 camera images per car over the interval between cars (5 cameras); holds: the 99th "
             "percentile latency at the line's rate (Poisson arrivals) is within the deadline. Peak: the highest "
             "Server rate whose 99th percentile stayed within the deadline (bisection); 1/(s per img): the "
             "device's throughput, the rate its time per image implies (the fastest of a few images through the "
             "stream's path, in the same worker): no rate above it counts as held, however short runs look.",
    )


STREAM_KNEE, STREAM_LATENCY = "stream_knee", "stream_latency"


def _finish(fig: Figure, ax: Any, title: str, file_name: str, out_dir: Path, kind: str, profile: str,
            caption: str) -> Plot:
    """Title, legend beside the axes (never over the curves), saved; the Plot the index lists."""
    ax.set_title(title)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    path = _save(fig, out_dir / f"{file_name}_{safe_name(profile)}.png")
    return Plot(title, path, kind, profile, caption=caption, figure=fig)


def knee_plot(records: Sequence[RunRecord], profile: str, out_dir: Path) -> Plot | None:
    """Latency percentiles against the offered rate, from the peak search: where the queue starts to build."""
    peaks = [r for r in records if r.device_profile == profile and ((r.stream or {}).get("peak") or {}).get("points")]
    if not peaks:
        return None
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    deadlines = set()
    for i, r in enumerate(peaks):
        points = sorted(r.stream["peak"]["points"], key=lambda p: p["rate"])
        color = f"C{i % 10}"
        rates = [p["rate"] for p in points]
        for name, style in (("p50", ":"), ("p99", "-")):
            ax.plot(rates, [p["latency_s"].get(name) for p in points], style, marker="o", color=color,
                    label=f"{_label(r)} {name}")
        deadlines.add((r.stream.get("line") or {}).get("deadline_s"))
    for deadline in sorted(d for d in deadlines if d):
        ax.axhline(deadline, color="0.35", linewidth=0.9, linestyle="--", gid="limit", label=f"deadline {deadline:g} s")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (camera images/s, Poisson arrivals)")
    ax.set_ylabel("latency per camera image (s)")
    return _finish(fig, ax, f"{profile}: latency percentiles against offered rate (the knee)", "stream_knee",
                   out_dir, STREAM_KNEE, profile,
                   "Each point is one LoadGen Server run of the peak search at that offered rate; the peak is the "
                   "highest rate whose p99 stayed under the deadline.")


def distribution_plot(records: Sequence[RunRecord], profile: str, out_dir: Path) -> Plot | None:
    """The latency distribution at the line's rate (Server), from LoadGen's percentiles: min to max."""
    server = [r for r in records if r.device_profile == profile and (r.stream or {}).get("scenario") == "server"
              and _summary(r).get("latency_s")]
    if not server:
        return None
    marks = (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    for r in server:
        lat = _summary(r)["latency_s"]
        xs = [(lat[k], q) for k, q in marks if lat.get(k) is not None]
        ax.step([x for x, _ in xs], [q for _, q in xs], where="post", marker="o", label=_label(r))
    ax.set_xscale("log")
    ax.set_xlabel("latency per camera image (s)")
    ax.set_ylabel("fraction of images within")
    return _finish(fig, ax, f"{profile}: latency distribution at the line's rate", "stream_latency", out_dir,
                   STREAM_LATENCY, profile,
                   "Drawn from LoadGen's percentiles (min, p50, p90, p95, p99, p99.9, max) of the Server run at "
                   "the line's rate.")


def stream_tables(runs: Sequence[SavedRun]) -> list[Table]:
    records = stream_records(runs)
    return [latency_table(records), capacity_table(records)] if records else []


def stream_plots(runs: Sequence[SavedRun], out_dir: Path) -> list[Plot]:
    records = stream_records(runs)
    figs = []
    for profile in sorted({r.device_profile for r in records}):
        figs.extend(p for p in (knee_plot(records, profile, out_dir), distribution_plot(records, profile, out_dir)) if p)
    return figs
