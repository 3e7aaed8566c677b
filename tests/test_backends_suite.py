"""TensorFlow and PyTorch detectors through one suite run, one saved JSON and one report."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import torch_models as tm
from test_suite import run_pytest
from odperf.report.readme import tables_of
from odperf.results import load_run

pytestmark = pytest.mark.skipif(not tm.HAVE_TORCH, reason="PyTorch is not installed (pip install odperf[torch])")


def test_both_runtimes_in_one_run_and_one_json(tmp_path: Path):
    script = tm.build(tmp_path / "models")["script"]
    out_json = tmp_path / "run.json"
    no_expectations = tmp_path / "none.toml"  # this test is about the records, not deadlines on a loaded CPU
    no_expectations.write_text("")
    out = run_pytest("benchmarks/test_inference.py", "-p", "no:xdist", "-q",
                     f"--odperf-models=centernet_tiny,{script}", "--odperf-batch-sizes=64",
                     "--odperf-images=2", "--odperf-devices=cpu", f"--benchmark-json={out_json}",
                     f"--odperf-expectations={no_expectations}")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = load_run(out_json)
    by_model = {r.model: r for r in run.records}
    assert set(by_model) == {"centernet_tiny", "tiny"}
    assert by_model["centernet_tiny"].backend == "tensorflow" and by_model["tiny"].backend == "torch"
    assert all(r.outcome == "ok" and r.images_timed == 2 and r.runtime_version for r in run.records)
    assert set(run.machine_info["odperf"]["runtimes"]) == {"tensorflow", "torch"}
    # ... and one report, the runtime of each row beside it
    report = subprocess.run([sys.executable, "-m", "odperf.cli", "report", str(out_json), "--out",
                             str(tmp_path / "report")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "MPLBACKEND": "Agg"})
    assert report.returncode == 0, report.stderr
    tables = tables_of((tmp_path / "report" / "tables.md").read_text())
    measurements = next(t for heading, t in tables.items() if heading.startswith("Time per image"))
    model, runtime = measurements.header.index("model"), measurements.header.index("runtime")
    runtimes = {(row[model], row[runtime].split("+")[0]) for row in measurements.rows}
    assert runtimes == {("tiny", f"torch {metadata.version('torch')}"),
                        ("centernet_tiny", f"tensorflow {metadata.version('tensorflow')}")}


def test_runtime_markers_select_by_backend(tmp_path: Path):
    common = ("benchmarks/test_inference.py", "--collect-only", "-q", "-p", "no:xdist", "--odperf-devices=cpu",
              "--odperf-batch-sizes=8", "--odperf-models=embedded,torchvision")
    ids = lambda out: {line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "[" in line}  # noqa: E731
    torch_ids, tf_ids = ids(run_pytest(*common, "-m", "torch")), ids(run_pytest(*common, "-m", "tensorflow"))
    assert "fasterrcnn_resnet50_fpn_v2-b8-cpu" in torch_ids and "centernet_tiny-b8-cpu" in tf_ids
    assert not torch_ids & tf_ids
