"""What every inference runtime provides to the engine, and the pieces runtimes share.

A runtime ("backend") is one module under ``odperf.backends`` exposing ``BACKEND``, an object with the
methods of ``Backend`` below. Importing a backend module never imports its framework: the parent process
(pytest, the CLI) asks a backend which files it reads and which errors mean out of memory, and only the
worker, inside ``start``, imports TensorFlow or PyTorch. So odperf runs where only one framework exists.
"""

from __future__ import annotations

import importlib.metadata
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from odperf.backends.contract import Detections

RunFn = Callable[[Any], Detections]

# Out of memory in words every runtime (and the C++ runtime under it) uses.
GENERIC_OOM = re.compile(r"out of memory|MemoryError|std::bad_alloc|failed to allocate|Cannot allocate memory",
                         re.IGNORECASE)


@dataclass
class RuntimeInfo:
    """The runtime a worker started: for the record and for comparing runs across library versions."""

    backend: str
    version: str
    devices: list[str]
    memory_cap: dict[str, Any] | None = None  # how an emulated device's cap was applied, with its figures
    settings: dict[str, Any] = field(default_factory=dict)  # precision, cudnn.benchmark, threads...


class DeviceClock(Protocol):
    """A runtime's own record of the device time its model calls took (CUDA events in PyTorch)."""

    def take(self) -> float | None:
        """Device seconds of the calls since the last take; None when none was timed."""


@dataclass
class Loaded:
    """A model loaded by a runtime, before odperf's generic checks turn it into a Detector."""

    run: RunFn
    format: str
    source: Path
    declared_batch: int | None = None  # the input signature's fixed batch, if it has one
    untrained: bool = False  # an architecture with random weights: time and memory only, no mAP
    device_clock: DeviceClock | None = None  # times the model calls on the device (GPU runs that can)


class Backend(Protocol):
    name: str  # registry key, marker and record value ("tensorflow", "torch")
    distribution: str  # the pip distribution whose version the records carry
    formats: tuple[str, ...]
    expects: str  # what a user must give, in words, for error messages
    oom_pattern: re.Pattern[str]  # the runtime's own words for out of memory
    capped_oom_pattern: re.Pattern[str]  # words that mean out of memory only under an emulated cap
    gpu_cap_how: str  # how it caps a GPU's memory to emulate a smaller card (the record's ``emulated.how``)

    def find_artifact(self, path: Path) -> tuple[str, Path] | None:
        """(format, file or folder) when ``path`` holds a model of this runtime; file names only, no import."""

    def check(self, fmt: str, artifact: Path, deep: bool = True) -> str:
        """Cheap checks in the parent, without the framework (the file parses, the signature is a
        detector's; only that the files are there when not ``deep``): the exact format, or ModelError."""

    def start(self, device: str, memory_limit_mb: int | None) -> RuntimeInfo:
        """In the worker: import the framework, pin the device, set growth or a memory cap."""

    def load(self, fmt: str, artifact: Path, spec: Any | None) -> Loaded:
        """In the worker, after ``start``: the model behind a uint8 [B, H, W, 3] -> Detections callable."""

    def weights_for(self, folder: Path) -> Path | None:
        """A user's weights file for a registry architecture in ``folder`` (None: none, or the runtime's models
        carry their weights): without one, the architecture runs untrained."""
        return None

    def allocator_stats(self) -> dict[str, float] | None:
        """The framework allocator's figures in MB (current_mb, peak_mb, ...), None where it keeps none."""


def version_of(distribution: str) -> str | None:
    """Installed version of a runtime, read from package metadata without importing it."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def vm_data_bytes(status: str = "/proc/self/status") -> int:
    """The process's data segment (VmData): what RLIMIT_DATA counts."""
    with open(status) as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmData not found in /proc/self/status")


HOST_CAP_HOW = "rlimit_data_above_runtime"  # how every runtime caps the CPU worker (``cap_host_memory``)


def cap_host_memory(memory_limit_mb: int) -> dict[str, Any]:
    """Cap the worker's data segment ``memory_limit_mb`` above what the started runtime holds now.

    Called after the runtime is up and before the model loads, so that, like a GPU's memory, the cap
    covers the model's weights and activations and not the framework's own footprint.
    """
    base = vm_data_bytes()
    limit = base + int(memory_limit_mb * 1_000_000)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    return {"how": HOST_CAP_HOW, "runtime_mb": base / 1e6, "limit_mb": limit / 1e6}
