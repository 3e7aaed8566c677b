"""The spread study: why one worker process runs a model slower than the next, measured in one command.

    bash tasks.sh gpu-check spread --out reports/gpu-<name>/spread

On an NVIDIA H200 the same model and batch ran 0.099-0.175 s per camera image from one fresh worker to the
next while rounds inside one worker agreed. Each candidate cause is tested, not assumed: many fresh
workers of one case, the baseline repeated most and each variant changing one thing, interleaved (baseline,
variant, variant, ..., baseline, ...) so that a drift of the machine falls on all of them alike:

- ``baseline``: odperf's defaults;
- ``eager_loading``: ``CUDA_MODULE_LOADING=EAGER`` (every kernel loaded at start, not on first use);
- ``expandable_segments``: the caching allocator with ``expandable_segments:True`` (another allocator state);
- ``threads_4``: ``OMP_NUM_THREADS=4`` (host threads: fewer intra-op threads contending);
- ``cudnn_benchmark``: cuDNN autotuning on (another algorithm choice; ``ODPERF_CUDNN_BENCHMARK=1``);
- ``steady_warmup``: warm-up until 3 images in a row agree within 3% (at most 30), the MLPerf way,
  instead of the default single image (``--odperf-warmup-steady``);
- ``gpu_local_cores``: the worker pinned to the cores NVML calls near the GPU (host placement across
  sockets; GPU studies only, and only where those are not already all the cores it may use).

Every worker's record carries what the card was doing (clocks, power, temperature, clock-event reasons),
the device's CUDA-event time per image beside its wall time, the allocator's peaks and the runtime
settings (threads, cores it may run on, module loading, allocator configuration) and the host's share of
the machine while it was timed (the worker's cores, everyone else's, the hypervisor's steal); before each
worker starts the study notes the other processes NVML lists on the card (another tenant) and its used
memory.
``commands.spread_analysis`` then says which figures move with the time per image. Written under ``--out``:
``spread.json`` (every worker's figures, per-image times, the command) and ``spread.md``; nothing is written
without a GPU unless ``--device cpu`` is asked for (a CPU study: its figures are the CPU's, named so).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from odperf.errors import OdperfError

DEFAULT_MODEL = "faster_rcnn_fpn_torch"


@dataclass(frozen=True)
class Variant:
    """One candidate cause: the environment and request fields a worker gets besides the baseline's."""

    name: str
    env: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    tests: str = ""  # the candidate cause, in words
    cores: str | None = None  # "gpu_local": the worker runs on the cores near its GPU (GPU studies only)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", tests="odperf's defaults"),
    Variant("eager_loading", {"CUDA_MODULE_LOADING": "EAGER"}, tests="lazy module loading"),
    Variant("expandable_segments", {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"},
            tests="the caching allocator's state"),
    Variant("threads_4", {"OMP_NUM_THREADS": "4"}, tests="host threads"),
    Variant("cudnn_benchmark", {"ODPERF_CUDNN_BENCHMARK": "1"}, tests="cuDNN algorithm choice"),
    Variant("steady_warmup", request={"steady_warmup": 0.03}, tests="warm-up too short to be steady"),
    Variant("gpu_local_cores", cores="gpu_local", tests="host threads far from the GPU (NUMA placement)"),
)}
GPU_ONLY = tuple(name for name, v in VARIANTS.items() if v.cores == "gpu_local")


@dataclass
class StudyConfig:
    """What one study runs: ``repeats`` baseline workers and ``variant_repeats`` of each other variant."""

    device: str = "gpu:0"
    model: str = DEFAULT_MODEL
    backend: str = "torch"
    batch_size: int = 64
    images: int = 20
    repeats: int = 6
    variant_repeats: int = 2
    variants: tuple[str, ...] = tuple(VARIANTS)
    dataset: str | None = None
    request: dict[str, Any] = field(default_factory=dict)  # further MeasureRequest fields (tests: a small grid)
    pinned: str | None = None  # the cores gpu_local_cores ran on, or why it was left out

    def order(self) -> list[Variant]:
        """The workers in the order they run: round by round, each variant while it has repeats left."""
        counts = {name: self.repeats if name == "baseline" else self.variant_repeats for name in self.variants}
        out: list[Variant] = []
        for k in range(max(counts.values(), default=0)):
            out += [VARIANTS[name] for name in self.variants if k < counts[name]]
        return out


def parse_variants(text: str) -> tuple[str, ...]:
    """``baseline,threads_4`` -> the names, checked; the baseline is always in (it is what the rest compare to)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise OdperfError(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return tuple(dict.fromkeys(["baseline", *names]))


@contextlib.contextmanager
def environment(overrides: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` while a worker is spawned (it inherits this process's environment)."""
    saved = {k: os.environ.get(k) for k in overrides}
    os.environ.update(overrides)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def pinned(cores: set[int] | None) -> Iterator[None]:
    """This process on ``cores`` while a worker is spawned (it inherits the affinity); None: as it was."""
    if cores is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def gpu_local(device: str) -> tuple[set[int] | None, str]:
    """The cores near ``device``'s GPU that this process may use, or None and why a pin would test nothing."""
    from odperf.measure import probes
    from odperf.measure.gpu_state import core_list, local_cores
    from odperf.measure.visible_gpus import parent_handle, select_gpu

    nvml = probes.import_nvml() if device.startswith("gpu") else None
    if nvml is None:
        return None, "NVML is not here to say which cores are near the GPU"
    near = local_cores(nvml, parent_handle(nvml, select_gpu(nvml, device)))
    allowed = os.sched_getaffinity(0)
    if near is None:
        return None, "NVML does not give this GPU's CPU affinity"
    if not near & allowed:
        return None, f"none of the GPU's near cores ({core_list(near)}) is one this process may use"
    if allowed <= near:
        return None, f"every core this process may use ({core_list(allowed)}) is near the GPU already"
    return near & allowed, f"cores {core_list(near & allowed)}"


def card_before(device: str) -> dict[str, Any] | None:
    """Other processes NVML lists on the card and its used memory, just before a worker starts (another
    tenant); None where there is no NVML (a CPU study)."""
    from odperf.measure import probes
    from odperf.measure.visible_gpus import parent_handle, select_gpu

    if not device.startswith("gpu"):
        return None
    nvml = probes.import_nvml()
    if nvml is None:
        return None
    gpu = select_gpu(nvml, device)
    handle = parent_handle(nvml, gpu)
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        used = nvml.nvmlDeviceGetMemoryInfo(handle).used
    except nvml.NVMLError:
        return None
    return {"processes": len(procs), "pids": sorted(int(p.pid) for p in procs), "used_mb": used / 1e6}


def worker_figures(variant: Variant, m: Any, before: dict[str, Any] | None) -> dict[str, Any]:
    """One worker's figures for the study, from its Measurement."""
    rec = m.to_record(harness_times_s=m.worker_times_s)
    state = rec.gpu_state or {}
    dev = rec.device_time_per_image_s or {}
    return {
        "variant": variant.name,
        "outcome": rec.outcome,
        "error": (rec.error or "").split("\n", 1)[0] or None,
        "pid": m.deploy.pid if m.deploy else None,
        "times_s": list(m.worker_times_s),
        "device_times_s": list(m.device_times_s),
        "mean_s": (rec.time_per_image_s or {}).get("mean"),
        "device_mean_s": dev.get("mean"),
        "host_share": rec.host_share,
        "sm_clock_mhz": state.get("sm_clock_mhz"),
        "memory_clock_mhz": state.get("memory_clock_mhz"),
        "power_w": state.get("power_w"),
        "temperature_c": state.get("temperature_c"),
        "utilization_pct": state.get("utilization_pct"),
        "clock_event_reasons": state.get("clock_event_reasons"),
        "gpu_settings": state.get("settings"),
        "allocator_reserved_peak_mb": rec.allocator_reserved_peak_mb,
        "allocator_peak_mb": rec.allocator_peak_mb,
        "peak_memory_mb": rec.peak_memory_mb,
        "runtime_settings": rec.runtime_settings,
        "load": rec.load,
        "deploy_s": rec.deploy_s,
        "card_before": before,
    }


def run_study(config: StudyConfig, on_worker: Any = None) -> tuple[StudyConfig, list[dict[str, Any]]]:
    """Every worker of the study, in order (a failed worker is kept with its outcome, never dropped), and
    the configuration as it ran: ``pinned`` says where the pinned variant ran or why it was left out (then
    it is out of ``variants``). ``config`` itself is left as given."""
    from odperf.engine import MeasureRequest, measure

    common: dict[str, Any] = dict(model=config.model, backend=config.backend, device=config.device,
                                  batch_size=config.batch_size, images=config.images,
                                  dataset_root=config.dataset, **config.request)
    if config.dataset:
        common.setdefault("dataset_split", "val2017")
    cores: set[int] | None = None
    if any(VARIANTS[name].cores for name in config.variants):
        cores, why = gpu_local(config.device)
        # pinned or not, the worker would run as the baseline's: say so, run none
        kept = config.variants if cores is not None else tuple(n for n in config.variants if not VARIANTS[n].cores)
        config = replace(config, pinned=why, variants=kept)
    out = []
    for k, variant in enumerate(config.order()):
        before = card_before(config.device)
        with environment(variant.env), pinned(cores if variant.cores else None):
            m = measure(MeasureRequest(**{**common, **variant.request}))
        out.append({"worker": k, **worker_figures(variant, m, before)})
        if variant.cores:
            out[-1]["pinned_to"] = config.pinned
        if on_worker is not None:
            on_worker(out[-1])
    return config, out


def write_study(out: Path, config: StudyConfig, workers: list[dict[str, Any]], command: str,
                device_name: str, seconds: float) -> Path:
    """``spread.json`` (everything measured) and ``spread.md`` (the analysis) under ``out``; returns the .md."""
    from odperf.commands.spread_analysis import analyse, markdown

    out.mkdir(parents=True, exist_ok=True)
    analysis = analyse(workers)
    (out / "spread.json").write_text(json.dumps(
        {"command": command, "device": config.device, "device_name": device_name, "seconds": seconds,
         "config": asdict(config), "variants": {n: asdict(VARIANTS[n]) for n in config.variants},
         "workers": workers, "analysis": analysis}, indent=1, default=str), encoding="utf-8")
    path = out / "spread.md"
    path.write_text(markdown(config, workers, analysis, command, device_name, seconds,
                               {name: v.tests for name, v in VARIANTS.items()}), encoding="utf-8")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m odperf.gpu_check spread",
                                     description="Why fresh worker processes differ: the spread study.")
    parser.add_argument("--out", required=True, help="folder for spread.json and spread.md (reports/gpu-<name>/spread)")
    parser.add_argument("--device", default="gpu:0", help="gpu:N (default gpu:0); cpu runs a CPU study")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=20, help="timed camera images per worker")
    parser.add_argument("--repeats", type=int, default=6, help="baseline workers")
    parser.add_argument("--variant-repeats", type=int, default=2, help="workers of each other variant")
    parser.add_argument("--variants", default=None, help=f"among {', '.join(VARIANTS)} (default: all; on a CPU "
                        f"all but {', '.join(GPU_ONLY)})")
    parser.add_argument("--dataset", default=None, help="COCO-format root (default: the embedded synthetic set)")
    return parser


def parse_config(argv: Sequence[str]) -> tuple[StudyConfig, Path]:
    """The study's configuration from its command line; a bad value is one line naming it and the fix."""
    args = build_parser().parse_args(list(argv))
    for name in ("images", "repeats", "variant_repeats", "batch_size"):
        if getattr(args, name) < 1:
            raise OdperfError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.repeats < 2:
        raise OdperfError(f"--repeats {args.repeats}: a spread needs at least 2 baseline workers")
    if args.dataset and not Path(args.dataset).is_dir():
        raise OdperfError(f"--dataset {args.dataset}: no such folder; give a COCO-format root or leave it out")
    on_gpu = args.device.startswith("gpu")
    variants = parse_variants(args.variants or ",".join(n for n in VARIANTS if on_gpu or n not in GPU_ONLY))
    if not on_gpu and set(variants) & set(GPU_ONLY):
        raise OdperfError(f"--variants {','.join(set(variants) & set(GPU_ONLY))}: pins the worker near a GPU; "
                          "a CPU study has none (leave it out, or study a gpu:N device)")
    config = StudyConfig(device=args.device, model=args.model, backend=args.backend, batch_size=args.batch_size,
                         images=args.images, repeats=args.repeats, variant_repeats=args.variant_repeats,
                         variants=variants, dataset=args.dataset)
    return config, Path(args.out)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, out = parse_config(argv)
    except OdperfError as exc:
        print(f"spread study: {exc}", file=sys.stderr)
        return 2
    from odperf.commands import spread_analysis  # noqa: F401  (scipy: missing, it stops here, not after the workers)

    device_name = "CPU"
    if config.device != "cpu":
        from odperf.commands.gpu_check import no_gpu_reason

        reason = no_gpu_reason()
        if reason is not None:
            print(f"spread study: no GPU here: {reason}. Nothing was measured or written; run it where "
                  "an NVIDIA GPU is (or give --device cpu for a CPU study).", file=sys.stderr)
            return 2
        import torch

        device_name = torch.cuda.get_device_name(0)
    t0 = time.monotonic()
    config, workers = run_study(config, on_worker=lambda w: print(
        f"worker {w['worker']} {w['variant']}: {w['outcome']} mean {w['mean_s']} s/img", flush=True))
    if config.pinned and not any(w.get("pinned_to") for w in workers):
        print(f"spread study: the variant pinning the worker near the GPU was left out: {config.pinned}", flush=True)
    path = write_study(out, config, workers, "python -m odperf.gpu_check spread " + " ".join(argv), device_name,
                       time.monotonic() - t0)
    print(path.read_text(encoding="utf-8"))
    return 0 if all(w["outcome"] == "ok" for w in workers) else 1


if __name__ == "__main__":
    sys.exit(main())
