"""One benchmark run's settings and bookkeeping: targets, cases, expectations, requests and records.

The pytest plugin builds one SuiteState from its options and asks it everything; this module knows
nothing of pytest, so the same run can be driven from any other harness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from odperf import __version__
from odperf.errors import OdperfError
from odperf.expectations import Expectation, Expectations, load as load_expectations, merge
from odperf.results import SCHEMA_VERSION, TIMING, RunRecord
from odperf.suite import Case, ModelRef, Target, build_cases, model_refs, parse_batch_sizes
from odperf.workload import IMAGES_PER_CAR
from odperf.zoo.registry import fixtures_dir

ACCURACY_BATCH = 64


def _targets(devices: str, profiles: Sequence[Any], emulate: str | None) -> list[Target]:
    """Targets for the requested devices among those detected (cpu first)."""
    # Profiles already say which device they are ("cpu", "gpu:N"); ids call gpu:0 "gpu", gpu:N "gpuN".
    by_device = {
        p.device: Target(p.device, "gpu" if p.device == "gpu:0" else p.device.replace(":", ""), p.name,
                         tuple(p.markers), p.memory_mb)
        for p in profiles
    }
    wanted = [d.strip().lower() for d in devices.split(",") if d.strip()] or ["all"]
    out: list[Target] = []
    for d in wanted:
        key = "gpu:0" if d == "gpu" else d
        if key == "all":
            out.extend(t for t in by_device.values() if t not in out)
        elif key in by_device:
            if by_device[key] not in out:
                out.append(by_device[key])
        else:
            found = ", ".join(by_device) or "none"
            raise OdperfError(
                f"--odperf-devices: no device {d!r} on this machine (found: {found}); "
                f"use cpu, gpu, gpu:N or all"
            )
    if emulate:
        name, memory_mb, markers = _emulated_device(emulate)
        real = next((t for t in out if t.device != "cpu"), None) or out[0]
        out = [
            replace(t, profile=name, markers=markers, memory_mb=memory_mb, emulated_from=t.profile)
            if t is real else t
            for t in out
        ]
    return out


def _emulated_device(spec: str) -> tuple[str, float, tuple[str, ...]]:
    """``PROFILE`` (a table profile at its nominal memory) or ``NAME:MB`` (any name, MB of memory)."""
    from odperf.measure.devices import load_table

    name, _, mb = spec.partition(":")
    name = name.strip().lower()
    if not name or (mb and not mb.strip().isdigit()) or (mb and int(mb) <= 0):
        raise OdperfError(
            f"--odperf-emulate={spec!r}: expected a device profile (p100, tx2, ...) or NAME:MB, e.g. edge:1500"
        )
    table = load_table()
    known = table.rule(name)
    if not mb and (known is None or known.memory_gib is None):
        names = ", ".join(sorted({r.name for r in table.rules}))
        raise OdperfError(
            f"--odperf-emulate={spec!r}: no profile {name!r} in fixtures/devices.toml ({names}); "
            f"give its memory as {name}:MB to emulate a device the table does not know or has no size for"
        )
    if known is not None:
        memory_mb = float(mb) if mb else float(known.memory_gib) * 1024**3 / 1e6
        return name, memory_mb, tuple(known.markers)
    return name, float(mb), (name,)


@dataclass
class SuiteState:
    models: list[ModelRef]
    batch_sizes: tuple[int, ...]
    targets: list[Target]
    profiles: list[Any]
    expectations: Expectations
    images: int
    warmup_images: int = 1
    model_dir: str | None = None
    dataset: str | None = None
    split: str | None = None
    accuracy: bool = False
    results_dir: str | None = None
    timeout_s: float = 1800.0
    sample_period_ms: float = 10.0
    seed: int = 0
    records: list[RunRecord] = field(default_factory=list)

    @classmethod
    def from_options(
        cls,
        *,
        models: str,
        batch_sizes: str,
        devices: str,
        images: int | None,
        warmup_images: int,
        model_dir: str | None,
        dataset: str | None,
        split: str | None,
        accuracy: bool,
        emulate: str | None,
        results_dir: str | None,
        expectations: list[str] | None,
        timeout_s: float,
        sample_period_ms: float,
        seed: int,
    ) -> "SuiteState":
        from odperf.measure.devices import detect_profiles
        from odperf.zoo.registry import select

        if images is not None and images < 1:
            raise OdperfError(f"--odperf-images must be at least 1, got {images}")
        if dataset and not Path(dataset).is_dir():
            raise OdperfError(
                f"--odperf-dataset {dataset}: no such folder; give a COCO-format root holding "
                f"annotations/instances_<split>.json and <split>/"
            )
        profiles = detect_profiles()
        files = expectations or [str(fixtures_dir() / "expectations.toml")]
        selectors = [s.strip() for s in models.split(",") if s.strip()]
        return cls(
            models=model_refs(select(selectors), model_dir),
            batch_sizes=parse_batch_sizes(batch_sizes),
            targets=_targets(devices, profiles, emulate),
            profiles=profiles,
            expectations=merge(load_expectations(f) for f in files),
            images=images or IMAGES_PER_CAR,
            warmup_images=warmup_images,
            model_dir=model_dir,
            dataset=dataset,
            split=split,
            accuracy=accuracy,
            results_dir=results_dir,
            timeout_s=timeout_s,
            sample_period_ms=sample_period_ms,
            seed=seed,
        )

    # --- matrix -----------------------------------------------------------------------------------
    @property
    def profile_name(self) -> str:
        """The machine's hardware profile: its first accelerator, else cpu (names the storage folder)."""
        gpu = next((t for t in self.targets if t.device != "cpu"), None)
        return (gpu or self.targets[0]).profile

    def cases(self) -> list[Case]:
        return build_cases(self.models, self.batch_sizes, self.targets)

    def accuracy_cases(self) -> list[Case]:
        """Trained models only: an architecture with random weights has no mAP to measure."""
        return build_cases([m for m in self.models if not m.untrained], (ACCURACY_BATCH,), self.targets)

    def dynamic_markers(self) -> list[str]:
        return sorted({m for t in self.targets for m in t.markers})

    def expectation(self, case: Case) -> Expectation:
        return self.expectations.lookup(case.target.profile, case.model.tags, case.batch_size)

    # --- measuring ----------------------------------------------------------------------------------
    def request(self, case: Case, *, timed: bool = True):
        """The engine's MeasureRequest for a case (accuracy-only runs time one pass, no rounds)."""
        from odperf.engine.client import MeasureRequest

        emulated = case.target.emulated_from is not None
        return MeasureRequest(
            model=case.model.ref,
            batch_size=case.batch_size,
            images=self.images,
            device=case.target.device,
            backend=case.model.backend,
            model_dir=self.model_dir,
            dataset_root=self.dataset,
            dataset_split=self.split or ("val2017" if self.dataset else "val"),
            seed=self.seed,
            warmup_images=self.warmup_images if timed else 0,
            memory_limit_mb=int(case.target.memory_mb) if emulated and case.target.memory_mb else None,
            emulate_profile=case.target.profile if emulated else None,
            timeout_s=self.timeout_s,
            sample_period_ms=self.sample_period_ms,
            keep_detections=(self.accuracy or not timed) and not case.model.untrained,
            results_path=self._results_path(case, timed),
            bare_loop=timed,  # the harness-overhead loop only means something for timed runs
            start_timeout_s=self.timeout_s,
        )

    def _results_path(self, case: Case, timed: bool) -> str | None:
        if not self.results_dir:
            return None
        Path(self.results_dir).mkdir(parents=True, exist_ok=True)
        return str(Path(self.results_dir) / f"{case.id if timed else case.accuracy_id}.json")

    def locate(self, case: Case) -> None:
        """Raise ModelMissing (with the tarball URL and fetch command) when a registry model is not on disk."""
        if case.model.family == "custom":
            return
        from odperf.zoo.registry import get, require_local

        require_local(get(case.model.ref), self.model_dir)

    @property
    def images_per_car(self) -> int:
        return IMAGES_PER_CAR

    def run_record(self, case: Case, measurement: Any, harness_mean_s: float | None = None,
                   kind: str = TIMING) -> RunRecord:
        """The record of a measurement, named after the case (not the worker's view of it); ``kind`` says
        what it measured (odperf.results.KINDS)."""
        return measurement.to_record(
            kind=kind,
            model=case.model.name,
            device_profile=case.target.profile,
            harness_mean_s=harness_mean_s,
            images_per_car=IMAGES_PER_CAR,
            meta_arch=case.model.meta_arch,
            map_group=case.model.map_group,
            protocol_overhead_s=measurement.protocol_overhead_s,
            sampler_cpu_fraction=measurement.memory.sampler_cpu_fraction if measurement.memory else None,
        )

    def failure_record(self, case: Case, failure: Any) -> RunRecord:
        """The record of a worker that ran out of memory, crashed or hung (figures so far included)."""
        return self.run_record(case, failure.measurement)

    def record(self, rec: RunRecord) -> RunRecord:
        self.records.append(rec)
        return rec

    # --- what the run says about itself --------------------------------------------------------------
    def machine_info(self) -> dict[str, Any]:
        from odperf.backends import installed

        return {
            "profile": self.profile_name,
            "devices": [p.to_dict() for p in self.profiles],
            "targets": [asdict(t) for t in self.targets],
            "runtimes": installed(),  # each runtime's version, None where it is not installed
            "odperf": __version__,
        }

    def json_block(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "profile": self.profile_name,
            "images_per_case": self.images,
            "images_per_car": IMAGES_PER_CAR,
            "records": [r.to_extra_info() for r in self.records],
        }

    def _hardware(self) -> str:
        parts = [
            f"{p.name} ({p.display_name}" + (f", {p.cores} cores" if p.cores else "") + f", {p.memory_mb:.0f} MB)"
            for p in self.profiles
        ]
        if not any(p.kind != "cpu" for p in self.profiles):
            parts.append("no NVIDIA GPU or Jetson found")
        return "; ".join(parts)

    def header_lines(self) -> list[str]:
        return [
            f"odperf {__version__}: hardware profile {self.profile_name}: {self._hardware()}",
            f"odperf: {len(self.models)} model(s), batch sizes {','.join(map(str, self.batch_sizes))}, "
            f"{self.images} image(s) timed per case, targets {', '.join(t.label for t in self.targets)}"
            + (f", emulating {', '.join(t.profile for t in self.targets if t.emulated_from)}"
               if any(t.emulated_from for t in self.targets) else ""),
        ]

    def nothing_selected_line(self, how: str) -> str:
        markers = ", ".join(self.dynamic_markers())
        return (
            f"odperf: no benchmark selected{' by ' + how if how else ''}. This machine has: {self._hardware()}. "
            f"Its benchmarks carry the hardware markers: {markers}."
        )
