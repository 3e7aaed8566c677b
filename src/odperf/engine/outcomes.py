"""How a worker run ended: ok, oom, crash or timeout, decided from what the worker said and how it died.

Out of memory shows up in several forms and all of them count as ``oom``: TensorFlow's
``ResourceExhaustedError`` (GPU allocator, or the CPU allocator under the worker's memory cap), cuDNN/cuBLAS
errors that mention allocation, Python's ``MemoryError``, ``std::bad_alloc`` aborting the process, or the
kernel's OOM killer. When a memory cap was set, a worker that dies by a signal is taken to have hit it.
"""

from __future__ import annotations

import re
import signal

OUTCOMES = ("ok", "oom", "crash", "timeout")

OOM_PATTERNS = re.compile(
    r"ResourceExhausted|OOM when allocating|out of memory|CUDA_ERROR_OUT_OF_MEMORY|"
    r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED|failed to allocate|MemoryError|std::bad_alloc",
    re.IGNORECASE,
)


def looks_like_oom(text: str | None) -> bool:
    return bool(text) and OOM_PATTERNS.search(text) is not None


# Under a memory cap, allocation failures also surface from libraries that do not say "memory": oneDNN
# (TensorFlow's CPU kernels) fails to create its primitive and TensorFlow reports an AbortedError.
CAPPED_OOM_PATTERNS = re.compile(r"could not create a primitive|Cannot allocate memory", re.IGNORECASE)


def classify_error(error_type: str, message: str, capped: bool = False) -> str:
    """Outcome of an exception the worker caught and reported: ``oom`` or ``crash``."""
    if error_type in ("ResourceExhaustedError", "MemoryError") or looks_like_oom(message):
        return "oom"
    if capped and CAPPED_OOM_PATTERNS.search(message or ""):
        return "oom"
    return "crash"


def classify_exit(returncode: int | None, stderr_tail: str, capped: bool) -> str:
    """Outcome of a worker that died without reporting: by signal or exit code, with its stderr."""
    if looks_like_oom(stderr_tail):
        return "oom"
    if capped and returncode is not None and returncode < 0:
        return "oom"
    return "crash"


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name} ({-returncode})"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
