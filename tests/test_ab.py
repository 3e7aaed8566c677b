"""``odperf ab``: two sides measured interleaved by the real suite in real worker processes, then gated."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from suite_runs import ROOT, suite_env

from odperf.results import load_run

MODELS = ROOT / "fixtures" / "models"


def ab(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``odperf ab`` with its temporary checkouts under ``tmp_path/tmp`` (TMPDIR), to be found there."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "odperf.cli", "ab", "--out", str(tmp_path / "ab"), *args],
                          cwd=ROOT, env=suite_env({"TMPDIR": str(tmp_path / "tmp")}), capture_output=True,
                          text=True, timeout=1800)


def test_a_git_ref_against_this_checkout_interleaved_and_gated(tmp_path: Path):
    # Thresholds no run of the same code on both sides can exceed (10x), so the verdict is known: a pass,
    # exit 0, with outcomes and mAP still gated exactly. Failing verdicts: the next test.
    done = ab(tmp_path, "--baseline-ref", "HEAD", "--pairs", "2", "--images", "3", "--batch-sizes", "64",
              "--accuracy", "--strict", "--time-threshold", "10", "--deploy-threshold", "10",
              "--memory-threshold", "10")
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert out.strip().splitlines()[-1].startswith("odperf ab: pass")
    assert "baseline: git ref HEAD (" in out and "candidate: this odperf" in out
    order = [line.rsplit(": ", 1)[1] for line in out.splitlines() if line.startswith("odperf ab: pair ")]
    assert order == ["baseline", "candidate", "candidate", "baseline"]  # A B, then B A
    assert "pairs: centernet_tiny batch 64: candidate/baseline medians" in out
    # two pairs are too few for the paired test: said so, never a silent pass
    assert "time: centernet_tiny batch 64: geometric mean ratio" in out and "over 2 pairs" in out
    assert "undecided" in out
    assert "deployment: centernet_tiny batch 64:" in out
    # The same code and models on both sides: what is deterministic is equal, and gated exactly.
    assert "FAIL outcome" not in out and "FAIL map" not in out and "1 mAPs against the baseline" in out
    merged = load_run(tmp_path / "ab" / "candidate.json")
    [rec] = merged.records
    assert len(merged.stats[rec.key]["data"]) == 6 and rec.images_timed == 6  # 2 slots x 3 rounds
    assert 0 < rec.model_memory_mb < rec.peak_memory_mb and rec.map is not None
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert str(tmp_path / "tmp") not in worktrees and not list((tmp_path / "tmp").glob("odperf-ab-*"))  # gone


def test_another_model_folder_as_the_baseline_fails_on_what_changed(tmp_path: Path):
    """centernet_tiny against ssd_fpn under one name: the candidate is several times slower, its mAP differs."""
    done = ab(tmp_path, "--baseline-models", f"det={MODELS / 'centernet_tiny'}",
              "--candidate-models", f"det={MODELS / 'ssd_fpn'}", "--pairs", "2", "--images", "3",
              "--batch-sizes", "64", "--accuracy", "--strict")
    assert done.returncode == 1, done.stderr + done.stdout
    assert "FAIL time: det batch 64" in done.stdout and "significant" in done.stdout
    assert "FAIL map: det" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("odperf ab: FAIL")
    slots = sorted(p.name for p in (tmp_path / "ab").glob("*-?.json"))
    assert slots == ["baseline-1.json", "baseline-2.json", "candidate-1.json", "candidate-2.json"]
    first = json.loads((tmp_path / "ab" / "baseline-1.json").read_text())
    assert len(first["benchmarks"][0]["stats"]["data"]) == 3  # every round saved


def test_without_a_baseline_it_says_what_to_give(tmp_path: Path):
    done = ab(tmp_path)
    assert done.returncode == 2 and "needs a baseline: --baseline-ref" in done.stderr
    done = ab(tmp_path, "--baseline-python", str(tmp_path / "nowhere" / "python"))
    assert done.returncode == 2 and "no such executable" in done.stderr and "Traceback" not in done.stderr
    done = ab(tmp_path, "--baseline-ref", "no-such-ref")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "no-such-ref" in line and "git rev-parse" in line
    assert not (tmp_path / "ab").exists()  # a bad ref leaves no empty --out folder behind


def test_calibration_counts_false_alarms_and_catches_a_planted_slowdown(tmp_path: Path):
    """One A/A and one planted comparison (the worker spins 200% of each image's time: unmistakable even on a
    loaded machine), each gated under the given thresholds and CI's; the planted commit is on no branch."""
    done = ab(tmp_path, "--calibrate", "1", "--planted-delay", "2.0", "--pairs", "2", "--images", "2",
              "--batch-sizes", "64")
    assert done.returncode == 0, done.stderr + done.stdout
    text = (tmp_path / "ab" / "calibration" / "calibration.md").read_text()
    assert text.startswith("# odperf ab calibration: 1 A/A and 1 planted +200%")
    rates = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:4]] for ln in text.splitlines()
             if ln.startswith("| given") or ln.startswith("| CI's") or ln.startswith("| default")}
    given = "given (+10%, alpha 0.05, slot alpha 0.01, 2 pairs)"
    assert set(rates) == {given}  # CI's and the default need more pairs than were measured: said so
    assert rates[given][1] == "1/1"  # the planted slowdown is caught
    assert "- CI's (+15%, alpha 0.05, slot alpha 0.01, 6 pairs): not judged, it needs 6 pairs" in text
    planted = next(ln for ln in text.splitlines() if ln.startswith("| planted 1 |"))
    ratio = float(planted.split("|")[2].split()[-1])
    # 3x the candidate's own time per image; against another process's time, which on a loaded machine can
    # sit a third off (reports/gate-calibration), so the bound leaves room for that and still needs the spin
    assert ratio > 1.6, planted
    assert "FAIL time: centernet_tiny batch 64" in planted
    # 2 pairs: too few to test, and above the threshold, so it fails; the verdict whole, never cut short
    assert planted.rstrip(" |").endswith("undecided: too few rounds for the test to ever be significant; "
                                         "run more pairs (--pairs)"), planted
    branches = subprocess.run(["git", "branch", "--all", "--contains", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout
    assert "planted" not in branches
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "odperf-planted-" not in worktrees and "odperf-ab-" not in worktrees


def ab_args(*argv: str):
    from odperf.cli import build_parser

    return build_parser().parse_args(["ab", *argv])


def test_a_calibration_judges_every_setting_on_its_own_first_pairs():
    """Measured with 6 pairs: the given thresholds, CI's and the defaults (4 pairs) are all judged, each on
    the slots a run of its own number of pairs would have measured."""
    from odperf.commands import ab
    from odperf.commands.ab import calibrate as ab_calibrate

    judged, skipped = ab_calibrate.settings(ab_args("--calibrate", "10", "--pairs", "6", "--time-threshold", "0.2",
                                                    "--batch-sizes", "64"))
    assert not skipped
    assert {name: s.pairs for name, s in judged.items()} == {
        "given (+20%, alpha 0.05, slot alpha 0.01, 6 pairs)": 6,
        "CI's (+15%, alpha 0.05, slot alpha 0.01, 6 pairs)": 6,
        "default (+10%, alpha 0.05, slot alpha 0.01, 4 pairs)": 4}
    judged, _ = ab_calibrate.settings(ab_args("--calibrate", "10", *sum(
        ([f"--{k.replace('_', '-')}", str(v)] for k, v in ab.CI_SETTINGS.items()), [])))
    assert list(judged) == ["given (+15%, alpha 0.05, slot alpha 0.01, 6 pairs)", "default (+10%, alpha 0.05, "
                            "slot alpha 0.01, 4 pairs)"]  # CI's is the given one: judged once
    _, skipped = ab_calibrate.settings(ab_args("--calibrate", "10", "--pairs", "6", "--batch-sizes", "1,64"))
    assert skipped == ["CI's (+15%, alpha 0.05, slot alpha 0.01, 6 pairs): not judged, it runs batch sizes 64 "
                       "(give --batch-sizes 64)"]  # another selection than the one measured
    slots = {"baseline": [Path(f"b{i}") for i in range(6)], "candidate": [Path(f"c{i}") for i in range(6)]}
    assert ab_calibrate.first_pairs(slots, 4) == {"baseline": slots["baseline"][:4],
                                                   "candidate": slots["candidate"][:4]}


def test_ci_settings_are_what_ci_runs(monkeypatch):
    """--ci sets CI's calibrated thresholds and pairs, and gates outcomes and mAP exactly."""
    from odperf.commands import ab

    seen: dict = {}

    def stop(args):  # what would be measured, without measuring it
        seen.update(vars(args))
        raise SystemExit(0)

    monkeypatch.setattr(ab, "measure_sides", stop)
    with pytest.raises(SystemExit):
        ab.cmd_ab(ab_args("--ci", "--baseline-ref", "HEAD"))
    # The README's values, written here independently of ab.CI_SETTINGS: what CI runs is what it says.
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "CI's (`--ci`): time +15%, alpha 0.05, 6 pairs |" in readme  # the calibration table's row
    flags = re.search(r"\(`--ci`: `([^`]+)`\)", readme).group(1).split()
    assert flags == ["--batch-sizes", "64", "--time-threshold", "0.15", "--alpha", "0.05", "--slot-alpha", "0.01",
                     "--pairs", "6", "--accuracy", "--strict"]
    assert (seen["batch_sizes"], seen["time_threshold"], seen["alpha"], seen["slot_alpha"], seen["pairs"]) == \
        ("64", 0.15, 0.05, 0.01, 6)
    assert seen["accuracy"] is True and seen["strict"] is True
    assert '--ci' in (ROOT / "tasks.sh").read_text().split("odperf.cli ab", 1)[1].splitlines()[0]  # CI's command
