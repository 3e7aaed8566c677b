"""The TensorFlow runtime (the paper's): devices and memory set up before anything touches them.

Order matters: GPU memory growth (the paper measured with allow_growth) or a logical-device memory limit
must be set before TensorFlow initialises the GPU, and a CPU memory cap must be set after the runtime is
up (its own footprint is not the model's) but before the model loads, so that the cap covers weights and
activations like a GPU's memory does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from odperf.backends.base import Loaded, RuntimeInfo, cap_host_memory
from odperf.backends.tensorflow import loaders
from odperf.errors import OdperfError

MIB = 1 << 20


class TensorFlowBackend:
    name = "tensorflow"
    distribution = "tensorflow"
    formats = loaders.FORMATS
    expects = f"{loaders.FROZEN_GRAPH}, {loaders.SAVED_MODEL} or saved_model/{loaders.SAVED_MODEL}"
    # Under a memory cap oneDNN (TF's CPU kernels) fails to create its primitive: that is the cap too.
    oom_pattern = re.compile(r"ResourceExhausted|OOM when allocating|CUDA_ERROR_OUT_OF_MEMORY|"
                             r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED")
    capped_oom_pattern = re.compile(r"could not create a primitive", re.IGNORECASE)
    gpu_cap_how = "tf_logical_device_memory_limit"

    def find_artifact(self, path: Path) -> tuple[str, Path] | None:
        return loaders.find_artifact(path)

    def check(self, fmt: str, artifact: Path, deep: bool = True) -> str:
        from odperf.backends.tensorflow.checks import check

        return check(fmt, artifact, deep)

    def start(self, device: str, memory_limit_mb: int | None) -> RuntimeInfo:
        import tensorflow as tf

        cap: dict[str, Any] | None = None
        gpus = tf.config.list_physical_devices("GPU")
        if device != "cpu" and not gpus:
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
                cap = {"how": self.gpu_cap_how, "limit_mib": limit_mib}
            else:
                tf.config.experimental.set_memory_growth(gpu, True)
        # One small op brings up the runtime (thread pools, the GPU context) so that what follows is the model.
        _ = (tf.constant(1.0) + 1.0).numpy()
        if device == "cpu" and memory_limit_mb is not None:
            cap = cap_host_memory(memory_limit_mb)
        return RuntimeInfo(
            backend=self.name, version=tf.__version__,
            devices=[d.name for d in tf.config.list_logical_devices()], memory_cap=cap,
            settings={"precision": "float32", "gpu_memory_growth": bool(gpus) and memory_limit_mb is None,
                      # 0: TensorFlow's own choice (one thread per core); its pools spin briefly, then block
                      "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                      "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()},
        )

    def load(self, fmt: str, artifact: Path, spec: Any | None) -> Loaded:
        if fmt == "tf1_frozen_graph":
            run, declared = loaders.load_frozen_graph(artifact)
        else:
            run, declared, fmt = loaders.load_saved_model(artifact)
        return Loaded(run=run, format=fmt, source=artifact, declared_batch=declared)

    def allocator_stats(self) -> dict[str, float] | None:
        info = allocator_info("GPU:0")
        if info is None:
            return None
        return {"current_mb": info["current"] / 1e6, "peak_mb": info["peak"] / 1e6}


def allocator_info(device: str = "GPU:0") -> dict[str, float] | None:
    """TensorFlow's allocator in this process: bytes in use now and the peak; None on the CPU."""
    import tensorflow as tf

    try:
        got = tf.config.experimental.get_memory_info(device)
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None  # device absent, or an allocator without statistics (the CPU's)
    return {"current": float(got["current"]), "peak": float(got["peak"])}


BACKEND = TensorFlowBackend()
