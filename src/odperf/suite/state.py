"""One benchmark run's settings and bookkeeping: targets, cases, expectations, requests and records.

The pytest plugin builds one SuiteState from its options and asks it everything; this module knows
nothing of pytest, so the same run can be driven from any other harness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from odperf import __version__
from odperf.errors import OdperfError
from odperf.suite.expectations import Expectation, Expectations, load as load_expectations, merge
from odperf.measure.breakdown import TimeBreakdown
from odperf.measure.sampling import SamplingPlan, plan_images
from odperf.measure.scorers import DEFAULT_SCORER
from odperf.suite.progress import Progress
from odperf.suite.sharing import SHARED_KEY, DeviceSharing
from odperf.results import SCHEMA_VERSION, TIMING, RunRecord
from odperf.suite.matrix import Case, ModelRef, Target, build_cases, marker_catalogue, model_refs, parse_batch_sizes
from odperf.workload import IMAGES_PER_CAR
from odperf.zoo.registry import fixtures_dir

ACCURACY_BATCH = 64


REFERENCE = "accuracy reference"  # why a case timed the ceiling: its model's mAP reference (SuiteState.plan)

@dataclass
class SuiteState:
    models: list[ModelRef]
    batch_sizes: tuple[int, ...]
    targets: list[Target]
    profiles: list[Any]
    expectations: Expectations
    images: int
    warmup_images: int = 1
    warmup_steady: float | None = None  # warm up until the time per image settles within this fraction
    model_dir: str | None = None
    dataset: str | None = None
    split: str | None = None
    accuracy: bool = False
    results_dir: str | None = None
    scorer: str = DEFAULT_SCORER
    timeout_s: float = 1800.0
    sample_period_ms: float = 10.0
    seed: int = 0
    boards: dict[str, Any] = field(default_factory=dict, repr=False)  # profile -> Board (odperf.measure.board)
    sampling: SamplingPlan | None = None  # images per case: chosen by the run, or fixed (None: ``images``)
    records: list[RunRecord] = field(default_factory=list, repr=False)
    # under --odperf-accuracy with images chosen by the run: the case of each model and device timed to the
    # ceiling, whose detections the model's other batch sizes are checked against (engine.detections)
    _references: dict[str, str] = field(default_factory=dict, repr=False)  # model-device -> case id
    _plans: dict[str, SamplingPlan | None] = field(default_factory=dict, repr=False)  # case id -> its plan
    breakdown: TimeBreakdown = field(default_factory=TimeBreakdown, repr=False)  # where the run's time went
    progress: Progress = field(default_factory=Progress, repr=False)  # images timed, per case
    sharing: DeviceSharing = field(default_factory=DeviceSharing, repr=False)  # other runs on the same devices
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
        scorer: str = DEFAULT_SCORER,
        check: bool = True,
        boards: list[str] | None = None,
        min_images: int | None = None,
        max_images: int | None = None,
        target_ci: float | None = None,
        warmup_steady: float | None = None,
    ) -> "SuiteState":
        """The run's state from its options. ``check`` (once per run, before any worker starts) also checks
        the options' values, the dataset and every model on disk, raising OdperfError at the first fault."""
        from odperf.suite import preflight
        from odperf.measure.kinds import detected
        from odperf.suite.targets import build_targets
        from odperf.zoo.registry import select

        if check:
            preflight.check_options(images=images, warmup_images=warmup_images, timeout_s=timeout_s,
                                    sample_period_ms=sample_period_ms, seed=seed, warmup_steady=warmup_steady)
        try:
            sampling = plan_images(images, min_images, max_images, target_ci, default_ceiling=IMAGES_PER_CAR)
        except OdperfError:
            if check:
                raise
            sampling = SamplingPlan.fixed(images or IMAGES_PER_CAR)
        sizes = parse_batch_sizes(batch_sizes)
        profiles = detected()
        targets = build_targets(devices, profiles, emulate)
        from odperf.measure.board import board_target

        on_boards = [board_target(spec, check) for spec in boards or []]  # first: the run is filed under a board's profile
        targets = [Target("cpu", b.board.profile, b.board.profile, b.markers, b.memory_mb) for b in on_boards] + targets
        files = expectations or [str(fixtures_dir() / "expectations.toml")]
        selectors = [s.strip() for s in models.split(",") if s.strip()]
        refs = model_refs(select(selectors), model_dir)
        loaded = [load_expectations(f) for f in files]
        rules = merge(loaded)
        if check:
            from odperf.zoo.rule_models import check_rule_models

            check_rule_models(loaded, refs)
            preflight.check_model_dir(model_dir)
            preflight.check_results_dir(results_dir)
            preflight.check_models(refs, model_dir)
            preflight.check_dataset(dataset, split, accuracy)
        return cls(
            models=refs,
            batch_sizes=sizes,
            targets=targets,
            profiles=profiles,
            expectations=rules,
            images=sampling.ceiling,
            sampling=sampling,
            warmup_images=warmup_images,
            warmup_steady=warmup_steady,
            model_dir=model_dir,
            dataset=dataset,
            split=split,
            accuracy=accuracy,
            results_dir=results_dir,
            scorer=scorer,
            timeout_s=timeout_s,
            sample_period_ms=sample_period_ms,
            seed=seed,
            boards={b.board.profile: b.board for b in on_boards},
        )

    def prepare(self) -> None:
        """Before the first case: the embedded dataset is generated (once) when the run uses it."""
        if self.dataset is None:
            from odperf.suite.preflight import prepare_embedded_dataset

            prepare_embedded_dataset()

    # --- matrix -----------------------------------------------------------------------------------
    @property
    def profile_name(self) -> str:
        """The run's hardware profile: its first accelerator or board, else cpu (names the storage folder)."""
        gpu = next((t for t in self.targets if t.device != "cpu" or t.profile in self.boards), None)
        return (gpu or self.targets[0]).profile

    def cases(self) -> list[Case]:
        return [c for c in build_cases(self.models, self.batch_sizes, self.targets) if self._runs_on(c)]

    def accuracy_cases(self) -> list[Case]:
        """Trained models only: an architecture with random weights has no mAP to measure."""
        trained = [m for m in self.models if not m.untrained]
        return [c for c in build_cases(trained, (ACCURACY_BATCH,), self.targets) if self._runs_on(c)]

    def _runs_on(self, case: Case) -> bool:
        """A board runs the models of the runtimes its python has (odperf.measure.board.check_board); every
        local device runs all."""
        board = self.boards.get(case.target.profile)
        return board is None or case.model.backend in board.runtimes

    def dynamic_markers(self) -> list[str]:
        return sorted({m for t in self.targets for m in t.markers})

    def markers(self) -> dict[str, str]:
        """Every marker this run's cases can carry, with a description (for registration)."""
        return marker_catalogue(self.models, self.dynamic_markers())

    def expectation(self, case: Case) -> Expectation:
        """The rules for a case; an emulated device is held to the rules of the profile it emulates."""
        return self.expectations.lookup(case.target.expectations_profile, case.model.tags, case.batch_size)

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
            steady_warmup=self.warmup_steady if timed else None,
            memory_limit_mb=int(case.target.memory_mb) if emulated and case.target.memory_mb else None,
            emulate_profile=case.target.expectations_profile if emulated else None,
            timeout_s=self.timeout_s,
            sample_period_ms=self.sample_period_ms,
            keep_detections=(self.accuracy or not timed) and not case.model.untrained,
            results_path=self._results_path(case, timed),
            scorer=self.scorer,
            against_reference=timed and self.chooses_references,
            start_timeout_s=self.timeout_s,
        )

    def session(self, case: Case, request: Any, on_image: Any = None) -> Any:
        """The worker session for a case: a local worker, or the case's board over SSH (engine.remote)."""
        from odperf.engine.client import WorkerSession

        board = self.boards.get(case.target.profile)
        if board is None:
            return WorkerSession(request, on_image=on_image)
        from odperf.engine.remote import BoardSession, board_model

        return BoardSession(request, board_model(request), board, on_image=on_image)

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

    @property
    def chooses_references(self) -> bool:
        """Whether the run scores and chooses its images per case: then each model has an mAP reference."""
        return bool(self.accuracy and self.sampling and not self.sampling.is_fixed)

    def plan(self, case: Case) -> SamplingPlan | None:
        """How many images ``case`` times: the run's plan, except that when the run scores and chooses its
        images, the first case of each model and device times the ceiling (the model's reference: its mAP is
        over that image set, and the other batch sizes' detections are checked against it image by image)."""
        plan = self.sampling
        if plan is not None and self.chooses_references:
            if self._references.setdefault(case.accuracy_id, case.id) == case.id:
                plan = replace(plan, floor=plan.ceiling, reason=REFERENCE)
        self._plans[case.id] = plan
        return plan

    def run_record(self, case: Case, measurement: Any, kind: str = TIMING) -> RunRecord:
        """The record of a measurement (its figures are the measurement's own), named after the case, not
        the worker's view of it; ``kind`` says what it measured (odperf.results.RECORD_KINDS)."""
        self.breakdown.note(measurement)
        if measurement.outcome != "ok" and self._references.get(case.accuracy_id) == case.id:
            del self._references[case.accuracy_id]  # no reference after all: the model's next case is
        plan = self._plans.get(case.id, self.sampling)
        sampling = plan.outcome(measurement.parent_times_s) if plan and kind == TIMING else None
        return measurement.to_record(
            kind=kind,
            sampling=sampling,
            model=case.model.name,
            device_profile=case.target.profile,
            meta_arch=case.model.meta_arch,
            map_group=case.model.map_group,
        )

    def failure_record(self, case: Case, failure: Any) -> RunRecord:
        """The record of a worker that ran out of memory, crashed or hung (figures so far included)."""
        return self.run_record(case, failure.measurement)

    def record(self, rec: RunRecord) -> RunRecord:
        """Keep a record for the saved JSON, noting any other run that measured on its device meanwhile."""
        self.sharing.note(rec, self._device_of(rec))
        self.records.append(rec)
        return rec

    def add_reported(self, saved: dict[str, Any]) -> RunRecord:
        """A record another process measured (an xdist worker's, from its test report), in saved form."""
        rec = RunRecord.from_extra_info(saved)
        self.sharing.note(rec, self._device_of(rec), list(saved.get(SHARED_KEY) or []))
        self.records.append(rec)
        return rec

    def saved_form(self, rec: RunRecord) -> dict[str, Any]:
        """A record as the JSON holds it: its fields, plus who else measured on its device meanwhile."""
        return self.sharing.saved_form(rec, rec.to_extra_info())

    def _device_of(self, rec: RunRecord) -> str | None:
        return next((t.device for t in self.targets if t.profile == rec.device_profile), None)

    # --- other runs on the same devices (suite.sharing) ----------------------------------------------
    def hold_devices(self) -> list[str]:
        return self.sharing.hold(t.device for t in self.targets)

    def begin(self, case: Case) -> list[str]:
        return self.sharing.begin(case.target.device)

    def watch_devices(self, every_s: float = 2.0) -> list[str]:
        return self.sharing.watch(every_s)

    def release_devices(self) -> None:
        self.sharing.release()

    def close_breakdown(self) -> None:
        """The run's wall time, since its process started (imports and checks included), closes the breakdown."""
        from odperf.measure.load import process_age_s

        self.breakdown.close(process_age_s())

    def end_lines(self) -> list[str]:
        """Where the run's time went and its overhead ratio, and which figures were taken under load."""
        lines = [f"odperf: {line}" for line in self.breakdown.lines("time")] if self.breakdown.wall_s else []
        stops = [r.sampling["stopped_by"] for r in self.records if r.sampling and r.sampling["stopped_by"] != "fixed"]
        if stops:
            refs = stops.count(REFERENCE)
            lines.append(f"odperf: images per case chosen by the run: {stops.count('target')} case(s) within the "
                         f"target, {stops.count('ceiling')} at the ceiling"
                         + (f", {refs} timed to the ceiling as their model's mAP reference" if refs else "")
                         + f" ({self.sampling.describe()})")
        loaded = [r for r in self.records if r.load and r.load.get("loaded")]
        if loaded:
            from odperf.measure.load import describe

            worst = max(loaded, key=lambda r: r.load["others_share"])
            lines.append(f"odperf: WARNING: {len(loaded)} figure(s) taken under load (the worst, {worst.describe()}: "
                         f"{describe(worst.load)}); compare them with figures of an idle machine only knowingly")
        return lines

    def sharing_summary(self) -> str | None:
        return self.sharing.summary()

    # --- what the run says about itself --------------------------------------------------------------
    def machine_info(self) -> dict[str, Any]:
        from odperf.backends import installed

        info = {
            "profile": self.profile_name,
            "devices": [p.to_dict() for p in self.profiles],
            "targets": [asdict(t) for t in self.targets],
            "runtimes": installed(),  # each runtime's version, None where it is not installed
            "odperf": __version__,
        }
        if self.sharing.shared:
            info[SHARED_KEY] = self.sharing.seen()
        return info

    def json_block(self) -> dict[str, Any]:
        block = {
            "schema": SCHEMA_VERSION,
            "profile": self.profile_name,
            "images_per_case": self.images,
            "sampling": asdict(self.sampling) if self.sampling else None,
            "images_per_car": IMAGES_PER_CAR,
            "records": [self.saved_form(r) for r in self.records],
        }
        if self.breakdown.wall_s:
            block["time_breakdown"] = self.breakdown.to_dict()
        if self.sharing.shared:
            block[SHARED_KEY] = self.sharing.seen()
        return block

    def _hardware(self) -> str:
        from odperf.measure.kinds import none_found

        parts = [
            f"{p.name} ({p.display_name}" + (f", {p.cores} cores" if p.cores else "") + f", {p.memory_mb:.0f} MB)"
            for p in self.profiles
        ]
        if not any(p.kind != "cpu" for p in self.profiles):
            parts.append(none_found())
        return "; ".join(parts)

    def header_lines(self) -> list[str]:
        return [
            f"odperf {__version__}: hardware profile {self.profile_name}: {self._hardware()}",
            f"odperf: {len(self.models)} model(s), batch sizes {','.join(map(str, self.batch_sizes))}, "
            f"{self.sampling.describe() if self.sampling else f'{self.images} image(s) timed per case'}, targets {', '.join(t.label for t in self.targets)}"
            + (f", emulating {', '.join(t.profile for t in self.targets if t.emulated_from)}"
               if any(t.emulated_from for t in self.targets) else "")
            + (f", mAP by {self.scorer}" if self.accuracy else ""),
        ]

    def nothing_selected_line(self, how: str) -> str:
        markers = ", ".join(self.dynamic_markers())
        return (
            f"odperf: no benchmark selected{' by ' + how if how else ''}. This machine has: {self._hardware()}. "
            f"Its benchmarks carry the hardware markers: {markers}."
        )
