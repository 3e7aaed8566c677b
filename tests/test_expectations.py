"""Expectations files and the judgement of runs against them."""

from __future__ import annotations

from pathlib import Path

import pytest

from odperf.suite.judging import check_run
from odperf.suite.expectations import Expectation, ExpectationsError, ModelTags, load
from odperf.results import RunRecord
from odperf.zoo.registry import fixtures_dir, get

NAS = ModelTags("faster_rcnn_nas", "faster_rcnn", "paper", "highest")


@pytest.fixture(scope="module")
def shipped():
    return load(fixtures_dir() / "expectations.toml")


def _tags(name: str) -> ModelTags:
    spec = get(name)
    return ModelTags(spec.name, spec.meta_arch, spec.family, spec.map_group)


def test_paper_oom_expectations(shipped):
    for profile in ("p100", "v100_pcie", "v100_sxm2"):
        assert shipped.lookup(profile, NAS, 4).oom is True
        assert shipped.lookup(profile, NAS, 64).oom is True
        assert shipped.lookup(profile, NAS, 2).oom is False
    assert shipped.lookup("a100", NAS, 64).oom is None
    fpn = _tags("ssd_mobilenet_v1_fpn")
    assert shipped.lookup("tx2", fpn, 2).oom is True
    assert shipped.lookup("tx2", fpn, 1).oom is False


def test_paper_deadlines(shipped):
    assert shipped.lookup("v100_sxm2", _tags("ssd_mobilenet_v2"), 64).deadline_image_s == 1.0
    assert shipped.lookup("v100_pcie", _tags("ssd_mobilenet_v1"), 16).deadline_image_s == 4.0
    assert shipped.lookup("v100_sxm2", NAS, 1).deadline_image_s == 32.0
    assert shipped.lookup("v100_sxm2", _tags("ssd_mobilenet_v1"), 1).deadline_image_s is None


def test_later_rules_refine_and_car_interval_applies(tmp_path: Path):
    f = tmp_path / "e.toml"
    f.write_text(
        '[profiles.cpu]\ncar_interval_s = 100\n'
        '[[rule]]\nmodels = "*"\ndeadline_image_s = 5.0\nmap_floor = 0.2\n'
        '[[rule]]\nprofiles = ["cpu"]\nmodels = ["ssd"]\nbatches = [1, 2]\ndeadline_image_s = 9.0\n'
    )
    e = load(f)
    ssd = ModelTags("x", "ssd", "embedded", None)
    got = e.lookup("cpu", ssd, 2)
    assert (got.deadline_image_s, got.map_floor, got.deadline_car_s) == (9.0, 0.2, 100.0)
    assert e.lookup("cpu", ssd, 4).deadline_image_s == 5.0
    assert e.lookup("gpu", ssd, 1).deadline_car_s is None


@pytest.mark.parametrize(
    "body, message",
    [
        ('[[rule]]\nbatches = "lots"\n', "batches"),
        ("[[rule]]\noom = 1\n", "oom"),
        ("[[rule]]\ndeadline = 3\n", "unknown key"),
        ("[[rule]]\ndeadline_image_s = -1\n", "non-negative"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path: Path, body: str, message: str):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ExpectationsError, match=message):
        load(f)


def test_missing_file_says_how_to_fix(tmp_path: Path):
    with pytest.raises(ExpectationsError, match="--odperf-expectations"):
        load(tmp_path / "nope.toml")


def _record(**kw) -> RunRecord:
    base = dict(model="m", device_profile="cpu", batch_size=8, images_timed=4,
                time_per_image_s={"mean": 2.0, "median": 1.9}, peak_memory_mb=512.0, memory_probe="rss")
    base.update(kw)
    return RunRecord(**base)


def test_check_run_deadlines_give_figure_and_limit():
    (msg,) = check_run(_record(), Expectation(deadline_image_s=1.5))
    assert "2.000 s per image" in msg and "limit 1.500 s" in msg
    (msg,) = check_run(_record(), Expectation(deadline_car_s=100.0), images_per_car=95)
    assert "190.0 s per car" in msg and "limit 100.0 s" in msg
    assert check_run(_record(), Expectation(deadline_image_s=2.5, deadline_car_s=200)) == []


def test_check_run_oom_is_strict_both_ways():
    assert check_run(_record(outcome="oom"), Expectation(oom=True)) == []
    (msg,) = check_run(_record(outcome="oom", error="OOM when allocating"), Expectation())
    assert "unexpected out-of-memory" in msg and "512 MB" in msg
    (msg,) = check_run(_record(), Expectation(oom=True, notes=("paper says so",)))
    assert "expected out-of-memory did not happen" in msg and "paper says so" in msg


def test_check_run_map_floor_and_crash():
    (msg,) = check_run(_record(map=0.25), Expectation(map_floor=0.3))
    assert "0.250 < floor 0.300" in msg
    assert check_run(_record(map=0.35), Expectation(map_floor=0.3)) == []
    (msg,) = check_run(_record(outcome="crash", exit_signal=9, error="Killed"), Expectation())
    assert msg.startswith("crash") and "signal 9" in msg


def test_embedded_models_have_real_cpu_expectations(shipped):
    for name in ("centernet_tiny", "ssd_fpn", "faster_rcnn_fpn"):
        e = shipped.lookup("cpu", _tags(name), 64)
        assert e.deadline_image_s and 120.0 <= e.deadline_car_s <= 300.0 and 0.4 < e.map_floor < 0.8
        assert shipped.lookup("cpu_400mb", _tags(name), 8).oom is False
        # centernet_tiny at batch 64 sits on the 400 MB cap: measured both ways, so not asserted
        assert shipped.lookup("cpu_400mb", _tags(name), 64).oom == ("either" if name == "centernet_tiny" else True)
