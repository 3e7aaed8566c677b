"""The report's GPU view: clocks, power, temperature and clock-event reasons per case, and where each image's
time went (device against host), shown only where records carry them."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

import make_runs as mr
from make_runs import Bench
from nvml_standin import FakeGpu, NvmlStandIn
from odperf.measure.gpu_state import GpuSample, GpuStateReader, summarise
from odperf.report.gpu import GPU_STATE, TIME_SPLIT, TIME_SPLIT_PLOT, reasons_text
from odperf.report.index import build_report, write_report
from odperf.report.sources import load_runs

CAP, IDLE = pynvml.nvmlClocksThrottleReasonSwPowerCap, pynvml.nvmlClocksThrottleReasonGpuIdle


def state(clocks: list[int], reasons: list[int], busy: list[int] | None = None) -> dict:
    gpu = FakeGpu("NVIDIA H200", 141 << 30)
    reader = GpuStateReader(NvmlStandIn([gpu]), gpu)
    samples = [GpuSample(c, 3201, 650.0, 60, r, u) for c, r, u in zip(clocks, reasons, busy or [None] * len(clocks))]
    return summarise(samples, reader, window="timed images", period_ms=100, settings=reader.settings())


def gpu_benches() -> list[Bench]:
    held = state([1980, 1755, 1410, 1755], [0, CAP, CAP, CAP | IDLE], busy=[30, 40, 50, 60])
    free = state([1980, 1980], [0, 0])
    return [
        Bench("faster_rcnn_fpn_torch", 8, [0.20, 0.21, 0.22], peak_mb=3000.0,
              extra={"gpu_state": held, "host_share": 0.5,
                     "device_time_per_image_s": {"mean": 0.105, "median": 0.1, "min": 0.09, "max": 0.13,
                                                 "wall_mean": 0.21}}),
        Bench("faster_rcnn_fpn_torch", 64, [0.10, 0.11], peak_mb=9000.0,
              extra={"gpu_state": free, "host_share": 0.2,
                     "device_time_per_image_s": {"mean": 0.084, "median": 0.084, "min": 0.08, "max": 0.088,
                                                 "wall_mean": 0.105}}),
    ]


def test_gpu_cases_show_their_state_and_time_split_and_a_cpu_run_shows_neither(tmp_path: Path):
    mr.write_run(tmp_path / "runs" / "h200.json", "h200", gpu_benches(), memory_mb=141_000)
    mr.write_run(tmp_path / "runs" / "cpu.json", "cpu", [Bench("ssd_tiny", 8, [1.0, 1.1], peak_mb=300.0)])
    report = build_report(load_runs([tmp_path / "runs"]))
    states = report.table(GPU_STATE)
    assert [row[:3] for row in states.rows] == [["h200", "faster_rcnn_fpn_torch", 8], ["h200", "faster_rcnn_fpn_torch", 64]]
    held = states.rows[0]
    assert held[4] == "1410 / 1755 / 1980"
    assert held[8] == "30 / 45 / 60"  # NVML's utilisation: the card waited on its host part of the time
    assert held[9] == "sw_power_cap 75%, gpu_idle 25%"
    assert "persistence enabled" in held[10] and "limit 700 W" in held[10]
    assert states.rows[1][4] == "1980" and states.rows[1][9] == "none"  # steady, nothing held the clocks
    assert states.rows[1][8] is None  # a card that gave no utilisation: unknown, not 0
    split = report.table(TIME_SPLIT)
    assert split.rows[0][3:5] == [0.21, 0.105] and split.rows[0][7] == pytest.approx(0.105)
    assert split.rows[0][8] == "50%" and split.rows[1][8] == "20%"
    index = write_report(report, tmp_path / "out").read_text()
    assert "What the GPU was doing" in index and "Where the time goes" in index
    figure = tmp_path / "out" / f"{TIME_SPLIT_PLOT}_h200.png"
    assert figure.is_file() and f"]({figure.name})" in index
    plot = next(p for p in report.plots if p.kind == TIME_SPLIT_PLOT)
    (ax,) = plot.figure.axes
    widths = sorted(round(bar.get_width(), 4) for bar in ax.patches)
    assert widths == [0.021, 0.084, 0.105, 0.105]  # device and host of each case, as recorded

    mr.write_run(tmp_path / "cpu_only" / "cpu.json", "cpu", [Bench("ssd_tiny", 8, [1.0, 1.1], peak_mb=300.0)])
    cpu = build_report(load_runs([tmp_path / "cpu_only"]))
    assert not {GPU_STATE, TIME_SPLIT} & {t.name for t in cpu.tables}
    write_report(cpu, tmp_path / "cpu_out")
    assert not list((tmp_path / "cpu_out").glob(f"{TIME_SPLIT_PLOT}_*.png"))


def test_reasons_text_orders_by_share_and_tells_none_from_unknown():
    assert reasons_text({"gpu_idle": 0.05, "hw_slowdown": 0.4}) == "hw_slowdown 40%, gpu_idle 5%"
    assert reasons_text({}) == "none" and reasons_text(None) is None
