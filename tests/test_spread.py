"""The spread study's parts that run without a GPU: its command line and errors, the order of workers,
the environment a variant gives its worker (real CPU workers), the analysis and what it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import torch_models as tm
from odperf.errors import OdperfError
from nvml_standin import FakeGpu, NvmlStandIn
from odperf.commands import spread
from odperf.commands.spread import (
    VARIANTS,
    StudyConfig,
    Variant,
    environment,
    gpu_local,
    main,
    parse_config,
    run_study,
    write_study,
)
from odperf.measure import probes
from odperf.commands.spread_analysis import analyse, spread_of

SMALL_GRID = (1, 3, 300)


@pytest.mark.parametrize(("args", "words"), [
    (["--variants", "baseline,warp_drive"], "--variants: unknown warp_drive; known: baseline, eager_loading"),
    (["--repeats", "1"], "--repeats 1: a spread needs at least 2 baseline workers"),
    (["--images", "0"], "--images must be at least 1, got 0"),
    (["--dataset", "no/such/root"], "--dataset no/such/root: no such folder"),
    (["--variants", "gpu_local_cores"], "--variants gpu_local_cores: pins the worker near a GPU; a CPU study has none"),
])
def test_a_bad_argument_is_one_line_and_nothing_is_written(tmp_path: Path, capsys, args, words):
    out = tmp_path / "spread"
    assert main(["--out", str(out), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and not out.exists()


def test_without_a_gpu_the_command_measures_and_writes_nothing(tmp_path: Path):
    out = tmp_path / "reports" / "gpu-none" / "spread"
    done = subprocess.run([sys.executable, "-m", "odperf.gpu_check", "spread", "--out", str(out)],
                          capture_output=True, text=True, env=tm.child_env(), timeout=300)
    assert done.returncode == 2 and "spread study: no GPU here" in done.stderr, done.stderr
    assert "Nothing was measured or written" in done.stderr and not out.exists()


def test_workers_interleave_and_the_baseline_is_always_in(tmp_path: Path):
    config, out = parse_config(["--out", str(tmp_path), "--variants", "threads_4,eager_loading",
                                "--repeats", "3", "--variant-repeats", "1"])
    assert config.variants == ("baseline", "threads_4", "eager_loading") and out == tmp_path
    assert [v.name for v in config.order()] == ["baseline", "threads_4", "eager_loading", "baseline", "baseline"]


def test_a_cpu_study_leaves_the_gpu_only_variant_out_and_a_gpu_study_has_them_all(tmp_path: Path):
    cpu, _ = parse_config(["--out", str(tmp_path), "--device", "cpu"])
    gpu, _ = parse_config(["--out", str(tmp_path)])
    assert "gpu_local_cores" not in cpu.variants and gpu.variants == tuple(VARIANTS)


def test_the_cores_near_the_gpu_are_pinned_only_where_that_changes_something(monkeypatch):
    allowed = os.sched_getaffinity(0)
    gpu = FakeGpu("NVIDIA H200", 141 * 1024**3, local_cpus=(min(allowed),))
    monkeypatch.setattr(probes, "import_nvml", lambda: NvmlStandIn([gpu]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if len(allowed) > 1:
        assert gpu_local("gpu:0") == ({min(allowed)}, f"cores {min(allowed)}")
    gpu.local_cpus = tuple(allowed)
    cores, why = gpu_local("gpu:0")
    assert cores is None and "is near the GPU already" in why
    gpu.local_cpus = None  # NotSupported
    assert gpu_local("gpu:0") == (None, "NVML does not give this GPU's CPU affinity")
    monkeypatch.setattr(probes, "import_nvml", lambda: None)
    assert gpu_local("gpu:0")[0] is None


def test_a_variants_environment_is_set_for_its_worker_and_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("CUDA_MODULE_LOADING", raising=False)
    with environment({"OMP_NUM_THREADS": "4", "CUDA_MODULE_LOADING": "EAGER"}):
        assert os.environ["OMP_NUM_THREADS"] == "4" and os.environ["CUDA_MODULE_LOADING"] == "EAGER"
    assert os.environ["OMP_NUM_THREADS"] == "2" and "CUDA_MODULE_LOADING" not in os.environ


def worker(k: int, variant: str, mean: float, clock: float, device: float | None, times: list[float]) -> dict:
    """A worker's figures as the study keeps them (made up here to check the arithmetic, not measured)."""
    return {"worker": k, "variant": variant, "outcome": "ok", "error": None, "mean_s": mean,
            "device_mean_s": device, "host_share": None if device is None else 1 - device / mean,
            "times_s": times, "sm_clock_mhz": {"min": clock, "median": clock, "max": clock},
            "utilization_pct": {"min": clock / 25, "median": clock / 20, "max": 100.0},
            "clock_event_reasons": {"gpu_idle": 0.1, "sw_power_cap": 0.5} if clock < 1900 else {"gpu_idle": 0.1},
            "runtime_settings": {"threads": 8}, "card_before": {"processes": 0, "used_mb": 500.0}}


def test_the_analysis_finds_what_moves_with_the_time():
    profile = [1.0, 1.3, 0.9, 1.1]  # the same images slower in every worker
    workers = [worker(0, "baseline", 0.10, 1980, 0.08, [0.10 * p for p in profile]),
               worker(1, "baseline", 0.17, 1410, 0.15, [0.17 * p for p in profile]),
               worker(2, "threads_4", 0.11, 1900, 0.09, [0.11 * p for p in profile]),
               worker(3, "baseline", 0.12, 1755, 0.10, [0.12 * p for p in profile]),
               worker(4, "baseline", 0.15, 1600, 0.13, [0.15 * p for p in profile]),
               {"worker": 5, "variant": "threads_4", "outcome": "crash", "error": "crash: signal 11",
                "mean_s": None, "times_s": []}]
    a = analyse(workers)
    assert a["baseline"]["max_over_min"] == pytest.approx(1.7)
    assert a["baseline"]["pair_ratios"] == pytest.approx([1.7, 0.15 / 0.12])
    assert a["correlations"]["SM clock median MHz"]["rho"] == pytest.approx(-1.0)
    assert a["correlations"]["SM clock median MHz"]["n"] == 5
    assert a["correlations"]["GPU busy median %"]["rho"] == pytest.approx(-1.0)  # the busier, the faster
    assert "other processes on the card" not in a["correlations"]  # constant: no correlation to state
    assert a["parts"]["device"]["range_s"] == pytest.approx(0.07)
    assert a["parts"]["host"]["range_s"] == pytest.approx(0.0, abs=1e-12)
    assert a["image_agreement"]["mean_rho"] == pytest.approx(1.0)
    assert a["variants"]["threads_4"] == {"workers": 2, "ok": 1, "median_s": 0.11,
                                          "over_baseline": pytest.approx(0.11 / 0.135), "max_over_min": None}
    assert a["workers_with_clock_events"] == {"sw_power_cap": 3}
    assert a["failed"] == ["worker 5 threads_4: crash: crash: signal 11"]
    assert a["missing_gpu_figures"] == []
    workers[0]["device_mean_s"] = None  # a GPU worker whose device time never came back
    assert analyse(workers)["missing_gpu_figures"] == ["worker 0: no device time"]
    assert spread_of([0.1]) is None


def test_a_cpu_study_runs_fresh_workers_with_each_variants_setting_and_writes_its_files(
        tmp_path: Path, engine_dataset: Path, monkeypatch):
    # torch takes no more threads than the machine has cores (2 here): the variant asks for 1
    monkeypatch.setitem(VARIANTS, "threads_1", Variant("threads_1", {"OMP_NUM_THREADS": "1"}, tests="host threads"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    model = tm.build(tmp_path / "models")["script"]
    config = StudyConfig(device="cpu", model=str(model), batch_size=4, images=3, repeats=2, variant_repeats=1,
                         variants=("baseline", "threads_1"), dataset=str(engine_dataset),
                         request={"grid": SMALL_GRID})
    config, workers = run_study(config)
    assert [w["variant"] for w in workers] == ["baseline", "threads_1", "baseline"]
    assert all(w["outcome"] == "ok" for w in workers), [w["error"] for w in workers]
    assert len({w["pid"] for w in workers}) == 3  # a fresh process each
    assert workers[1]["runtime_settings"]["threads"] == 1  # OMP_NUM_THREADS reached that worker only
    assert workers[0]["runtime_settings"]["threads"] == workers[2]["runtime_settings"]["threads"]
    assert all(w["device_mean_s"] is None and w["sm_clock_mhz"] is None for w in workers)  # a CPU: nothing
    assert all(w["card_before"] is None and len(w["times_s"]) == 3 for w in workers)
    md = write_study(tmp_path / "out", config, workers, "python -m odperf.gpu_check spread --device cpu", "CPU", 1.0)
    saved = json.loads((tmp_path / "out" / "spread.json").read_text())
    assert [w["pid"] for w in saved["workers"]] == [w["pid"] for w in workers]
    assert saved["analysis"]["baseline"]["n"] == 2 and saved["device_name"] == "CPU"
    text = md.read_text()
    assert "on CPU (cpu)" in text and "| threads_1 | host threads | 1 (1) |" in text
    assert "| none |" not in text  # no clock-event reasons on a CPU: unknown, not "none"
    with pytest.raises(OdperfError):
        parse_config(["--out", "x", "--variants", "nope"])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning one core apart needs two")
def test_a_pinned_variants_worker_runs_on_its_cores_and_the_study_keeps_its_own(
        tmp_path: Path, engine_dataset: Path, monkeypatch):
    """The pinned variant's worker may run on the one core it is given (the worker's own runtime reads its
    affinity); the baseline's workers, and the study's own process afterwards, keep theirs. Every worker's
    load while timed is in its figures. (Its CPU use is not held to one core here: over a few 30 ms images the
    kernel's 10 ms CPU ticks once put it at 1.22 cores.)"""
    allowed = os.sched_getaffinity(0)
    core = min(allowed)
    monkeypatch.setitem(VARIANTS, "pinned_one", Variant("pinned_one", cores="gpu_local", tests="placement"))
    monkeypatch.setattr(spread, "gpu_local", lambda device: ({core}, f"cores {core}"))
    model = tm.build(tmp_path / "models")["script"]
    config = StudyConfig(device="cpu", model=str(model), batch_size=4, images=4, repeats=2, variant_repeats=1,
                         variants=("baseline", "pinned_one"), dataset=str(engine_dataset),
                         request={"grid": SMALL_GRID})
    given = config
    config, workers = run_study(config)
    assert given.pinned is None and config.pinned == f"cores {core}"  # the study's copy says; the given one is left
    assert os.sched_getaffinity(0) == allowed  # this process's own cores, given back
    assert [w["variant"] for w in workers] == ["baseline", "pinned_one", "baseline"]
    assert all(w["outcome"] == "ok" for w in workers), [w["error"] for w in workers]
    assert [w["runtime_settings"]["cpu_affinity"] for w in workers] == [len(allowed), 1, len(allowed)]
    assert workers[1]["pinned_to"] == f"cores {core}" and "pinned_to" not in workers[0]
    for w in workers:
        load = w["load"]
        assert load["wall_s"] > 0 and load["others_cores"] >= 0
        assert load["steal_cores"] is None or 0 <= load["steal_cores"] <= load["others_cores"] + 0.05
    text = write_study(tmp_path / "out", config, workers, "spread", "CPU", 1.0).read_text()
    assert f"Pinned near the GPU (pinned_one): ran on cores {core}." in text
    assert "| host: worker / others / steal cores | warm-up |" in text
    from odperf.commands.spread_analysis import warmup_text

    assert warmup_text({"images": 7, "steady": True}, 3.14) == "7 images, settled, 3.1 s"
    assert warmup_text({"images": 30, "steady": False}, None) == "30 images, not settled, -"
    assert warmup_text(None, 0.52) == "0.5 s"
