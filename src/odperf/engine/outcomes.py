"""How a worker run ended: ok, oom, crash or timeout, decided from what the worker said and how it died.

Out of memory shows up in several forms and all of them count as ``oom``: the runtime's own error (each
backend names its words: TensorFlow's ``ResourceExhaustedError``, PyTorch's ``OutOfMemoryError``, cuDNN and
cuBLAS allocation failures), Python's ``MemoryError``, ``std::bad_alloc`` aborting the process, or the
kernel's OOM killer. When a memory cap was set, a worker that dies by a signal is taken to have hit it.
"""

from __future__ import annotations

import re
import signal

OUTCOMES = ("ok", "oom", "crash", "timeout")

from odperf.backends import BACKENDS, get_backend
from odperf.backends.base import GENERIC_OOM


def looks_like_oom(text: str | None, backend: str | None = None) -> bool:
    """Whether ``text`` says out of memory in generic words or in the runtime's (any runtime's if None)."""
    if not text:
        return False
    if GENERIC_OOM.search(text):
        return True
    return any(get_backend(b).oom_pattern.search(text) for b in ((backend,) if backend else BACKENDS))


def classify_error(error_type: str, message: str, capped: bool = False, backend: str | None = None) -> str:
    """Outcome of an exception the worker caught and reported: ``oom`` or ``crash``."""
    if looks_like_oom(error_type, backend) or looks_like_oom(message, backend):
        return "oom"
    # Under a memory cap, allocation failures also surface from libraries that do not say "memory"
    # (oneDNN failing to create its primitive under TensorFlow): each runtime names those.
    runtimes = (backend,) if backend else tuple(BACKENDS)
    if capped and any(get_backend(b).capped_oom_pattern.search(message or "") for b in runtimes):
        return "oom"
    return "crash"


def classify_exit(returncode: int | None, stderr_tail: str, capped: bool, backend: str | None = None) -> str:
    """Outcome of a worker that died without reporting: by signal or exit code, with its stderr."""
    if looks_like_oom(stderr_tail, backend):
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
