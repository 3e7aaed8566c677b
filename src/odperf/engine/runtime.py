"""Inside the worker: TensorFlow's devices and memory set up before anything touches them.

Order matters and is why this lives apart from the worker loop: GPU memory growth (the paper measured with
allow_growth) or a logical-device memory limit must be set before TensorFlow initialises the GPU, and a CPU
memory cap must be set after the runtime is up (its own footprint is not the model's) but before the model
loads, so that the cap covers weights and activations like a GPU's memory does.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


@dataclass
class RuntimeInfo:
    tf_version: str
    devices: list[str]
    memory_cap: dict[str, Any] | None  # how the cap was applied, with its figures


def worker_env(device: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a worker on ``device``: the GPU it may see (none for cpu), growth on, quiet logs.

    ``gpu:N`` is the N-th GPU odperf was given: the worker sees that one entry of the inherited
    ``CUDA_VISIBLE_DEVICES`` (index, UUID or MIG id, as the scheduler wrote it), the card whose NVML
    handle the probes read; with nothing inherited it sees NVML's index N.
    """
    from odperf.measure.visible_gpus import worker_entry

    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    else:
        env["CUDA_VISIBLE_DEVICES"] = worker_entry(device, env)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # integer entries count as NVML counts, as the probes do
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    return env


def vm_data_bytes(status: str = "/proc/self/status") -> int:
    """The process's data segment (VmData): what RLIMIT_DATA counts."""
    with open(status) as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmData not found in /proc/self/status")


def start_tensorflow(device: str, memory_limit_mb: int | None) -> RuntimeInfo:
    """Import TensorFlow, configure its GPU (growth, or a memory limit), start the runtime, cap the CPU."""
    import tensorflow as tf

    cap: dict[str, Any] | None = None
    gpus = tf.config.list_physical_devices("GPU")
    if device != "cpu" and not gpus:
        from odperf.errors import OdperfError

        raise OdperfError(
            f"device {device}: TensorFlow sees no GPU here (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}); install the gpu extra (tensorflow[and-cuda]) "
            "or measure on cpu"
        )
    for gpu in gpus:
        if memory_limit_mb is not None:
            limit_mib = int(memory_limit_mb * 1_000_000 / MIB)
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit_mib)]
            )
            cap = {"how": "tf_logical_device_memory_limit", "limit_mib": limit_mib}
        else:
            tf.config.experimental.set_memory_growth(gpu, True)
    # One small op brings up the runtime (thread pools, the GPU context) so that what follows is the model.
    _ = (tf.constant(1.0) + 1.0).numpy()
    if device == "cpu" and memory_limit_mb is not None:
        base = vm_data_bytes()
        limit = base + int(memory_limit_mb * 1_000_000)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
        cap = {"how": "rlimit_data_above_runtime", "runtime_mb": base / 1e6, "limit_mb": limit / 1e6}
    return RuntimeInfo(
        tf_version=tf.__version__,
        devices=[d.name for d in tf.config.list_logical_devices()],
        memory_cap=cap,
    )


def allocator_stats() -> dict[str, float] | None:
    """TensorFlow's GPU allocator figures in MB, or None on the CPU (its allocator keeps none)."""
    from odperf.measure.probes import TfAllocatorProbe

    info = TfAllocatorProbe("GPU:0").info()
    if info is None:
        return None
    return {"current_mb": info["current"] / 1e6, "peak_mb": info["peak"] / 1e6}
