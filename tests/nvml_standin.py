"""A stand-in for the pynvml module functions the probes and device detection call (no GPU here).

It answers like the real module for the calls odperf makes, from a list of described GPUs; anything
else raises AttributeError, so a new NVML call in odperf fails loudly here instead of passing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass
class FakeGpu:
    name: str
    total_bytes: int
    used_bytes: int = 0
    processes: dict[int, int | None] = field(default_factory=dict)  # pid -> used bytes (None: hidden)
    compute_capability: tuple[int, int] = (8, 0)


class NvmlStandIn:
    def __init__(self, gpus: list[FakeGpu], driver: str = "550.54.15", cuda: int = 12040) -> None:
        self.gpus, self.driver, self.cuda = gpus, driver, cuda
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return gpu.name

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(total=gpu.total_bytes, used=gpu.used_bytes, free=gpu.total_bytes - gpu.used_bytes)

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes.items()]

    def nvmlDeviceGetCudaComputeCapability(self, gpu: FakeGpu) -> tuple[int, int]:
        return gpu.compute_capability

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda
