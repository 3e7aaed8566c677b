"""How a worker run ended: ok, oom, crash or timeout, decided from what the worker said and how it died.

Out of memory shows up in several forms and all of them count as ``oom``: the runtime's own error (each
backend names its words: TensorFlow's ``ResourceExhaustedError``, PyTorch's ``OutOfMemoryError``, cuDNN and
cuBLAS allocation failures), Python's ``MemoryError``, ``std::bad_alloc`` aborting the process, or the
kernel's OOM killer. When a memory cap was set, a worker that dies by a signal is taken to have hit it.
"""

from __future__ import annotations

import re
import signal

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
    if capped and capped_oom(message, backend):
        return "oom"
    return "crash"


def capped_oom(text: str | None, backend: str | None = None) -> bool:
    """Under a memory cap, allocation failures also surface from libraries that do not say "memory"
    (oneDNN failing to create its primitive under TensorFlow): each runtime names those."""
    runtimes = (backend,) if backend else tuple(BACKENDS)
    return bool(text) and any(get_backend(b).capped_oom_pattern.search(text) for b in runtimes)


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


# --- why, in one line ---------------------------------------------------------------------------------
# A failure record's first line says why; the runtime's log follows it, labelled. TensorFlow's messages
# open with boilerplate ("Graph execution error:", where the op was defined) and bury the reason.
_BOILERPLATE = re.compile(
    r"^(Graph execution error:?|<stack traces unavailable>|Detected at node .*|File \".*|"
    r"\[\[.*|\[Op:.*|Hint: .*|Stack trace for op definition.*|.*\(most recent call last\):?)$"
)
REASON_MAX = 300


def reason_from_message(error_type: str, message: str, capped: bool = False, backend: str | None = None) -> str:
    """``Type: the line of the message that says why`` (the allocation that failed, else the first line
    that is not TensorFlow's boilerplate), at most REASON_MAX characters."""
    lines = [ln.strip() for ln in (message or "").splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
    wanted = [ln for ln in lines if looks_like_oom(ln, backend) or (capped and capped_oom(ln, backend))]
    plain = [ln for ln in lines if not _BOILERPLATE.match(ln)]
    line = (wanted or plain or lines or [""])[0]
    return _clip(f"{error_type}: {line}" if line else error_type)


_TRACEBACK = "Traceback (most recent call last):"
_LOG_REASONS = (
    re.compile(r"terminate called after throwing an instance of .*"),
    re.compile(r".*std::bad_alloc.*"),
    re.compile(r"^F\d{4} .*?\] (.*)$|.*Check failed: .*"),  # TensorFlow's (absl's) fatal log line, then abort
    re.compile(r"Fatal Python error: .*"),  # faulthandler, on a segfault or an abort with nothing said above
    re.compile(r"^Killed$|.*Out of memory: Killed process.*|.*Memory cgroup out of memory.*"),
)


def reason_in_log(log: str | None) -> str | None:
    """A recognisable reason in a dead worker's output: the exception a Python traceback ended with,
    std::bad_alloc, a fatal Python error, TensorFlow's fatal check, or "Killed"; None when there is none."""
    if not log:
        return None
    lines = [ln.rstrip() for ln in log.splitlines() if ln.strip()]
    for pattern in _LOG_REASONS:  # what killed the process outranks an exception it may have logged before
        for line in reversed(lines):
            if pattern.match(line.strip()):
                return _clip(line.strip())
    starts = [i for i, ln in enumerate(lines) if ln.startswith(_TRACEBACK)]
    if starts:
        after = lines[starts[-1] + 1:]
        ends = [ln for ln in after if not ln.startswith((" ", "\t")) and re.match(r"^[\w.]+(: |$)", ln)]
        if ends:
            return _clip(ends[-1].strip())
    return None


def _clip(text: str) -> str:
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."
