"""The kinds of device odperf measures on, one entry each: how to find them, which probes read their
memory from the parent, and what environment a worker on one of them starts in.

A device string names a slot (``cpu``, or ``gpu:N``, the N-th GPU odperf was given); the kind behind a
GPU slot is the first accelerator kind present on this machine, in ``DEVICE_KINDS`` order (a Jetson board has
no NVML, so it is asked before NVIDIA's discrete GPUs). A new kind (AMD ROCm, Apple's GPU) is one class
here, its line in ``DEVICE_KINDS`` and its ``[[<name>]]`` profiles in ``fixtures/devices.toml``.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import psutil

from odperf.measure import probes as probe_lib  # looked up per call: tests stand in for its NVML
from odperf.measure.devices import (
    GIB,
    DeviceError,
    DeviceProfile,
    DeviceRef,
    DeviceTable,
    default_table_path,
    load_table,
    parse_device,
)
from odperf.measure.gpu_state import GpuStateReader
from odperf.measure.probes import MB, NvmlDeviceProbe, NvmlProcessProbe, Probe, RssProbe, jetson_probe
from odperf.measure.visible_gpus import parent_handle, select_gpu, visible_gpus, worker_entry
from odperf.util.names import slug

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


class DeviceKind:
    """One kind of device. ``name`` is its profiles' ``kind`` and its section in the device table;
    ``slot`` is the device strings that reach it (``cpu`` or ``gpu``)."""

    name: str
    slot: str
    title: str  # what a user calls it, in "no NVIDIA GPU or Jetson found"

    def present(self) -> bool:
        """Whether this machine has this kind (cheap: no driver is initialised for the answer)."""
        return True

    def detect(self, table: DeviceTable, env: Mapping[str, str] | None) -> list[DeviceProfile]:
        """The profiles of the devices of this kind odperf was given, ``<slot>:0..k-1`` in order."""
        raise NotImplementedError

    def probes(self, device: DeviceRef, pid: int, env: Mapping[str, str] | None) -> list[Probe]:
        """The probes the parent samples a worker on ``device`` with, besides the worker's host RSS."""
        return []

    def state_reader(self, device: DeviceRef, env: Mapping[str, str] | None) -> GpuStateReader | None:
        """What reads the device's clocks, power and temperature beside its memory (None: nothing to read)."""
        return None

    def worker_env(self, device: DeviceRef, env: dict[str, str]) -> None:
        """Set in ``env`` what a worker on ``device`` must see (its one device, no other)."""


class Cpu(DeviceKind):
    name, slot, title = "cpu", "cpu", "CPU"

    def detect(self, table: DeviceTable, env: Mapping[str, str] | None) -> list[DeviceProfile]:
        return [cpu_profile(table)]

    def worker_env(self, device: DeviceRef, env: dict[str, str]) -> None:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker never touches a GPU, even where there is one


class NvidiaGpu(DeviceKind):
    """Discrete NVIDIA GPUs (and MIG instances), through NVML and ``CUDA_VISIBLE_DEVICES``."""

    name, slot, title = "gpu", "gpu", "NVIDIA GPU"

    def detect(self, table: DeviceTable, env: Mapping[str, str] | None) -> list[DeviceProfile]:
        nvml = probe_lib.import_nvml()
        if nvml is None:
            return []
        try:
            return nvml_gpus(nvml, table, env)
        finally:
            _try(nvml.nvmlShutdown)

    def probes(self, device: DeviceRef, pid: int, env: Mapping[str, str] | None) -> list[Probe]:
        nvml = probe_lib.import_nvml()
        if nvml is None:
            return []
        gpu = select_gpu(nvml, str(device), env)
        return [NvmlProcessProbe(nvml, gpu.nvml_index, pid, handle=gpu.handle),
                NvmlDeviceProbe(nvml, gpu.nvml_index, handle=gpu.handle)]

    def state_reader(self, device: DeviceRef, env: Mapping[str, str] | None) -> GpuStateReader | None:
        nvml = probe_lib.import_nvml()
        if nvml is None:
            return None
        gpu = select_gpu(nvml, str(device), env)
        return GpuStateReader(nvml, parent_handle(nvml, gpu), mig=gpu.mig)  # clocks belong to the whole card

    def worker_env(self, device: DeviceRef, env: dict[str, str]) -> None:
        """The worker sees the one inherited ``CUDA_VISIBLE_DEVICES`` entry of ``gpu:N`` (index, UUID or
        MIG id, as the scheduler wrote it), the card whose NVML handle the probes read."""
        env["CUDA_VISIBLE_DEVICES"] = worker_entry(str(device), env)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # integer entries count as NVML counts, as the probes do
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"


class Jetson(NvidiaGpu):
    """An NVIDIA Jetson board: a CUDA GPU without NVML that allocates from the host's memory."""

    name, title = "jetson", "Jetson"

    def present(self) -> bool:
        return jetson_model() is not None

    def detect(self, table: DeviceTable, env: Mapping[str, str] | None) -> list[DeviceProfile]:
        board = jetson_model()
        return [] if board is None else [jetson_profile(board, table=table)]

    def probes(self, device: DeviceRef, pid: int, env: Mapping[str, str] | None) -> list[Probe]:
        return [jetson_probe()]  # jetson-stats where its service answers, else /proc/meminfo

    def state_reader(self, device: DeviceRef, env: Mapping[str, str] | None) -> GpuStateReader | None:
        return None  # a Jetson board has no NVML


DEVICE_KINDS: tuple[DeviceKind, ...] = (Cpu(), Jetson(), NvidiaGpu())
"""Every kind of device, in the order they are asked: the first present kind of a slot owns it."""


def none_found() -> str:
    """What a machine with only its CPU lacks, discrete GPUs first: ``"no NVIDIA GPU or Jetson found"``."""
    titles = [k.title for k in reversed(DEVICE_KINDS) if k.slot != "cpu"]
    return f"no {' or '.join(filter(None, [', '.join(titles[:-1]), titles[-1]]))} found"


def kind_of(device: str | DeviceRef) -> DeviceKind:
    """The kind of device a device string reaches on this machine (for a GPU slot with no kind present,
    the last one listed, NVIDIA's, whose probes then read nothing but the host)."""
    slot = (device if isinstance(device, DeviceRef) else parse_device(device)).slot
    candidates = [k for k in DEVICE_KINDS if k.slot == slot]
    return next((k for k in candidates if k.present()), candidates[-1])


def detect_profiles(table: DeviceTable | None = None, env: Mapping[str, str] | None = None) -> list[DeviceProfile]:
    """The CPU first, then the devices of the accelerator kind this machine has (NVML's GPUs odperf was
    given, or the Jetson board)."""
    table = table or load_table()
    return [*kind_of("cpu").detect(table, env), *kind_of("gpu").detect(table, env)]


def detected() -> list[DeviceProfile]:
    """This process's devices, detected once (per device table and ``CUDA_VISIBLE_DEVICES``): a run and
    each of its cases ask here, never the drivers again."""
    return list(detect_once(str(default_table_path()), os.environ.get("CUDA_VISIBLE_DEVICES")))


@functools.lru_cache(maxsize=4)
def detect_once(table_path: str, visible: str | None) -> tuple[DeviceProfile, ...]:
    """``detect_profiles`` cached by its inputs (``visible`` only keys the cache)."""
    return tuple(detect_profiles(load_table(table_path)))


def profile_of(device: str) -> DeviceProfile | None:
    """The detected profile a device string names here, or None when this machine has no such device."""
    name = str(parse_device(device))
    return next((p for p in detected() if p.device == name), None)


def external_probes(device: str, pid: int, env: Mapping[str, str] | None = None,
                    kind: DeviceKind | None = None) -> list[Probe]:
    """The probes the parent samples for a worker ``pid`` on ``device`` (its kind's, then host RSS).

    ``gpu:N`` is the N-th GPU odperf was given (``CUDA_VISIBLE_DEVICES`` in ``env``, default this
    process's), mapped to its NVML handle as the worker's environment is (``visible_gpus``).
    """
    ref = parse_device(device)
    return [*(kind or kind_of(ref)).probes(ref, pid, env), RssProbe(pid)]


def state_reader(device: str, env: Mapping[str, str] | None = None,
                 kind: DeviceKind | None = None) -> GpuStateReader | None:
    """What the parent reads ``device``'s clocks, power and temperature with, or None (CPU, Jetson)."""
    ref = parse_device(device)
    return (kind or kind_of(ref)).state_reader(ref, env)


def get_profile(name: str, table: DeviceTable | None = None) -> DeviceProfile:
    """The detected profile called ``name``, else the table's nominal one (``detected=False``)."""
    table = table or load_table()
    for profile in detect_profiles(table):
        if profile.name == name:
            return profile
    rule = table.rule(name)
    if rule is None:
        known = ", ".join(["cpu", *(r.name for r in table.rules)])
        raise DeviceError(f"unknown device profile {name!r}; known profiles: {known}")
    return DeviceProfile(
        name=rule.name,
        kind=rule.kind,
        device="gpu:0",
        display_name=rule.description or rule.name,
        memory_mb=(rule.memory_gib or 0) * GIB / MB,
        markers=list(rule.markers),
        detected=False,
        description=rule.description,
    )


# --- the CPU --------------------------------------------------------------------------------------
def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_profile(table: DeviceTable | None = None) -> DeviceProfile:
    table = table or load_table()
    return DeviceProfile(
        name="cpu",
        kind="cpu",
        device="cpu",
        display_name=cpu_name(),
        memory_mb=psutil.virtual_memory().total / MB,
        markers=list(table.cpu_markers),
        cores=os.cpu_count(),
        description=f"{cpu_name()}, {os.cpu_count()} cores",
    )


# --- NVIDIA GPUs ----------------------------------------------------------------------------------
def gpu_profile(
    name: str, memory_bytes: float, index: int = 0, table: DeviceTable | None = None, **info: Any
) -> DeviceProfile:
    """Profile of an NVIDIA GPU from its NVML name and total memory, by the table's rules."""
    table = table or load_table()
    rule = table.match("gpu", name, memory_bytes / GIB)
    return DeviceProfile(
        name=rule.name if rule else slug(name),
        kind="gpu",
        device=f"gpu:{index}",
        display_name=name,
        memory_mb=memory_bytes / MB,
        markers=list(rule.markers) if rule else ["gpu", slug(name)],
        description=rule.description if rule else name,
        **info,
    )


def nvml_gpus(nvml: Any, table: DeviceTable | None = None, env: Mapping[str, str] | None = None) -> list[DeviceProfile]:
    """The GPUs odperf was given (``CUDA_VISIBLE_DEVICES``, else every GPU NVML sees), as ``gpu:0..k-1``
    in the given order; each keeps its NVML index and UUID so that probes read the same card."""
    driver = _text(_try(nvml.nvmlSystemGetDriverVersion))
    cuda_raw = _try(nvml.nvmlSystemGetCudaDriverVersion)
    cuda = f"{cuda_raw // 1000}.{(cuda_raw % 1000) // 10}" if isinstance(cuda_raw, int) else None
    out = []
    for gpu in visible_gpus(nvml, env):
        parent = parent_handle(nvml, gpu)
        cc = _try(nvml.nvmlDeviceGetCudaComputeCapability, parent)
        name = _text(nvml.nvmlDeviceGetName(gpu.handle)) or f"gpu{gpu.nvml_index}"
        memory = float(nvml.nvmlDeviceGetMemoryInfo(gpu.handle).total)
        info = dict(
            table=table, driver=driver, cuda=cuda, compute_capability=f"{cc[0]}.{cc[1]}" if cc else None,
            nvml_index=gpu.nvml_index, uuid=gpu.uuid, visible_entry=gpu.entry,
        )
        if gpu.mig:
            parent_name = _text(nvml.nvmlDeviceGetName(parent)) or name
            whole = gpu_profile(parent_name, float(nvml.nvmlDeviceGetMemoryInfo(parent).total), **info)
            out.append(mig_profile(whole, name, memory, gpu.position))
        else:
            out.append(gpu_profile(name, memory, index=gpu.position, **info))
    return out


def mig_profile(whole: DeviceProfile, name: str, memory_bytes: float, index: int) -> DeviceProfile:
    """A MIG instance, named after its GPU's profile and its slice (``a100_mig_1g_5gb``): its results are
    a slice's, never to be filed or compared as the whole card's."""
    _, _, slice_ = name.partition(" MIG ")
    own = f"{whole.name}_mig_{slug(slice_) if slice_ else 'instance'}"
    return replace(
        whole, name=own, device=f"gpu:{index}", display_name=name, memory_mb=memory_bytes / MB,
        markers=["gpu", "mig", own], description=f"{name} (a MIG instance of {whole.display_name})",
    )


# --- Jetson boards --------------------------------------------------------------------------------
def jetson_model(path: Path | None = None) -> str | None:
    """The board's model string on a Jetson (device tree), else None."""
    try:
        text = (path or DEVICE_TREE_MODEL).read_bytes().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        return None
    return text if re.search(r"jetson|nvidia", text, re.IGNORECASE) else None


def jetson_profile(model: str, memory_bytes: float | None = None, table: DeviceTable | None = None) -> DeviceProfile:
    """Profile of a Jetson board from its device-tree model string; memory is the host's (shared)."""
    table = table or load_table()
    memory = memory_bytes if memory_bytes is not None else psutil.virtual_memory().total
    rule = table.match("jetson", model, memory / GIB)
    return DeviceProfile(
        name=rule.name if rule else slug(model),
        kind="jetson",
        device="gpu:0",
        display_name=model,
        memory_mb=memory / MB,
        markers=list(rule.markers) if rule else ["jetson", slug(model)],
        cores=os.cpu_count(),
        description=rule.description if rule else model,
    )


def _try(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
