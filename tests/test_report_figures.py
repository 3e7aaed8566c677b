"""The report's figures as a reader sees them, checked on the figure objects drawn from real saved runs:
an out-of-memory batch is marked where it happened and nowhere else, memory axes start at zero with the
device's cap drawn, deadlines are lines, no label overlaps another or leaves the figure, the mAP axis names
its dataset, and the index names the paper's figures the plots reproduce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text

import make_runs as mr  # tests/ is on sys.path (rootdir-relative import mode)

from odperf.report.index import Report, build_report, write_report
from odperf.report.plots import Plot
from odperf.report.rows import load_runs, scored_on
from odperf.results import load_run

REAL = Path(__file__).parent / "data" / "runs" / "real"
STREAMS = Path(__file__).parent / "data" / "runs" / "stream"  # benchmarks/test_stream.py's saved runs
# The main job's pass on the emulated 400 MB device with both runtimes: four memory limits close together
EMULATED = Path(__file__).parent / "data" / "runs" / "emulated"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    """The suite's own runs on the CPU and on the emulated 400 MB device, with a deadline of 0.2 s added."""
    report = build_report(load_runs([REAL]), deadlines_s=[0.2])
    index = write_report(report, tmp_path_factory.mktemp("real"))
    return report, index.read_text()


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    """Runs in the suite's format on the CPU and a V100 SXM2 whose most accurate model runs out of memory."""
    runs = tmp_path_factory.mktemp("runs")
    mr.main(runs)
    report = build_report(load_runs([runs]))
    index = write_report(report, tmp_path_factory.mktemp("gpu"))
    return report, index.read_text()


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    """The streaming pass on an H200 (faster_rcnn_fpn_torch, batch 64, the GPU check) and on the CPU."""
    report = build_report(load_runs([STREAMS]))
    index = write_report(report, tmp_path_factory.mktemp("stream"))
    return report, index.read_text()


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    report = build_report(load_runs([EMULATED]), deadlines_s=[1.0])
    index = write_report(report, tmp_path_factory.mktemp("emulated"))
    return report, index.read_text()


def plot(report: Report, name: str) -> Plot:
    return next(p for p in report.plots if p.path.name == name)


def main_axes(p: Plot):
    """The axes holding the measurements: below the failure band where there is one."""
    return p.figure.axes[-1]


def failure_marks(p: Plot) -> dict[str, set[int]]:
    band = p.figure.axes[0]
    names = [t.get_text() for t in band.get_yticklabels()]
    out: dict[str, set[int]] = {}
    for c in band.collections:
        assert c.get_gid() == "failed"
        for x, y in c.get_offsets():
            out.setdefault(names[int(round(y))], set()).add(int(x))
    return out


def limit_values(ax, horizontal: bool = True) -> list[float]:
    return [float((line.get_ydata() if horizontal else line.get_xdata())[0])
            for line in ax.get_lines() if line.get_gid() == "limit"]


def limit_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == "limit-label"]


@pytest.mark.parametrize("what", ["time", "memory"])
def test_an_oom_is_marked_at_its_batch_and_no_line_reaches_it(real, what: str):
    report, _ = real
    small = load_run(REAL / "cpu_400mb.json")
    oom = {(r.model, r.batch_size) for r in small.records if r.outcome == "oom"}
    assert oom  # the emulated device's batch 64 ran out of memory for every model
    p = plot(report, f"{what}_vs_batch_cpu_400mb.png")
    marks = failure_marks(p)
    assert {(m, b) for m, batches in marks.items() for b in batches} == oom
    assert [t.get_text() for t in p.figure.axes[0].texts if t.get_gid() == "outcome"] == ["oom"] * len(oom)
    ax = main_axes(p)
    for line in ax.get_lines():
        if line.get_gid() != "limit":
            assert not {(line.get_label(), int(x)) for x in line.get_xdata()} & oom
    lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines() if line.get_gid() != "limit"}
    assert lines == {m: sorted(r.batch_size for r in small.records if r.model == m and r.outcome == "ok")
                     for m in {r.model for r in small.records}}
    # the CPU, where every batch ran, has no band at all
    assert all(c.get_gid() != "failed" for a in plot(report, f"{what}_vs_batch_cpu.png").figure.axes
               for c in a.collections)


def test_memory_axes_start_at_zero_with_the_emulated_cap_and_runtime_drawn(real):
    report, index = real
    small = load_run(REAL / "cpu_400mb.json")
    emulated = [r.emulated for r in small.records if r.emulated and "limit_mb" in r.emulated]
    ax = main_axes(plot(report, "memory_vs_batch_cpu_400mb.png"))
    assert ax.get_ylim()[0] == 0
    cap = float(np.median([e["limit_mb"] for e in emulated]))
    runtime = float(np.median([e["runtime_mb"] for e in emulated]))
    assert sorted(limit_values(ax)) == pytest.approx(sorted([cap, runtime]))
    assert any("+ 400 MB" in t and f"{cap:,.0f} MB" in t for t in limit_labels(ax))
    assert top_of_data(ax) < ax.get_ylim()[1]
    assert "data segment" in index  # the caption says what the cap limits
    # the CPU's own memory is far above its peaks: named in the title, not drawn
    cpu = plot(report, "memory_vs_batch_cpu.png")
    assert main_axes(cpu).get_ylim()[0] == 0 and not limit_values(main_axes(cpu))
    assert "device memory" in cpu.figure.get_suptitle() and "not drawn" in cpu.figure.get_suptitle()
    best = plot(report, "best_time_vs_memory.png").figure.axes
    assert all(a.get_xlim()[0] == 0 for a in best)
    assert any(v == pytest.approx(cap) for v in limit_values(best[1], horizontal=False))


def top_of_data(ax) -> float:
    return max(max(line.get_ydata()) for line in ax.get_lines() if line.get_gid() != "limit" and len(line.get_ydata()))


def test_a_gpu_memory_figure_draws_the_cards_memory_and_the_time_figure_its_deadlines(gpu):
    report, _ = gpu
    memory = main_axes(plot(report, "memory_vs_batch_v100_sxm2.png"))
    assert limit_values(memory) == [16384.0]  # machine_info's memory_mb of the V100 run
    assert memory.get_ylim()[0] == 0
    time = plot(report, "time_vs_batch_v100_sxm2.png")
    assert sorted(limit_values(main_axes(time))) == [1.0, 4.0, 32.0]  # the paper's, all within its range
    assert sorted(limit_labels(main_axes(time))) == ["deadline 1 s", "deadline 32 s", "deadline 4 s"]
    assert failure_marks(time) == {"faster_rcnn_nas": {4, 8, 16, 32, 64}}


def test_deadlines_are_drawn_where_the_times_are(real):
    report, _ = real
    ax = main_axes(plot(report, "time_vs_batch_cpu.png"))
    low, high = sorted(ax.get_ylim())
    drawn = limit_values(ax)
    assert 0.2 in drawn and 1.0 in drawn  # the run's own and the paper's 1 s
    assert 32.0 not in drawn  # 30 times the slowest image: it would squash the lines
    assert all(low <= d <= high for d in drawn)


def drawn_texts(fig) -> list[Text]:
    """Every text the figure draws: tick labels only for ticks within their axis's view."""
    fig.draw_without_rendering()
    ticks: set[int] = set()
    shown: list[Text] = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for label in (tick.label1, tick.label2):
                    ticks.add(id(label))
                    if label.get_visible() and label.get_text() and low <= tick.get_loc() <= high:
                        shown.append(label)
    shown += [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    return shown


@pytest.mark.parametrize("which", ["real", "gpu", "stream", "emulated"])
def test_no_label_overlaps_another_or_leaves_the_figure(which: str, request):
    report, _ = request.getfixturevalue(which)
    for p in report.plots:
        fig = p.figure
        renderer = fig.canvas.get_renderer()
        frame = fig.bbox
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
        assert boxes
        for text, box in boxes:
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, (p.path.name, text)
            assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, (p.path.name, text)
        for i, (a, box_a) in enumerate(boxes):
            for b, box_b in boxes[i + 1:]:
                inner = box_a.intersection(box_a, box_b)
                area = inner.width * inner.height if inner else 0.0
                assert area <= 1.0, (p.path.name, a, b)


def test_the_map_axis_names_the_dataset_the_records_were_scored_on(real, gpu):
    assert "synthetic set" in plot(real[0], "pareto.png").figure.axes[0].get_ylabel()
    # runs whose accuracy blocks keep no per-category figures say so rather than guess
    assert "not recorded" in plot(gpu[0], "pareto.png").figure.axes[0].get_ylabel()
    scored = next(r for r in load_run(REAL / "cpu.json").records if r.accuracy)
    assert scored_on(scored.accuracy) == "the synthetic set"
    coco = {**scored.accuracy, "per_category": {"person": 0.5, "car": 0.4, "dog": 0.6}}
    assert scored_on(coco) == "a COCO-format set (3 categories)"
    assert scored_on({"AP": 0.3}) is None


def test_the_index_names_the_papers_figures_each_plot_reproduces(real, gpu):
    _, index = real
    assert "### Fig. 5: Inference time per image vs batch size: cpu\n" in index
    assert "### Fig. 8: Best inference time against memory\n" in index
    assert "### Fig. 10: Inference time per mAP group across devices\n" in index
    assert "### Inference time per image vs batch size: cpu_400mb (drawn as the paper's Figs. 3-6, which show no " \
           "such device)\n" in index
    assert "### Peak memory vs batch size: cpu (drawn as the paper's Figs. 7a-b, which show no such device)\n" in index
    assert "### Time/accuracy Pareto front\n" in index  # odperf's own: no figure of the paper
    _, index = gpu
    assert "### Fig. 4b: Inference time per image vs batch size: v100_sxm2\n" in index
    assert "### Fig. 7" not in index  # the paper showed no V100 SXM2 memory figure


def test_a_model_run_tile_by_tile_says_so_in_the_legend(tmp_path: Path):
    """On the H200 the untrained full-size detector failed the batch probe: its flat memory across batch
    sizes is its tiles going one call each, which the legend must say rather than suggest batching."""
    run = Path(__file__).parents[1] / "reports" / "gpu-h200" / "gpu.json"
    report = build_report(load_runs([run]))
    write_report(report, tmp_path)
    legend = [t.get_text() for t in main_axes(plot(report, "memory_vs_batch_h200.png")).get_legend().get_texts()]
    assert sorted(legend) == ["faster_rcnn_fpn_torch", "fasterrcnn_resnet50_fpn_v2 (tile by tile)"]


def test_the_stream_report_draws_the_knee_with_its_deadline_and_the_latency_at_the_line(stream):
    report, index = stream
    run = load_run(STREAMS / "h200.json")
    peak = next(r for r in run.records if (r.stream or {}).get("scenario") == "peak").stream
    knee = plot(report, "stream_knee_h200.png")
    ax = knee.figure.axes[0]
    steps = sorted(p["rate"] for p in peak["peak"]["points"])
    drawn = {round(float(x), 6) for line in ax.get_lines() if line.get_marker() == "o" for x in line.get_xdata()}
    assert {round(r, 6) for r in steps} <= drawn  # every step of the search, at its offered rate
    assert peak["line"]["deadline_s"] in limit_values(ax)
    server = plot(report, "stream_latency_h200.png")
    assert server.figure.axes[0].get_lines()
    assert "### h200: latency percentiles against offered rate (the knee)\n" in index
    # with and without the prefetch thread: two measurements, side by side in the capacity table
    capacity = index.split("## Capacity: does the device hold the line", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in capacity.splitlines() if ln.startswith("| h200 ")]
    for name, prefetch in (("h200.json", "no"), ("h200-prefetch.json", "yes")):
        rec = next(r for r in load_run(STREAMS / name).records if (r.stream or {}).get("scenario") == "peak")
        (row,) = [r for r in rows if r[-1] == prefetch]
        assert row[2] == "64" and row[6] == "yes"  # batch 64 holds the line
        assert row[9] == str(rec.stream["capacity"]["cameras_per_device"])
    labels = [t.get_text() for t in knee.figure.legends[0].get_texts()]
    assert "faster_rcnn_fpn_torch b64 prefetch p99" in labels and "faster_rcnn_fpn_torch b64 p99" in labels
