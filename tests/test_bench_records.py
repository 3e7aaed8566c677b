"""A real run of the timing benchmark keeps what it measured when accuracy cannot be scored, and fails the
case on the scorer's own words; the scorer chosen (--odperf-scorer, odperf bench --scorer) reaches the record."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import odperf
from odperf.commands import bench
from odperf.suite.launch import pytest_command
from child_env import child_env

ROOT = Path(odperf.__file__).resolve().parents[2]


def test_an_accuracy_error_keeps_the_times_and_memory_and_fails_the_case(engine_models, engine_dataset, tmp_path):
    # The "alien" model answers class 42, which the dataset's label map (1..5) does not have.
    out = tmp_path / "run.json"
    env = child_env()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_inference.py"), "-p", "no:xdist",
         "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT), f"--odperf-models={engine_models['alien']}",
         "--odperf-devices=cpu", "--odperf-batch-sizes=64", "--odperf-images=3", "--odperf-accuracy",
         f"--odperf-dataset={engine_dataset}", "--odperf-split=val2017", f"--benchmark-json={out}"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "returns class ids [42]" in run.stdout
    saved = json.loads(out.read_text())
    (bench,) = saved["benchmarks"]
    info = bench["extra_info"]
    assert bench["stats"]["rounds"] == 3 and info["time_per_image_s"]["mean"] > 0 and info["images_timed"] == 3
    assert info["peak_memory_mb"] > 100 and info["memory_samples"] > 10
    assert info["outcome"] == "ok" and info["map"] is None
    assert info["error"].startswith("accuracy: AccuracyError: ") and "returns class ids [42]" in info["error"]
    (record,) = saved["odperf"]["records"]
    assert record["error"] == info["error"] and record["peak_memory_mb"] == info["peak_memory_mb"]


def test_the_scorer_option_reaches_the_record(engine_models, engine_dataset, tmp_path):
    out = tmp_path / "accuracy.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_accuracy.py"), "-p", "no:cacheprovider",
         "-q", "-n", "0", "--rootdir", str(ROOT), f"--odperf-models={engine_models['tiny']}", "--odperf-devices=cpu",
         "--odperf-images=2", f"--odperf-dataset={engine_dataset}", "--odperf-split=val2017",
         "--odperf-scorer=pycocotools", f"--benchmark-json={out}"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (record,) = json.loads(out.read_text())["odperf"]["records"]
    assert record["accuracy"]["scorer"] == "pycocotools" and record["accuracy"]["AP"] == record["map"]
    refused = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_accuracy.py"), "-p", "no:cacheprovider",
         "--rootdir", str(ROOT), "--odperf-scorer=cocoapi"], cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert refused.returncode == 4 and "invalid choice: 'cocoapi'" in refused.stderr


def test_bench_passes_its_scorer_to_pytest():
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    for argv, scorer in ((["bench"], "faster-coco-eval"), (["bench", "--scorer", "pycocotools"], "pycocotools")):
        args = parser.parse_args(argv)
        cmd = pytest_command(bench.passes(args)[0], bench.selection(args), Path("main.json"))
        assert cmd[cmd.index("--odperf-accuracy") + 1] == f"--odperf-scorer={scorer}"
    smoke = parser.parse_args(["bench", "--smoke"])
    cmd = pytest_command(bench.passes(smoke)[0], bench.selection(smoke), Path("smoke.json"))
    assert not any(c.startswith("--odperf-scorer") or c == "--odperf-accuracy" for c in cmd)  # never scored
    *_, stream = bench.passes(smoke)  # its streams: one embedded model of each runtime, every scenario
    cmd = pytest_command(stream, bench.selection(smoke), Path("smoke-stream.json"))
    assert "--odperf-models=centernet_tiny,fcos_tiny_torch" in cmd and cmd[3].endswith("test_stream.py")
    mine = parser.parse_args(["bench", "--smoke", "--models", "ssd_fpn"])
    assert "--odperf-models=ssd_fpn" in pytest_command(bench.passes(mine)[-1], bench.selection(mine), Path("s.json"))


def test_bench_lets_the_timing_pass_choose_its_images_and_spends_little_on_the_emulated_pass():
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench"])
    timing, emulated, *_ = bench.passes(args)
    cmd = pytest_command(timing, bench.selection(args), Path("main.json"))
    assert f"--odperf-max-images={bench.MAIN_IMAGES}" in cmd and "--odperf-accuracy" in cmd
    assert not any(c.startswith("--odperf-images") for c in cmd)
    cmd = pytest_command(emulated, bench.selection(args), Path("emulated.json"))
    # what fits and in how much memory: a few images, no scoring (the timing pass scores the same detections)
    assert f"--odperf-images={bench.EMULATED_IMAGES}" in cmd and "--odperf-accuracy" not in cmd
    assert not any(c.startswith("--odperf-max-images") for c in cmd)
    fixed = parser.parse_args(["bench", "--images", "7"])
    assert "--odperf-images=7" in pytest_command(bench.passes(fixed)[0], bench.selection(fixed), Path("main.json"))
