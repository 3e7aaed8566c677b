"""A stand-in for the pynvml module functions the probes and device detection call (no GPU here).

It answers like the real module (nvidia-ml-py) for the calls odperf makes, from a list of described GPUs:
the same function names, the real module's own exception classes (``NVMLError_NotFound``...), ``str``
names and UUIDs (older bindings returned ``bytes``: ``returns_bytes=True``), a ctypes ``c_uint`` from
``nvmlDeviceIsMigDeviceHandle``. Anything else raises AttributeError, so a new NVML call in odperf fails
loudly here instead of passing. ``missing`` names calls an older binding lacks (AttributeError, as from
the real module); ``driver_lacks`` names calls the binding has but the driver does not (FunctionNotFound).
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

FULL_UUID = re.compile(r"^(GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class FakeMig:
    """A MIG instance: its own memory, processes, UUID and GPU/compute instance ids."""

    name: str  # as NVML names it: "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    total_bytes: int
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int = 0
    used_bytes: int = 0
    processes: dict[int, int | None] = field(default_factory=dict)
    parent: "FakeGpu | None" = field(default=None, repr=False)


@dataclass
class FakeGpu:
    name: str
    total_bytes: int
    used_bytes: int = 0
    processes: dict[int, int | None] = field(default_factory=dict)  # pid -> used bytes (None: hidden)
    compute_capability: tuple[int, int] = (8, 0)
    uuid: str = ""  # default: derived from the GPU's NVML index
    migs: dict[int, FakeMig] = field(default_factory=dict)  # slot -> instance; any instance: MIG on
    mig_capable: bool = False  # A100/H100-class: NVML answers MIG queries (else NotSupported)
    # what the card is doing (None: NotSupported on this card), and its settings
    sm_clock_mhz: int | None = 1980
    memory_clock_mhz: int | None = 2619
    power_mw: int | None = 120_000
    temperature_c: int | None = 40
    reasons: int | None = 0  # clock-event reasons bit mask
    applications_clocks_mhz: tuple[int, int] | None = (1980, 2619)  # (SM, memory)
    max_clocks_mhz: tuple[int, int] = (1980, 2619)
    persistence: int | None = 1
    power_limit_mw: int | None = 700_000
    local_cpus: tuple[int, ...] | None = (0, 1)  # the cores near the card (None: NotSupported)
    utilization_pct: int | None = 60  # NVML's GPU utilisation (None: NotSupported, as under MIG)


REASON_CONSTANTS = [n for n in dir(pynvml) if n.startswith(("nvmlClocksEventReason", "nvmlClocksThrottleReason"))]
"""The clock-event ("throttle") reason bits under the newer and the older names, as the binding has them."""


def gpu_uuid(index: int) -> str:
    return f"GPU-{index:08x}-1111-2222-3333-{index:012x}"


class NvmlStandIn:
    NVMLError = pynvml.NVMLError
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVML_ERROR_FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_FEATURE_ENABLED = pynvml.NVML_FEATURE_ENABLED

    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE

    def __init__(
        self, gpus: list[FakeGpu], driver: str = "550.54.15", cuda: int = 12040, returns_bytes: bool = False,
        missing: tuple[str, ...] = (), driver_lacks: tuple[str, ...] = (),
    ) -> None:
        self.gpus, self.driver, self.cuda, self.returns_bytes = gpus, driver, cuda, returns_bytes
        self.missing, self.driver_lacks = set(missing), set(driver_lacks)
        self.calls: list[str] = []
        for index, gpu in enumerate(gpus):
            gpu.uuid = gpu.uuid or gpu_uuid(index)
            for mig in gpu.migs.values():
                mig.parent = gpu
                gpu.mig_capable = True

    def __getattribute__(self, name: str) -> object:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(f"module 'pynvml' has no attribute {name!r}")
        if name.startswith("nvml") and name in object.__getattribute__(self, "driver_lacks"):
            def lacking(*args: object) -> None:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            return lacking
        return object.__getattribute__(self, name)

    def _text(self, value: str) -> str | bytes:
        return value.encode() if self.returns_bytes else value

    def _gpu(self, handle: object) -> FakeGpu:
        if not isinstance(handle, FakeGpu):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def _mig(self, handle: object) -> FakeMig:
        if not isinstance(handle, FakeMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return handle

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeGpu | FakeMig:
        """A GPU or MIG instance by its complete UUID; anything else is not a UUID NVML can parse."""
        text = uuid.decode() if isinstance(uuid, bytes) else uuid  # the real one encodes str to bytes
        if not FULL_UUID.match(text):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        for gpu in self.gpus:
            if gpu.uuid == text:
                return gpu
            for mig in gpu.migs.values():
                if mig.uuid == text:
                    return mig
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMig) -> str | bytes:
        return self._text(handle.uuid)

    def nvmlDeviceGetIndex(self, handle: FakeGpu | FakeMig) -> int:
        """NVML's index of a GPU; of a MIG instance, its slot under its parent (not the parent's index)."""
        if isinstance(handle, FakeMig):
            return next(slot for slot, mig in handle.parent.migs.items() if mig is handle)  # type: ignore[union-attr]
        return self.gpus.index(self._gpu(handle))

    def nvmlDeviceGetName(self, handle: FakeGpu | FakeMig) -> str | bytes:
        return self._text(handle.name)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu | FakeMig) -> SimpleNamespace:
        return SimpleNamespace(
            total=handle.total_bytes, used=handle.used_bytes, free=handle.total_bytes - handle.used_bytes
        )

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu | FakeMig) -> list[SimpleNamespace]:
        gi, ci = (handle.gpu_instance_id, handle.compute_instance_id) if isinstance(handle, FakeMig) else (None, None)
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=gi, computeInstanceId=ci)
            for pid, used in handle.processes.items()
        ]

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu | FakeMig) -> tuple[int, int]:
        gpu = handle.parent if isinstance(handle, FakeMig) else handle
        return gpu.compute_capability  # type: ignore[union-attr]

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self._text(self.driver)

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda

    # --- MIG ---------------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: FakeGpu) -> list[int]:
        gpu = self._gpu(handle)
        if not gpu.mig_capable:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.migs else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu) -> int:
        gpu = self._gpu(handle)
        if not gpu.mig_capable:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: FakeGpu, index: int) -> FakeMig:
        gpu = self._gpu(handle)
        if not 0 <= index < self.nvmlDeviceGetMaxMigDeviceCount(gpu):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index not in gpu.migs:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return gpu.migs[index]

    def nvmlDeviceIsMigDeviceHandle(self, handle: FakeGpu | FakeMig) -> ctypes.c_uint:
        return ctypes.c_uint(1 if isinstance(handle, FakeMig) else 0)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: FakeMig) -> FakeGpu:
        return self._mig(handle).parent  # type: ignore[return-value]

    def nvmlDeviceGetGpuInstanceId(self, handle: FakeGpu | FakeMig) -> int:
        if not isinstance(handle, FakeMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: FakeGpu | FakeMig) -> int:
        if not isinstance(handle, FakeMig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.compute_instance_id

    # --- what the card is doing, and its settings ----------------------------------------------------
    @staticmethod
    def _given(value: int | None) -> int:
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def _clock(self, pair: tuple[int, int] | None, clock: int) -> int:
        if pair is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if clock not in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return pair[0] if clock == pynvml.NVML_CLOCK_SM else pair[1]

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, clock: int) -> int:
        gpu = self._gpu(handle)  # a MIG handle: NVML asks for the parent GPU's
        return self._given(self._clock((gpu.sm_clock_mhz, gpu.memory_clock_mhz), clock))  # type: ignore[arg-type]

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeGpu, clock: int) -> int:
        return self._clock(self._gpu(handle).max_clocks_mhz, clock)

    def nvmlDeviceGetApplicationsClock(self, handle: FakeGpu, clock: int) -> int:
        return self._clock(self._gpu(handle).applications_clocks_mhz, clock)

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        return self._given(self._gpu(handle).power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeGpu) -> int:
        return self._given(self._gpu(handle).power_limit_mw)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> pynvml.c_nvmlUtilization_t:
        return pynvml.c_nvmlUtilization_t(self._given(self._gpu(handle).utilization_pct), 0)

    def nvmlDeviceGetCpuAffinity(self, handle: FakeGpu, cpu_set_size: int) -> ctypes.Array:
        """As the real binding: ``cpu_set_size`` 64-bit words, bit k of word w set for core 64 * w + k."""
        cores = self._given(self._gpu(handle).local_cpus)
        words = (ctypes.c_ulonglong * cpu_set_size)()
        for core in cores:
            if core < 64 * cpu_set_size:
                words[core // 64] |= 1 << core % 64
        return words

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._given(self._gpu(handle).temperature_c)

    def nvmlDeviceGetPersistenceMode(self, handle: FakeGpu) -> int:
        return self._given(self._gpu(handle).persistence)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        return self._given(self._gpu(handle).reasons)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        return self._given(self._gpu(handle).reasons)


for _name in REASON_CONSTANTS:
    setattr(NvmlStandIn, _name, getattr(pynvml, _name))
