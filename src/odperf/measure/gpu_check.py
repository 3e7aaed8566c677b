"""Check the GPU memory probes on a real NVIDIA GPU: ``python -m odperf.measure.gpu_check [--model M]``.

The NVML and TensorFlow-allocator probes cannot run without a GPU, so their unit tests use a stand-in;
this script is the check on real hardware. It allocates a known tensor on the GPU and prints what NVML
(per process and per device) and TensorFlow's allocator report, with the sampler's achieved period; with
``--model`` it also measures that detector in a worker on the GPU, and with a memory cap that the model
cannot fit in (``--oom-cap-mb``) checks that the run ends as ``oom``. Exit status 1 when a figure is
inconsistent (a probe sees less than the allocation), 2 when there is no GPU to check.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tabulate import tabulate

from odperf.measure.devices import detect_profiles
from odperf.measure.memory import MemorySampler
from odperf.measure.probes import (
    MB,
    NvmlDeviceProbe,
    NvmlProcessProbe,
    RssProbe,
    import_nvml,
)


def check_probes(index: int, alloc_mb: int) -> list[str]:
    """Allocate ``alloc_mb`` on GPU ``index`` in this process; return what disagrees with it."""
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # NVML's order, so that TF's GPU:0 is NVML's index
    os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
    nvml = import_nvml()
    pid = os.getpid()
    process, device = NvmlProcessProbe(nvml, index, pid), NvmlDeviceProbe(nvml, index)
    before = {"nvml_process": process.read(), "nvml_device": device.read()}
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    from odperf.backends.tensorflow import allocator_info
    with MemorySampler([process, device, RssProbe(pid)], period_ms=10) as sampler:
        with tf.device("/GPU:0"):
            block = tf.ones([alloc_mb * MB // 4], tf.float32)
            total = float(tf.reduce_sum(block))
        time.sleep(0.5)
        held = allocator_info("GPU:0")
        del block
    stats = sampler.stop()
    rows = [
        ["nvml_process", _mb(before["nvml_process"]), stats.peak_of("nvml_process")],
        ["nvml_device (above start)", _mb(before["nvml_device"]), stats.peak_of("nvml_device")],
        ["host_rss", None, stats.peak_of("host_rss")],
        ["tf_allocator current/peak", None, f"{held['current'] / MB:.1f} / {held['peak'] / MB:.1f}" if held else None],
    ]
    print(f"\nallocated {alloc_mb} MB on GPU {index} (sum {total:.0f}); TensorFlow sees {len(gpus)} GPU(s)")
    print(tabulate(rows, headers=["probe", "before MB", "peak MB"], floatfmt=".1f"))
    print(f"sampler: {stats.samples} samples, period mean {stats.period_mean_ms:.2f} ms, "
          f"p99 {stats.period_p99_ms:.2f} ms, cost {100 * (stats.sampler_cpu_fraction or 0):.2f}% of a core")
    problems = []
    for name in ("nvml_process", "nvml_device"):
        peak = stats.peak_of(name)
        if peak is None or peak < alloc_mb:
            problems.append(f"{name} peak {peak} MB is below the {alloc_mb} MB allocated")
    if held is None or held["peak"] / MB < alloc_mb:
        problems.append(f"tf_allocator peak {held} is below the {alloc_mb} MB allocated")
    return problems


def check_worker(model: str, index: int, batch_size: int, images: int, oom_cap_mb: int | None) -> list[str]:
    from odperf.engine import MeasureRequest, measure

    problems = []
    m = measure(MeasureRequest(model=model, batch_size=batch_size, images=images, device=f"gpu:{index}"))
    rec = m.to_record()
    print(f"\nworker on gpu:{index}: {model} batch {batch_size}: outcome {m.outcome}")
    print(tabulate([
        ["time per image s (mean)", rec.time_per_image_s.get("mean")],
        ["deploy s", rec.deploy_s],
        ["harness efficiency", rec.harness_efficiency],
        ["peak memory MB", f"{rec.peak_memory_mb} ({rec.memory_probe})"],
        ["tf allocator peak MB", rec.allocator_peak_mb],
        ["host RSS peak MB", rec.host_rss_peak_mb],
        ["sample period ms", rec.sample_period_ms],
    ], floatfmt=".4f"))
    if m.outcome != "ok":
        problems.append(f"worker run ended {m.outcome}: {m.error}")
    elif rec.memory_probe != "nvml_process" or not rec.peak_memory_mb:
        problems.append(f"headline memory came from {rec.memory_probe}, not the worker's NVML figure")
    if oom_cap_mb:
        capped = measure(MeasureRequest(model=model, batch_size=batch_size, images=1, device=f"gpu:{index}",
                                        memory_limit_mb=oom_cap_mb))
        print(f"under a {oom_cap_mb} MB cap: outcome {capped.outcome}")
        if capped.outcome != "oom":
            problems.append(f"a {oom_cap_mb} MB cap ended {capped.outcome}, expected oom")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m odperf.measure.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to check")
    parser.add_argument("--alloc-mb", type=int, default=512, help="size of the test allocation")
    parser.add_argument("--model", help="also measure this detector (registry name or path) in a worker")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--oom-cap-mb", type=int, help="then rerun it under this cap and expect oom")
    args = parser.parse_args(argv)
    profiles = detect_profiles()
    print(tabulate([[p.name, p.device, p.display_name, f"{p.memory_mb:.0f}", p.driver, p.cuda,
                     p.compute_capability, ",".join(p.markers)] for p in profiles],
                   headers=["profile", "device", "name", "MB", "driver", "cuda", "cc", "markers"]))
    if import_nvml() is None or not any(p.device == f"gpu:{args.gpu}" for p in profiles):
        print(f"\nno NVIDIA GPU {args.gpu} visible through NVML: nothing to check", file=sys.stderr)
        return 2
    problems = check_probes(args.gpu, args.alloc_mb)
    if args.model:
        problems += check_worker(args.model, args.gpu, args.batch_size, args.images, args.oom_cap_mb)
    print("\n" + ("\n".join(f"PROBLEM: {p}" for p in problems) if problems else "gpu check: all figures consistent"))
    return 1 if problems else 0


def _mb(value: float | None) -> float | None:
    return None if value is None else value / MB


if __name__ == "__main__":
    sys.exit(main())
