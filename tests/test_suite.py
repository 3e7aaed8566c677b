"""The benchmark suite as users run it: real pytest subprocesses over benchmarks/, real workers, real JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suite_runs import run_pytest
from zoo_artifacts import write_tf2_saved_model


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory) -> Path:
    return write_tf2_saved_model(tmp_path_factory.mktemp("toy") / "toy_detector")


def test_collects_the_matrix_with_machine_free_ids():
    out = run_pytest(
        "benchmarks/test_inference.py", "--collect-only", "-q", "-p", "no:xdist",
        "--odperf-models=paper", "--odperf-batch-sizes=1,64", "--odperf-devices=cpu",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ids = [line.split("[", 1)[1].rstrip("]") for line in out.stdout.splitlines() if "::test_inference[" in line]
    assert len(ids) == 22 * 2
    assert "ssd_mobilenet_v2-b64-cpu" in ids and "faster_rcnn_nas-b1-cpu" in ids
    assert all(i.endswith("-cpu") for i in ids)


def test_marker_and_keyword_selection():
    common = ("benchmarks/test_inference.py", "--collect-only", "-q", "-p", "no:xdist",
              "--odperf-models=paper", "--odperf-batch-sizes=8", "--odperf-devices=cpu")
    out = run_pytest(*common, "-m", "faster_rcnn and map_highest")
    names = [line for line in out.stdout.splitlines() if "::test_inference[" in line]
    assert [n.split("[")[1] for n in names] == ["faster_rcnn_nas-b8-cpu]"]
    out = run_pytest(*common, "-k", "cpu and ssdlite")
    assert [n.split("[")[1] for n in out.stdout.splitlines() if "::test_inference[" in n] == [
        "ssdlite_mobilenet_v2-b8-cpu]"
    ]


def test_hardware_the_machine_lacks_gets_one_clear_line():
    out = run_pytest("benchmarks/test_inference.py", "-p", "no:xdist", "-m", "tx2", "--odperf-batch-sizes=1")
    text = out.stdout + out.stderr
    assert out.returncode == 5
    assert "odperf: no benchmark selected by -m 'tx2'" in text
    assert "no NVIDIA GPU or Jetson found" in text and "cpu (" in text


def test_xdist_is_refused_for_timing():
    out = run_pytest("benchmarks/test_inference.py", "-n", "2", "--odperf-batch-sizes=1")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "refuse pytest-xdist" in text and "-p no:xdist" in text


@pytest.mark.parametrize(
    ("markexpr", "refused"),
    [("accuracy or cpu", True), ("not accuracy", True), ("not  timing", False), ("accuracy and not gpu", False)],
)
def test_xdist_refusal_reads_m_as_pytest_does(markexpr, refused):
    """-m is evaluated as pytest evaluates it, against the markers of the run's timing cases: "accuracy or
    cpu" still selects timing cases on the cpu, "not  timing" (any spacing) selects none."""
    out = run_pytest("benchmarks", "-n", "2", "--collect-only", "-q", "-m", markexpr, "--odperf-batch-sizes=1",
                     "--odperf-devices=cpu")
    text = out.stdout + out.stderr
    assert ("refuse pytest-xdist" in text) == refused, text
    assert (out.returncode == 4) == refused, text  # pytest's exit code for a usage error


def test_missing_zoo_model_is_skipped_with_the_fetch_hint(tmp_path: Path):
    out = run_pytest(
        "benchmarks/test_inference.py", "-p", "no:xdist", "-rs",
        "--odperf-models=ssd_mobilenet_v2", "--odperf-batch-sizes=1", "--odperf-devices=cpu",
        f"--odperf-model-dir={tmp_path}",
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "1 skipped" in text
    assert "ssd_mobilenet_v2_coco_2018_03_29.tar.gz" in text and "odperf zoo fetch ssd_mobilenet_v2" in text


def test_real_run_saves_records_and_asserts_expectations(tmp_path: Path, toy_model: Path):
    expectations = tmp_path / "expect.toml"
    expectations.write_text(
        '[[rule]]\nmodels = "*"\nbatches = 1\ndeadline_image_s = 0.000001\n'
        '[[rule]]\nmodels = "*"\nbatches = 64\noom = true\nnote = "test: must run out of memory"\n'
    )
    json_path = tmp_path / "run.json"
    out = run_pytest(
        "benchmarks/test_inference.py", "-p", "no:xdist",
        f"--odperf-models={toy_model}", "--odperf-batch-sizes=1,64", "--odperf-devices=cpu",
        "--odperf-images=2", f"--odperf-expectations={expectations}", f"--benchmark-json={json_path}",
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "missed the per-image deadline" in text and "> limit 0.000 s" in text
    assert "expected out-of-memory did not happen" in text and "test: must run out of memory" in text
    data = json.loads(json_path.read_text())
    assert [b["name"] for b in data["benchmarks"]] == [
        "test_inference[toy_detector-b1-cpu]", "test_inference[toy_detector-b64-cpu]"
    ]
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        assert bench["stats"]["rounds"] == 2
        assert info["outcome"] == "ok" and info["images_timed"] == 2 and info["tiles_per_image"] == 64
        assert info["device_profile"] == "cpu" and info["model"] == "toy_detector"
        assert info["time_per_image_s"]["mean"] > 0 and info["tiles_per_second"] > 0
        assert info["deploy_s"]["total"] > info["deploy_s"]["first_inference"] > 0
        assert info["host_rss_peak_mb"] > 50 and info["peak_memory_mb"] > 50 and info["memory_probe"]
        assert 5 < info["sample_period_ms"]["mean"] < 50
        assert "harness_efficiency" not in info  # the bare loop is gone; its paired cost replaces it
        low, high = info["protocol_overhead_iqr_s"]
        assert 0 < low <= info["protocol_overhead_s"] <= high
        assert info["sampling"]["stopped_by"] == "fixed" and info["sampling"]["images"] == 2
        load = info["load"]  # the kernel's counters around the timed images
        assert load["cores"] >= 1 and load["wall_s"] > 0 and load["worker_cores"] > 0 and load["others_cores"] >= 0
        assert load["loaded"] == (load["others_share"] > load["threshold_share"])
    assert data["machine_info"]["odperf"]["profile"] == "cpu"
    assert len(data["odperf"]["records"]) == 2
    # Where the run's time went: the categories add up to its wall time, and the ratio is printed.
    breakdown = data["odperf"]["time_breakdown"]
    assert breakdown["cases"] == 2 and sum(breakdown["seconds"].values()) == pytest.approx(breakdown["wall_s"], abs=0.01)
    measured = sum(breakdown["seconds"][k] for k in ("timed inference", "deployment", "warm-up"))
    assert breakdown["seconds"]["timed inference"] > 0 and breakdown["seconds"]["deployment"] > 0
    assert breakdown["overhead_ratio"] == pytest.approx(breakdown["wall_s"] / measured, rel=1e-3)
    assert f"overhead ratio {breakdown['overhead_ratio']:.2f}" in text


def test_images_per_case_are_chosen_by_the_run_within_floor_and_ceiling(tmp_path: Path, toy_model: Path):
    """Without --odperf-images a case stops timing once its mean is within the target (+/-90% here, which
    a few images reach even on a busy machine), never below the floor nor above the ceiling; the record
    says so, and pytest-benchmark's rounds are the same."""
    json_path = tmp_path / "run.json"
    out = run_pytest(
        "benchmarks/test_inference.py", "-p", "no:xdist", f"--odperf-models={toy_model}",
        "--odperf-batch-sizes=64", "--odperf-devices=cpu", "--odperf-min-images=3", "--odperf-max-images=6",
        "--odperf-target-ci=0.9", f"--benchmark-json={json_path}",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (bench,) = json.loads(json_path.read_text())["benchmarks"]
    sampling = bench["extra_info"]["sampling"]
    assert 3 <= sampling["images"] <= 6
    assert sampling["stopped_by"] == ("target" if sampling["rel_ci"] <= 0.9 else "ceiling")
    assert (sampling["floor"], sampling["ceiling"], sampling["target_rel_ci"]) == (3, 6, 0.9)
    assert bench["stats"]["rounds"] == bench["extra_info"]["images_timed"] == sampling["images"]
    target = int(sampling["stopped_by"] == "target")
    assert (f"odperf: images per case chosen by the run: {target} case(s) within the target, {1 - target} at the "
            "ceiling (3-6 images timed per case, until the mean is within +/-90% (95% CI))") in out.stdout
    # a fixed count excludes the others: one usage line naming both
    out = run_pytest("benchmarks/test_inference.py", "-p", "no:xdist", f"--odperf-models={toy_model}",
                     "--odperf-images=2", "--odperf-target-ci=0.1", "--collect-only")
    assert out.returncode == 4 and "--odperf-images=2 fixes the images per case: drop --odperf-target-ci" in out.stderr
