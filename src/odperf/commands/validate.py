"""``odperf validate MODEL``: measured mAP on the tiled workload against the model's reported mAP.

As the paper validated its test bed on models with published mAP, this runs a model over camera images
built from a COCO-format dataset (the embedded synthetic one by default), scores it (faster-coco-eval, or
pycocotools with ``--scorer``) and puts the figure beside what was reported: the zoo table's mAP for zoo
models (COCO, full images), the paper's Table I "tested" mAP where legible, and for embedded models the
mAP measured when they were trained. The tolerance is absolute COCO AP. Zoo models see 300x300 tiles here, not whole images resized
to their input size, so expect their tiled mAP below the table's: the comparison is the point, and
``--tolerance`` says how far is acceptable. TF1 zoo models were trained on COCO train2014+val2014 minus
minival, so part of val2017 is in their training set: their val2017 figure is optimistic.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from odperf.errors import OdperfError
from odperf.measure.scorers import DEFAULT_SCORER, SCORERS
from odperf.zoo.registry import ModelSpec, get

DEFAULT_TOLERANCE = 0.02
VAL2017_NOTE = (
    "note: TF1 zoo models were trained on COCO train2014+val2014 minus minival, so part of val2017 was in "
    "their training set; their mAP on val2017 is optimistic."
)


@dataclass(frozen=True)
class Validation:
    model: str
    map_group: str | None
    measured: float | None  # 0..1
    reference: float | None  # 0..1: what the measured figure is held against
    reference_kind: str  # "reported (zoo table)", "measured at training", ...
    tested: float | None  # the paper's Table I figure, 0..1
    tolerance: float
    accuracy: dict[str, Any]

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.reference is None:
            return None
        return self.measured - self.reference

    @property
    def passed(self) -> bool | None:
        diff = self.difference
        return None if diff is None else abs(diff) <= self.tolerance


def reference_map(spec: ModelSpec) -> tuple[float | None, str]:
    """The mAP a model is held against (0..1) and where it comes from."""
    if spec.family == "embedded":
        return (spec.measured_map / 100.0 if spec.measured_map is not None else None), "measured at training"
    if spec.reported_map is not None:
        return spec.reported_map / 100.0, "reported (zoo table)"
    return None, "not reported"


def validation_of(spec: ModelSpec, accuracy: dict[str, Any] | None, tolerance: float) -> Validation:
    reference, kind = reference_map(spec)
    return Validation(
        model=spec.name,
        map_group=spec.map_group,
        measured=(accuracy or {}).get("AP"),
        reference=reference,
        reference_kind=kind,
        tested=spec.tested_map / 100.0 if spec.tested_map is not None else None,
        tolerance=tolerance,
        accuracy=accuracy or {},
    )


def render(v: Validation) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    verdict = {True: "within tolerance", False: "OUTSIDE tolerance", None: "nothing to compare"}[v.passed]
    rows = [[v.model, v.map_group or "n/a", pct(v.measured), f"{pct(v.reference)} ({v.reference_kind})",
             pct(v.tested), "-" if v.difference is None else f"{100 * v.difference:+.1f}",
             f"±{100 * v.tolerance:.1f}", verdict]]
    head = ["model", "group", "mAP measured", "mAP reference", "paper tested", "diff", "tolerance", "verdict"]
    acc = v.accuracy
    detail = [[k, pct(acc.get(k))] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")]
    per_cat = sorted((acc.get("per_category") or {}).items())
    lines = [tabulate(rows, head, disable_numparse=True), "", tabulate(detail, ["COCO", "%"], disable_numparse=True)]
    if per_cat:
        lines += ["", tabulate([[name, pct(ap)] for name, ap in per_cat], ["category", "AP %"])]
    lines.append(
        f"\n{acc.get('n_images', 0)} tiles scored, {acc.get('n_ground_truth', 0)} ground-truth boxes, "
        f"{acc.get('n_detections', 0)} detections, {acc.get('scorer', 'COCOeval')} {acc.get('eval_seconds', 0):.1f} s"
    )
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from odperf.engine.client import MeasureRequest, measure

    spec = get(args.model)
    if args.tolerance < 0:
        raise OdperfError(f"--tolerance must be >= 0, got {args.tolerance}")
    request = MeasureRequest(
        model=spec.name,
        batch_size=args.batch_size,
        images=args.images,
        device=args.device,
        model_dir=args.model_dir,
        dataset_root=args.dataset,
        dataset_split=args.split or ("val2017" if args.dataset else "val"),
        seed=args.seed,
        warmup_images=0,
        keep_detections=True,
        scorer=args.scorer,
    )
    m = measure(request)
    if m.outcome != "ok":
        print(f"odperf validate: {spec.name} ended as {m.outcome}: {m.error}")
        return 1
    v = validation_of(spec, m.accuracy, args.tolerance)
    print(render(v))
    if spec.family == "paper" and "val2017" in (request.dataset_split or ""):
        print(VAL2017_NOTE)
    return 0 if v.passed in (True, None) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="measured mAP of a model on the tiled workload against its reported mAP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="registry name (see odperf zoo list)")
    p.add_argument("--model-dir", default=None, help="folder of extracted zoo tarballs")
    p.add_argument("--dataset", default=None, help="COCO-format root (default: the embedded synthetic dataset)")
    p.add_argument("--split", default=None, help="default val2017 for a COCO root, val for the embedded set")
    p.add_argument("--images", type=int, default=10, help="camera images scored (default 10 = 630 tiles)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scorer", default=DEFAULT_SCORER, choices=SCORERS,
                   help=f"COCO scorer (default {DEFAULT_SCORER}; pycocotools is the paper's reference)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"largest allowed |measured - reference| in absolute AP (default {DEFAULT_TOLERANCE})")
    p.set_defaults(func=cmd_validate)
