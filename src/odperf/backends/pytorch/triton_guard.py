"""Let torchvision load in a process that already holds TensorFlow.

TensorFlow and Triton (installed with CUDA builds of torch) each bundle their own LLVM: loading Triton's
extension into a process where TensorFlow is loaded crashes it with a segmentation fault. torch imports
Triton, when it is installed, as soon as ``torch._dynamo`` loads, and ``torchvision.ops`` loads it. Triton
only serves ``torch.compile`` kernels, which odperf does not use, so when TensorFlow came first Triton is
marked unimportable (``import triton`` raises ImportError, which torch handles) before torchvision loads.
The other order, torchvision then TensorFlow, works as it is.
"""

from __future__ import annotations

import sys


def keep_triton_out() -> None:
    """Call before the first ``import torchvision``; does nothing unless TensorFlow is already loaded."""
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
