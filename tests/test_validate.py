"""`odperf validate`: measured mAP against the reported one, end to end and on known figures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from odperf.commands.validate import VAL2017_NOTE, reference_map, render, validation_of
from odperf.zoo.registry import embedded_models, get


def test_reference_of_zoo_and_embedded_models():
    assert reference_map(get("faster_rcnn_nas")) == (0.43, "reported (zoo table)")
    assert reference_map(get("faster_rcnn_nas_lowprop"))[0] is None
    for spec in embedded_models():
        value, kind = reference_map(spec)
        assert kind == "measured at training" and 0 < value < 1


def test_tolerance_is_absolute_ap_both_ways():
    spec = get("ssd_mobilenet_v1")  # reported 21, paper tested 26.3
    ok = validation_of(spec, {"AP": 0.20}, tolerance=0.02)
    assert ok.passed and ok.difference == pytest.approx(-0.01)
    far = validation_of(spec, {"AP": 0.30}, tolerance=0.02)
    assert far.passed is False
    text = render(far)
    assert "OUTSIDE tolerance" in text and "26.3" in text and "+9.0" in text
    assert validation_of(get("faster_rcnn_nas_lowprop"), {"AP": 0.3}, 0.02).passed is None


def test_validate_an_embedded_model_as_a_user_would():
    spec = min(embedded_models(), key=lambda s: s.measured.get("flops_per_tile") or 0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run(
        [sys.executable, "-m", "odperf.cli", "validate", spec.name, "--images", "3", "--tolerance", "0.10"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "within tolerance" in out.stdout and "measured at training" in out.stdout
    assert "AP50" in out.stdout and "189 tiles scored" in out.stdout
    assert VAL2017_NOTE not in out.stdout
