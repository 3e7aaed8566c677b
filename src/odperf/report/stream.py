"""The streaming report: LoadGen's latency percentiles per scenario, the capacity table, the knee and the
latency distribution, from the ``stream`` records (odperf.stream.record) of any saved runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from matplotlib.figure import Figure

from odperf.report.plots import Plot, _save, safe_name
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
    return sorted(latest.values(), key=lambda r: (r.device_profile, r.model, r.batch_size, _order(r)))


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
    by_case: dict[tuple[str, str, int], dict[str, RunRecord]] = {}
    for r in records:
        by_case.setdefault((r.device_profile, r.model, r.batch_size), {})[(r.stream or {}).get("scenario")] = r
    rows = []
    for (profile, model, batch), scenarios in sorted(by_case.items()):
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
                     cap.get("devices_per_line")])
    return Table(
        name="stream_capacity",
        title="Capacity: does the device hold the line, its peak rate within the deadline, cameras and devices",
        headers=["device", "model", "batch", "line img/s", "deadline s", "p99 at line s", "holds line",
                 "peak img/s", "1/(s per img)", "cameras/device", "lines/device", "devices/line"],
        rows=rows,
        floatfmt=["", "", "", ".3g", ".3g", ".3f", "", ".3g", ".3g", "", ".2f", ""],
        note="Line: 95 camera images per car over the interval between cars (5 cameras); holds: the 99th "
             "percentile latency at the line's rate (Poisson arrivals) is within the deadline. Peak: the highest "
             "Server rate whose 99th percentile stayed within the deadline (bisection); 1/(s per img): the rate "
             "the model's time per image implies, measured in the same worker.",
    )


def knee_plot(records: Sequence[RunRecord], profile: str, out_dir: Path) -> Plot | None:
    """Latency percentiles against the offered rate, from the peak search: where the queue starts to build."""
    peaks = [r for r in records if r.device_profile == profile and (r.stream or {}).get("peak")]
    if not peaks:
        return None
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for i, r in enumerate(peaks):
        points = sorted(r.stream["peak"]["points"], key=lambda p: p["rate"])
        color = f"C{i % 10}"
        rates = [p["rate"] for p in points]
        for name, style in (("p50", ":"), ("p99", "-")):
            ax.plot(rates, [p["latency_s"].get(name) for p in points], style, marker="o", color=color,
                    label=f"{r.model} b{r.batch_size} {name}")
        deadline = (r.stream.get("line") or {}).get("deadline_s")
        if deadline:
            ax.axhline(deadline, color=color, linewidth=0.8, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (camera images/s, Poisson)")
    ax.set_ylabel("latency per image (s)")
    ax.set_title(f"{profile}: latency against offered rate (thin lines: deadlines)")
    ax.legend(fontsize=7)
    path = _save(fig, out_dir / f"stream_knee_{safe_name(profile)}.png")
    return Plot(f"{profile}: latency percentiles against offered rate (the knee)", path)


def distribution_plot(records: Sequence[RunRecord], profile: str, out_dir: Path) -> Plot | None:
    """The latency distribution at the line's rate (Server), from LoadGen's percentiles: min to max."""
    server = [r for r in records if r.device_profile == profile and (r.stream or {}).get("scenario") == "server"
              and _summary(r).get("latency_s")]
    if not server:
        return None
    marks = (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0))
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    for r in server:
        lat = _summary(r)["latency_s"]
        xs = [(lat[k], q) for k, q in marks if lat.get(k) is not None]
        ax.step([x for x, _ in xs], [q for _, q in xs], where="post", marker="o", label=f"{r.model} b{r.batch_size}")
    ax.set_xscale("log")
    ax.set_xlabel("latency per image (s)")
    ax.set_ylabel("fraction of images within")
    ax.set_title(f"{profile}: latency distribution at the line's rate (LoadGen's percentiles)")
    ax.legend(fontsize=7)
    path = _save(fig, out_dir / f"stream_latency_{safe_name(profile)}.png")
    return Plot(f"{profile}: latency distribution at the line's rate", path)


def stream_tables(runs: Sequence[SavedRun]) -> list[Table]:
    records = stream_records(runs)
    return [latency_table(records), capacity_table(records)] if records else []


def stream_plots(runs: Sequence[SavedRun], out_dir: Path) -> list[Plot]:
    records = stream_records(runs)
    figs = []
    for profile in sorted({r.device_profile for r in records}):
        figs.extend(p for p in (knee_plot(records, profile, out_dir), distribution_plot(records, profile, out_dir)) if p)
    return figs
