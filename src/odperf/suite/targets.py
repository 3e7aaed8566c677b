"""The devices a run measures on, and what an emulated device is called and marked.

Truth in labels: a figure is filed under the hardware that produced it. Emulation caps memory on real
hardware, so an emulated device keeps the real device's markers plus ``emulated`` and gets a profile
name of its own that says what it is (``p100_on_h100``); only its expectations are the emulated
profile's (``p100``). A GPU profile needs a GPU to be emulated on: a CPU may only emulate a memory size,
under a name that is no real profile (``cpu_400mb:400``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

from odperf.errors import OdperfError
from odperf.measure.devices import DEVICE_FORMS, DeviceError, load_table, parse_device
from odperf.suite.matrix import EMULATED_MARKER, Target

CPU_EXAMPLE = "cpu_12gb:12000"
EMULATED_ON = "_on_"  # p100_on_h100: the emulated card, then the real one


def emulated_on(emulated: str, real: str) -> str:
    """The profile name of a card emulated on a bigger one (``p100_on_h100``)."""
    return f"{emulated}{EMULATED_ON}{real}"


def split_emulated_on(name: str) -> tuple[str, str] | None:
    """``p100_on_h100`` -> (``p100``, ``h100``); None for a name that is no emulated card's."""
    emulated, _, real = name.partition(EMULATED_ON)
    return (emulated, real) if real and emulated else None


def detected_targets(devices: str, profiles: Sequence[Any]) -> list[Target]:
    """Targets for the requested devices among those detected (cpu first)."""
    # Profiles already say which device they are ("cpu", "gpu:N"); ids call gpu:0 "gpu", gpu:N "gpuN".
    by_device = {
        p.device: Target(p.device, parse_device(p.device).label, p.name, tuple(p.markers), p.memory_mb)
        for p in profiles
    }
    wanted = [d.strip().lower() for d in devices.split(",") if d.strip()] or ["all"]
    out: list[Target] = []
    for d in wanted:
        if d == "all":
            out.extend(t for t in by_device.values() if t not in out)
            continue
        try:
            key = str(parse_device(d))
        except DeviceError:
            key = None
        if key in by_device:
            if by_device[key] not in out:
                out.append(by_device[key])
        else:
            found = ", ".join(by_device) or "none"
            raise OdperfError(
                f"--odperf-devices: no device {d!r} on this machine (found: {found}); "
                f"use {DEVICE_FORMS}, or all"
            )
    return out


@dataclass(frozen=True)
class EmulationSpec:
    """``--odperf-emulate`` read against the device table: a table profile, or a name of its own."""

    name: str
    memory_mb: float
    table_profile: bool  # True: a profile of fixtures/devices.toml (a GPU or Jetson)


def parse_emulation(spec: str) -> EmulationSpec:
    """``PROFILE`` (a table profile at its nominal memory), ``PROFILE:MB``, or ``NAME:MB`` (any other name)."""
    name, _, mb = spec.partition(":")
    name = name.strip().lower()
    if not name or (mb and not mb.strip().isdigit()) or (mb and int(mb) <= 0):
        raise OdperfError(
            f"--odperf-emulate={spec}: expected a device profile (p100, tx2, ...) or NAME:MB, e.g. edge:1500"
        )
    table = load_table()
    known = table.rule(name)
    if name == "cpu":
        raise OdperfError(f"--odperf-emulate={spec}: 'cpu' is the real CPU's profile; give the emulated "
                          f"device a name of its own, e.g. --odperf-emulate={CPU_EXAMPLE}")
    if not mb and (known is None or known.memory_gib is None):
        names = ", ".join(sorted({r.name for r in table.rules}))
        raise OdperfError(
            f"--odperf-emulate={spec}: no profile {name!r} in fixtures/devices.toml ({names}); "
            f"give its memory as {name}:MB to emulate a device the table does not know or has no size for"
        )
    if known is not None:
        memory_mb = float(mb) if mb else float(known.memory_gib) * 1024**3 / 1e6  # type: ignore[arg-type]
        return EmulationSpec(name, memory_mb, table_profile=True)
    return EmulationSpec(name, float(mb), table_profile=False)


def emulate(targets: list[Target], spec: str, profiles: Sequence[Any]) -> list[Target]:
    """``targets`` with the emulated one (the first GPU, else the CPU) renamed and marked as emulated."""
    emu = parse_emulation(spec)
    real = next((t for t in targets if t.device != "cpu"), None)
    if emu.table_profile and real is None:
        has_gpu = any(p.device != "cpu" for p in profiles)
        where = ("add gpu to --odperf-devices" if has_gpu else
                 "this machine has no GPU, and a CPU cannot stand in for one")
        raise OdperfError(
            f"--odperf-emulate={spec}: emulating the GPU profile {emu.name!r} needs a GPU to run on ({where}); "
            f"on the CPU emulate a memory size under a name of its own: --odperf-emulate=NAME:MB, "
            f"e.g. {CPU_EXAMPLE}"
        )
    real = real or targets[0]
    if not emu.table_profile and emu.name in {p.name for p in profiles}:
        raise OdperfError(f"--odperf-emulate={spec}: {emu.name!r} is this machine's own profile; give the "
                          f"emulated device a name of its own, e.g. {emu.name}_small:MB")
    if real.memory_mb and emu.memory_mb > real.memory_mb:
        raise OdperfError(
            f"--odperf-emulate={spec}: {emu.name} has {emu.memory_mb:.0f} MB but {real.profile} only "
            f"{real.memory_mb:.0f} MB: emulation caps memory, so it needs a device at least as large"
        )
    name = emulated_on(emu.name, real.profile) if emu.table_profile else emu.name
    markers = tuple(dict.fromkeys((*real.markers, EMULATED_MARKER)))
    emulated = replace(real, profile=name, markers=markers, memory_mb=emu.memory_mb,
                       emulated_from=real.profile, rules_profile=emu.name)
    return [emulated if t is real else t for t in targets]


def build_targets(devices: str, profiles: Sequence[Any], emulate_spec: str | None) -> list[Target]:
    """The run's targets: the detected devices asked for, one of them emulating a smaller device."""
    targets = detected_targets(devices, profiles)
    return emulate(targets, emulate_spec, profiles) if emulate_spec else targets
