"""The GPU check's own logic on a machine without a GPU: it says so plainly and never passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from odperf.commands.gpu_check import Finding, no_gpu_reason, within


def test_without_a_gpu_it_checks_nothing_and_says_why(tmp_path: Path):
    out = tmp_path / "report"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "odperf.commands.gpu_check", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "no GPU to check here" in done.stderr and "Nothing was checked" in done.stderr
    assert not out.exists()  # no report that could be mistaken for a GPU's figures


def test_reason_names_what_is_missing():
    reason = no_gpu_reason()
    assert reason is not None and ("NVML" in reason or "CUDA" in reason or "PyTorch" in reason)


def test_tolerance_of_the_memory_figure():
    assert within(2147.0, 2147.48) and within(2147.48 * 1.049, 2147.48)
    assert not within(2147.48 * 1.06, 2147.48) and not within(None, 2147.48) and not within(0.0, 2147.48)


def test_findings_render_their_figures_and_problems():
    f = Finding("Memory", rows=[("peak MB", 2147.4836), ("probe", None)], problems=["too low"])
    text = f.markdown()
    assert "| peak MB | 2147 |" in text and "| probe | - |" in text and "- PROBLEM: too low" in text


def test_emulated_card_is_half_of_what_batch_64_needs_unless_given():
    from odperf.commands.gpu_check import emulated_cap_mb

    assert emulated_cap_mb(3000.0, None) == 1500  # cannot hold the measured need, whatever the model's input
    assert emulated_cap_mb(3000.0, 2000) == 2000  # --cap-mb wins
    assert emulated_cap_mb(None, None) is None and emulated_cap_mb(0.0, None) is None  # nothing to derive from


def test_the_stream_part_runs_the_suite_and_renders_its_report(tmp_path: Path):
    """The GPU check's streaming part is device-agnostic: here on the CPU, smoke-sized, with the prefetch
    thread (on an H200 its report once stopped on a bug in the stream figures), with the smallest embedded
    model (on a GPU the trained one; the path is the same)."""
    from odperf.commands.gpu_check import stream

    found = stream("cpu", "cpu", tmp_path, budget="smoke", deadline_s=60.0, prefetch_modes=(True,),
                   model="centernet_tiny")
    assert not found.problems, found.markdown()
    rows = dict(found.rows)
    assert rows["stream-prefetch: peak (ok)"].startswith("peak ") and "cameras per device" in rows["stream-prefetch: peak (ok)"]
    assert "holds the line: True" in rows["stream-prefetch: server (ok)"]
    assert rows["report"] == str(tmp_path / "report-stream" / "index.md")
    index = (tmp_path / "report-stream" / "index.md").read_text()
    assert "## Capacity" in index and "stream_knee_cpu.png" in index
