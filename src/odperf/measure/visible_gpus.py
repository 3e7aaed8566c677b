"""The GPUs odperf was given, and the NVML handle of each: ``gpu:N`` is the N-th of them.

Schedulers (Slurm, Ray, Kubernetes, docker) hand a process its GPUs through ``CUDA_VISIBLE_DEVICES``
before odperf starts: indices (``"2,3"``), UUIDs (``"GPU-8932f937-..."``, or a prefix that names one
GPU, as CUDA allows), MIG instances (``"MIG-<uuid>"``, or the older ``"MIG-GPU-<uuid>/<gi>/<ci>"``), or
``""`` for none. NVML ignores that variable and numbers every GPU of the host, so a naive ``gpu:0`` is
the host's first GPU, not the one the scheduler gave. This module maps ``gpu:N`` once, for detection, the
memory probes and the worker's environment alike: the worker sees only the inherited entry (the same
token) and the probes read the NVML handle of that same card.

Integer entries are NVML indices. That is exact under ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, which every worker
is given, so the worker and the probes always agree on the card; CUDA's default order (fastest first)
differs from it only on machines that mix GPU models.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from odperf.measure.devices import DeviceError, parse_device

ENV = "CUDA_VISIBLE_DEVICES"
NO_GPU_ENTRIES = ("NoDevFiles",)  # what some Slurm versions set for a job given no GPU
LEGACY_MIG = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)$")  # CUDA 11.0-11.x: parent/GI/CI


@dataclass(frozen=True)
class VisibleGpu:
    """One GPU odperf was given: where it sits in the given list and which NVML device it is."""

    position: int  # N of "gpu:N"
    entry: str  # the CUDA_VISIBLE_DEVICES entry that names it: what a worker on it is given
    nvml_index: int  # NVML index of the physical GPU (of the parent GPU for a MIG instance)
    uuid: str  # "GPU-..." or, for a MIG instance, "MIG-..."
    handle: Any  # the NVML handle memory is read from: the GPU, or the MIG instance
    mig: bool = False

    @property
    def device(self) -> str:
        return f"gpu:{self.position}"


def inherited_entries(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The ``CUDA_VISIBLE_DEVICES`` entries odperf was started with, in order; None when it is unset.

    As in CUDA, a negative index ends the list (``-1`` is the usual way to hide every GPU); empty entries
    (a trailing comma) are skipped. An entry listed twice is refused: CUDA would not see it twice either.
    """
    raw = (os.environ if env is None else env).get(ENV)
    if raw is None:
        return None
    entries: list[str] = []
    for piece in raw.split(","):
        entry = piece.strip()
        if not entry:
            continue
        if entry in NO_GPU_ENTRIES or re.fullmatch(r"-\d+", entry):
            break
        if entry in entries:
            raise DeviceError(f"{ENV}={raw!r} lists {entry!r} twice; list each GPU once")
        entries.append(entry)
    return entries


def device_position(device: str) -> int:
    """``"gpu:2"`` -> 2 (``"gpu"`` alone is ``gpu:0``); a clear error for anything else."""
    try:
        ref = parse_device(device)
    except DeviceError:
        ref = None
    if ref is None or not ref.is_gpu:
        raise DeviceError(f"device {device!r} is not a GPU; name one as gpu:N (N counts from 0)")
    return ref.index


def worker_entry(device: str, env: Mapping[str, str] | None = None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` a worker on ``gpu:N`` gets: the N-th inherited entry, else ``"N"``.

    Needs no NVML: the entry is passed on as given, so CUDA in the worker resolves it exactly as the
    scheduler meant.
    """
    position = device_position(device)
    entries = inherited_entries(env)
    if entries is None:
        return str(position)
    if position >= len(entries):
        raise DeviceError(f"device {device}: {_given(entries, env)}")
    return entries[position]


def visible_gpus(nvml: Any, env: Mapping[str, str] | None = None) -> list[VisibleGpu]:
    """Every GPU odperf was given, as ``gpu:0..k-1`` in the given order (every NVML GPU when unset)."""
    entries = inherited_entries(env)
    if entries is None:
        entries = [str(i) for i in range(nvml.nvmlDeviceGetCount())]
    out: list[VisibleGpu] = []
    for position, entry in enumerate(entries):
        gpu = resolve_entry(nvml, entry, position)
        twin = next((g for g in out if g.uuid == gpu.uuid), None)
        if twin is not None:
            raise DeviceError(
                f"{ENV} entries {twin.entry!r} and {entry!r} name the same GPU {gpu.uuid}; list it once"
            )
        out.append(gpu)
    return out


def select_gpu(nvml: Any, device: str, env: Mapping[str, str] | None = None) -> VisibleGpu:
    """The GPU ``device`` (``gpu:N``) names: the N-th one odperf was given, with its NVML handle."""
    position = device_position(device)
    entries = inherited_entries(env)
    if entries is None:
        count = nvml.nvmlDeviceGetCount()
        if position >= count:
            raise DeviceError(f"device {device}: NVML sees {count} GPU(s); use gpu:0..gpu:{count - 1}"
                              if count else f"device {device}: NVML sees no GPU; measure on cpu")
        return resolve_entry(nvml, str(position), position)
    if position >= len(entries):
        raise DeviceError(f"device {device}: {_given(entries, env)}")
    return resolve_entry(nvml, entries[position], position)


def resolve_entry(nvml: Any, entry: str, position: int = 0) -> VisibleGpu:
    """The NVML device one ``CUDA_VISIBLE_DEVICES`` entry names; DeviceError naming it when none does."""
    if entry.isdigit():
        index, count = int(entry), nvml.nvmlDeviceGetCount()
        if index >= count:
            raise DeviceError(f"{ENV} entry {entry!r} matches no GPU: NVML sees {count} (indices 0..{count - 1})"
                              if count else f"{ENV} entry {entry!r} matches no GPU: NVML sees none")
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        return VisibleGpu(position, entry, index, _text(nvml.nvmlDeviceGetUUID(handle)), handle)
    legacy = LEGACY_MIG.match(entry)
    if legacy:
        handle = _legacy_mig(nvml, entry, legacy)
    elif entry.startswith(("GPU-", "MIG-")):
        handle = _by_uuid(nvml, entry)
    else:
        raise DeviceError(
            f"{ENV} entry {entry!r} is not a GPU index, GPU-<uuid> or MIG-<uuid>; "
            "see `nvidia-smi -L` for the GPUs of this machine"
        )
    uuid = _text(nvml.nvmlDeviceGetUUID(handle))
    if _is_mig(nvml, handle, uuid):
        parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
        return VisibleGpu(position, entry, nvml.nvmlDeviceGetIndex(parent), uuid, handle, mig=True)
    return VisibleGpu(position, entry, nvml.nvmlDeviceGetIndex(handle), uuid, handle)


def parent_handle(nvml: Any, gpu: VisibleGpu) -> Any:
    """The physical GPU's handle: ``gpu.handle`` itself, or a MIG instance's parent."""
    return nvml.nvmlDeviceGetHandleByIndex(gpu.nvml_index) if gpu.mig else gpu.handle


# --- lookups --------------------------------------------------------------------------------------
def _by_uuid(nvml: Any, entry: str) -> Any:
    """A full UUID through NVML; a prefix (CUDA accepts one that names a single GPU) by scanning."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(entry)
    except nvml.NVMLError:
        pass  # not found, or not a complete UUID: try it as a prefix
    matches = [(uuid, handle) for uuid, handle in all_devices(nvml) if uuid.lower().startswith(entry.lower())]
    if len(matches) == 1:
        return matches[0][1]
    if matches:
        names = ", ".join(uuid for uuid, _ in matches)
        raise DeviceError(f"{ENV} entry {entry!r} is the start of several GPUs' UUIDs ({names}); give more of it")
    raise DeviceError(f"{ENV} entry {entry!r} matches no GPU of this machine; see `nvidia-smi -L` for their UUIDs")


def _legacy_mig(nvml: Any, entry: str, match: re.Match[str]) -> Any:
    """``MIG-GPU-<uuid>/<gi>/<ci>``: the parent GPU's MIG instance with those instance ids."""
    parent = _by_uuid(nvml, match.group(1))
    gi, ci = int(match.group(2)), int(match.group(3))
    for handle in mig_devices(nvml, parent):
        if (nvml.nvmlDeviceGetGpuInstanceId(handle), nvml.nvmlDeviceGetComputeInstanceId(handle)) == (gi, ci):
            return handle
    raise DeviceError(
        f"{ENV} entry {entry!r}: GPU {match.group(1)} has no MIG instance {gi}/{ci}; see `nvidia-smi -L`"
    )


def all_devices(nvml: Any) -> Iterator[tuple[str, Any]]:
    """(UUID, handle) of every GPU NVML sees and of each MIG instance on them."""
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        yield _text(nvml.nvmlDeviceGetUUID(handle)), handle
        for mig in mig_devices(nvml, handle):
            yield _text(nvml.nvmlDeviceGetUUID(mig)), mig


def mig_devices(nvml: Any, handle: Any) -> Iterator[Any]:
    """The MIG instances of a physical GPU (none where MIG is off or unsupported)."""
    if not hasattr(nvml, "nvmlDeviceGetMigMode"):  # a binding from before MIG
        return
    try:
        current, _pending = nvml.nvmlDeviceGetMigMode(handle)
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return
        slots = nvml.nvmlDeviceGetMaxMigDeviceCount(handle)
    except nvml.NVMLError:  # NotSupported: a GPU without MIG, or an older driver
        return
    for slot in range(slots):
        try:
            yield nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except nvml.NVMLError:  # NotFound: no instance in this slot
            continue


def _is_mig(nvml: Any, handle: Any, uuid: str = "") -> bool:
    """Whether ``handle`` is a MIG instance. A binding from before MIG (no nvmlDeviceIsMigDeviceHandle) is
    answered by the UUID NVML gave it: MIG instances' start with ``MIG-``."""
    ask = getattr(nvml, "nvmlDeviceIsMigDeviceHandle", None)
    if ask is None:
        return uuid.startswith("MIG-")
    try:
        flag = ask(handle)  # a ctypes c_uint, not an int
    except nvml.NVMLError:  # NotSupported: a driver or GPU without MIG
        return False
    return bool(getattr(flag, "value", flag))


def _given(entries: list[str], env: Mapping[str, str] | None) -> str:
    raw = (os.environ if env is None else env).get(ENV)
    if not entries:
        return f"odperf was given no GPU ({ENV}={raw!r}); measure on cpu or run where a GPU is assigned"
    return f"odperf was given {len(entries)} GPU(s) ({ENV}={raw!r}); use gpu:0..gpu:{len(entries) - 1}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
