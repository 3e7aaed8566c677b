"""The GPU check: proves odperf's GPU path on a real NVIDIA GPU in a few minutes, as one command.

    python -m odperf.gpu_check --out reports/gpu-<profile>

It runs through PyTorch (no TensorFlow needed) and shows, with real figures:
1. memory: a child process allocates a known block (2 GiB) through torch while the parent samples it
   with the engine's own probes; the headline probe's peak above the child's start must match the block
   within 5%, and the check says which probe headed and why (per-process NVML, or the device's figure
   where NVML does not list the child, as in containers);
2. an emulated smaller card: the trained embedded detector under a memory cap (half of what batch 64 needs) ends as ``oom`` and the next case
   still runs, with the allocator's peaks beside NVML's;
3. a batch sweep 1..64 of a trained embedded PyTorch detector and a full-size torchvision architecture
   through the real suite (pytest-benchmark JSON) and ``odperf report`` (time per image, tiles/s, peak GPU
   memory, mAP for the trained one);
4. with ``--stream``: the trained detector's streaming pass (MLPerf LoadGen, benchmarks/test_stream.py) at
   batch 64 against the paper's line (95 images per 2-minute car, 1 s per image at the 99th percentile),
   with the prefetch thread off and on: the peak rate the GPU holds and the cameras it serves.
It writes ``gpu_check.md`` (the figures and the command) next to the sweep's JSON and report. Exit
status: 0 all consistent, 1 a figure disagrees, 2 no GPU here (nothing was checked: never a pass).

    python -m odperf.gpu_check spread --out reports/gpu-<profile>/spread

runs the spread study instead (``odperf.commands.spread``): many fresh workers of one case, with variants
that each test one cause of the spread between processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from odperf.report.render import report_runs
from odperf.suite.launch import STREAMS, Selection, SuiteRun, child_env, pytest_command

GIB = 1 << 30
TOLERANCE = 0.05
TRAINED_MODEL = "faster_rcnn_fpn_torch"
FULL_SIZE_MODEL = "fasterrcnn_resnet50_fpn_v2"

# The child of the memory check: CUDA context first (its memory is not the block's), then the block.
_ALLOCATE = """
import json, sys, time, torch
torch.zeros(1, device="cuda"); torch.cuda.synchronize()
print("ready", flush=True); sys.stdin.readline()
block = torch.ones(int(sys.argv[1]) // 4, device="cuda"); torch.cuda.synchronize()
print(json.dumps({"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}), flush=True)
time.sleep(1.0)
"""


@dataclass
class Finding:
    """One part of the check: its figures as table rows, and what disagrees with expectations."""

    title: str
    rows: list[tuple[str, object]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| figure | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in self.rows]
        lines += [""] + [f"- PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


def no_gpu_reason() -> str | None:
    """Why there is no GPU to check here, or None when NVML and PyTorch both see one."""
    from odperf.measure.probes import import_nvml

    if import_nvml() is None:
        return "NVML is not available (no NVIDIA driver)"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (pip install odperf[torch])"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})"
    return None


def within(measured_mb: float | None, expected_mb: float, tolerance: float = TOLERANCE) -> bool:
    return measured_mb is not None and abs(measured_mb - expected_mb) <= tolerance * expected_mb


def check_memory(device: str, alloc_bytes: int = 2 * GIB) -> Finding:
    """A known allocation in a child, sampled by the engine's probes in this process."""
    from odperf.engine.runtime import worker_env
    from odperf.measure.memory import MemorySampler
    from odperf.measure.kinds import external_probes

    found = Finding(f"Memory: a {alloc_bytes / GIB:g} GiB block through torch, sampled every 10 ms")
    child = subprocess.Popen([sys.executable, "-c", _ALLOCATE, str(alloc_bytes)], env=worker_env(device),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if child.stdout.readline().strip() != "ready":
            found.problems.append(f"the allocating child did not start (exit {child.wait()})")
            return found
        probes = external_probes(device, child.pid)
        before = {p.name: p.read() for p in probes}
        sampler = MemorySampler(probes, period_ms=10).start()
        time.sleep(0.3)
        child.stdin.write("go\n")
        child.stdin.flush()
        allocator = json.loads(child.stdout.readline())
        child.wait(timeout=60)
        stats = sampler.stop()
    finally:
        if child.poll() is None:
            child.kill()
    expected = alloc_bytes / 1e6
    head = stats.probe or ""
    base = head.split(" ", 1)[0]
    scope = stats.probes[base].scope if base in stats.probes else "process"
    start = (before.get(base) or 0.0) / 1e6 if scope == "process" else 0.0  # device probes are relative
    grown = None if stats.peak_mb is None else stats.peak_mb - start
    found.rows += [
        ("headline probe (and why)", head),
        ("block allocated, MB", expected),
        ("headline peak above the child's start, MB", grown),
        ("difference", None if grown is None else f"{100 * (grown - expected) / expected:+.2f}%"),
        *((f"{name} peak MB ({s.scope})", s.peak_mb) for name, s in stats.probes.items()),
        ("torch max_memory_allocated / reserved, MB",
         f"{allocator['allocated'] / 1e6:.1f} / {allocator['reserved'] / 1e6:.1f}"),
        ("samples; period mean / p99 ms", f"{stats.samples}; {stats.period_mean_ms:.2f} / {stats.period_p99_ms:.2f}"),
    ]
    if not within(grown, expected):
        found.problems.append(f"headline probe {head} grew {grown} MB for a {expected:.0f} MB block "
                              f"(more than {TOLERANCE:.0%} apart)")
    return found


def emulated_cap_mb(needed_mb: float | None, cap_mb: int | None) -> int | None:
    """The emulated card's size: the one asked for, else half of what batch 64 was measured to need, so the
    cap cannot hold it whatever the model's input size (a fixed 2000 MB held it on an H200)."""
    if cap_mb is not None:
        return cap_mb
    return None if not needed_mb else max(1, int(needed_mb / 2))


def check_emulated_oom(device: str, dataset: str | None, cap_mb: int | None = None) -> Finding:
    """A full-size detector under a cap that cannot hold batch 64 ends oom; the next case runs."""
    from odperf.engine import MeasureRequest, measure

    # The trained detector batches for real; the untrained full-size one fails the batch probe (random
    # weights rank near-equal boxes differently in a batch) and runs tile by tile: flat memory, no oom.
    common = dict(model=TRAINED_MODEL, backend="torch", device=device, images=1, warmup_images=1,
                  dataset_root=dataset, dataset_split="val2017" if dataset else "val")
    uncapped = measure(MeasureRequest(batch_size=64, **common)).to_record()
    cap = emulated_cap_mb(uncapped.allocator_reserved_peak_mb, cap_mb)
    found = Finding(f"An emulated {cap} MB card: {TRAINED_MODEL} at batch 64, then batch 8 uncapped")
    found.rows.append(("uncapped batch 64: outcome, batch mode; allocator peak MB, allocated / reserved",
                       f"{uncapped.outcome}, {uncapped.batch_mode}; {_fmt(uncapped.allocator_peak_mb)} / "
                       f"{_fmt(uncapped.allocator_reserved_peak_mb)}"))
    if cap is None:
        found.problems.append(f"batch 64 uncapped ended {uncapped.outcome} without an allocator peak: no cap to "
                              f"derive (give --cap-mb): {uncapped.error}")
        return found
    capped = measure(MeasureRequest(batch_size=64, memory_limit_mb=cap, **common))
    after = measure(MeasureRequest(batch_size=8, **common))
    rec = after.to_record()
    found.rows += [
        ("capped batch 64: outcome", capped.outcome),
        ("capped: how", (capped.emulated or {}).get("how")),
        ("capped: first line of the reason", (capped.error or "").splitlines()[0][:160] if capped.error else None),
        ("next case (batch 8): outcome", after.outcome),
        ("next case: s per image", rec.time_per_image_s.get("mean")),
        ("next case: peak MB (probe)", f"{_fmt(rec.peak_memory_mb)} ({rec.memory_probe})"),
        ("next case: allocator peak MB, allocated / reserved",
         f"{_fmt(rec.allocator_peak_mb)} / {_fmt(rec.allocator_reserved_peak_mb)}"),
        ("next case: runtime settings", rec.runtime_settings),
    ]
    if capped.outcome != "oom":
        found.problems.append(f"a {cap} MB cap at batch 64 ended {capped.outcome}, expected oom: {capped.error}")
    if after.outcome != "ok":
        found.problems.append(f"the case after the oom ended {after.outcome}: {after.error}")
    return found


def sweep(device: str, out: Path, images: int) -> Finding:
    """The real suite over batch sizes 1..64 on the GPU, then odperf's report of its JSON."""
    found = Finding("Batch sweep 1..64 through the suite and the report")
    json_path = out / "gpu.json"
    cmd = pytest_command(SuiteRun("gpu", "paper", ("-q",)),
                         Selection(f"{TRAINED_MODEL},{FULL_SIZE_MODEL}", device, images, accuracy=True), json_path)
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    found.rows += [("suite command", " ".join(["python", *cmd[1:]])), ("suite exit", done.returncode),
                   ("suite wall s", time.monotonic() - t0)]
    if done.returncode not in (0, 1) or not json_path.is_file() or json_path.stat().st_size == 0:
        found.problems.append(f"the suite ended with exit {done.returncode} and "
                              f"{'a JSON' if json_path.is_file() and json_path.stat().st_size else 'no JSON'}; "
                              f"its output ends:\n```\n{(done.stdout + done.stderr)[-2500:]}\n```")
        return found
    _report(found, [str(json_path)], out / "report")
    return found


def _report(found: Finding, paths: list[str], out: Path) -> None:
    """odperf's report of ``paths`` into ``out``, as a row of the finding (a failure as a problem)."""
    try:
        report_runs(paths, out, quiet=True)
        found.rows.append(("report", f"{out / 'index.md'}"))
    except Exception as exc:  # noqa: BLE001 (any failure to render is the finding)
        found.problems.append(f"odperf report of {', '.join(paths)} failed: {type(exc).__name__}: {exc}")


STREAM_BATCH = 64
STREAM_DEADLINE_S = 1.0  # the paper's tightest per-image deadline
# The line on a GPU profile: the paper's 2-minute interval between cars and its 1 s deadline.
_STREAM_RULES = """[profiles.{profile}]
car_interval_s = 120.0

[[rule]]
profiles = ["{profile}"]
models = ["{model}"]
tail_latency_s = {deadline}
"""


def stream(device: str, profile: str, out: Path, budget: str = "quick", deadline_s: float = STREAM_DEADLINE_S,
           prefetch_modes: tuple[bool, ...] = (False, True), model: str = TRAINED_MODEL) -> Finding:
    """The streaming pass of ``model`` (the trained detector) on the GPU, prefetch off then on, and the report
    of both."""
    from odperf.util.package_data import fixtures_dir
    from odperf.results import load_run

    found = Finding(f"Streams: {model} at batch {STREAM_BATCH} through MLPerf LoadGen ({budget} budget), "
                    f"the paper's line at {deadline_s:g} s per image, prefetch "
                    f"{' and '.join('on' if m else 'off' for m in prefetch_modes)}")
    rules = out / "stream_expectations.toml"
    rules.write_text(_STREAM_RULES.format(profile=profile, model=model, deadline=deadline_s),
                     encoding="utf-8")
    written = []
    for prefetch in prefetch_modes:
        name = "stream-prefetch" if prefetch else "stream"
        json_path = out / f"{name}.json"
        options = ("-q", f"--odperf-stream-budget={budget}",
                   f"--odperf-expectations={fixtures_dir() / 'expectations.toml'}", f"--odperf-expectations={rules}",
                   *(["--odperf-stream-prefetch"] if prefetch else []))
        cmd = pytest_command(SuiteRun(name, str(STREAM_BATCH), options, STREAMS),
                             Selection(model, device, None), json_path)
        t0 = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
        found.rows += [(f"{name}: command", " ".join(["python", *cmd[1:]])),
                       (f"{name}: exit; wall s", f"{done.returncode}; {time.monotonic() - t0:.0f}")]
        try:
            run = load_run(json_path)
        except Exception as exc:  # noqa: BLE001 (any unreadable result is the finding)
            found.problems.append(f"{name}: no readable JSON ({exc}); the suite's output ends:\n```\n"
                                  f"{(done.stdout + done.stderr)[-2500:]}\n```")
            continue
        written.append(str(json_path))
        for rec in run.records:
            block = rec.stream or {}
            scenario = block.get("scenario")
            lat = (block.get("summary") or {}).get("latency_s", {})
            rate = (block.get("summary") or {}).get("achieved_rate")
            cap = block.get("capacity") or {}
            what = {
                "peak": f"peak {_fmt((block.get('peak') or {}).get('rate'))} images/s (implied by time per image "
                        f"{_fmt(block.get('implied_rate'))}); {cap.get('cameras_per_device', '-')} cameras per "
                        f"device, {_fmt(cap.get('lines_per_device'))} lines per device",
                "server": f"holds the line: {block.get('holds_line')}; p99 {_fmt(lat.get('p99'))} s",
                "offline": f"{_fmt(rate)} images/s, {_fmt(block.get('tiles_per_s'))} tiles/s",
            }.get(scenario, f"p90 {_fmt(lat.get('p90'))} s, {_fmt(rate)} images/s")
            found.rows.append((f"{name}: {scenario} ({rec.outcome})",
                               f"{what}; peak memory {_fmt(rec.peak_memory_mb)} MB"))
            if rec.outcome != "ok":
                found.problems.append(f"{name}: {scenario} ended {rec.outcome}: {(rec.error or '')[:300]}")
            if scenario == "peak" and not (block.get("peak") or {}).get("rate"):
                found.problems.append(f"{name}: the peak search held no rate within {deadline_s:g} s")
        if done.returncode not in (0, 1):
            found.problems.append(f"{name}: the suite ended with exit {done.returncode}: "
                                  f"{(done.stdout + done.stderr)[-1500:]}")
    if written:
        _report(found, written, out / "report-stream")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m odperf.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", default="gpu:0", help="gpu:N, the N-th GPU odperf was given (default gpu:0)")
    parser.add_argument("--out", default="reports/gpu-check", help="folder for gpu_check.md, the JSON and the report")
    parser.add_argument("--alloc-gib", type=float, default=2.0, help="size of the known allocation")
    parser.add_argument("--cap-mb", type=int, default=None,
                        help="emulated card for the out-of-memory case (default: half of batch 64's measured need)")
    parser.add_argument("--images", type=int, default=3, help="camera images per case in the sweep")
    parser.add_argument("--dataset", default=None, help="COCO-format root (default: the embedded synthetic set)")
    parser.add_argument("--skip-sweep", action="store_true", help="leave out the batch sweep")
    parser.add_argument("--stream", action="store_true",
                        help="also the streaming pass (needs MLPerf LoadGen: pip install 'odperf[stream]')")
    args = parser.parse_args(argv)
    reason = no_gpu_reason()
    if reason is not None:
        print(f"gpu check: no GPU to check here: {reason}. Nothing was checked; run it on a machine with an "
              "NVIDIA GPU and PyTorch.", file=sys.stderr)
        return 2
    from odperf.measure.kinds import detect_profiles

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    profiles = detect_profiles()
    gpu = next((p for p in profiles if p.device == args.gpu), None)
    if gpu is None:
        print(f"gpu check: no {args.gpu} here (found: {', '.join(p.device for p in profiles)})", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    findings = [check_memory(args.gpu, int(args.alloc_gib * GIB)), check_emulated_oom(args.gpu, args.dataset, args.cap_mb)]
    if not args.skip_sweep:
        findings.append(sweep(args.gpu, out, args.images))
    if args.stream:
        findings.append(stream(args.gpu, gpu.name, out))
    problems = [p for f in findings for p in f.problems]
    head = (f"# GPU check on {gpu.display_name} ({gpu.name}, {gpu.memory_mb:.0f} MB, driver {gpu.driver}, "
            f"CUDA {gpu.cuda})\n\nCommand: `python -m odperf.commands.gpu_check {' '.join(argv if argv is not None else sys.argv[1:])}`"
            f"; {time.monotonic() - t0:.0f} s; verdict: {'PROBLEMS' if problems else 'all figures consistent'}\n\n")
    (out / "gpu_check.md").write_text(head + "\n".join(f.markdown() for f in findings), encoding="utf-8")
    print((out / "gpu_check.md").read_text(encoding="utf-8"))
    return 1 if problems else 0


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
